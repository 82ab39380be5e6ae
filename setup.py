"""The one compiled part: edge_runtime/_fastpng.c, the C decode of a folder's plain gray PNGs
(edge_runtime/fastpng.py). Everything else is declared in setup.cfg.

The extension is optional: without a C compiler, Python's headers or zlib's, the build says so
and goes on, and the runtime decodes every image in Python (fmnist-infer --verbose says which).
FMNIST_EDGE_PURE=1 builds without it: a pure wheel, for another machine (tools/pi does this).
"""

import os

from setuptools import Extension, setup

FASTPNG = Extension(
    "fmnist_edge.edge_runtime._fastpng",
    sources=["edge_runtime/_fastpng.c"],
    libraries=["z"],
    optional=True,
)

setup(ext_modules=[] if os.environ.get("FMNIST_EDGE_PURE") == "1" else [FASTPNG])
