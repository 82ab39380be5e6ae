"""A folder's plain 8-bit gray PNGs of the model's size (Fashion-MNIST's, and any gray model's),
read, inflated and unfiltered in C (_fastpng.c), a whole chunk of files per call with the GIL
released, so both cores decode at once and no Python runs between a file's system calls.

It gives the pixels that decode.py's plain-PNG path gives; any file it is not sure of is left to
that decode, which then decodes it or says what is wrong, in its own words. It is built where
the install finds a C compiler and zlib (setup.py); without it the runtime decodes every image in
Python, as fmnist-infer --verbose says (``describe``). On the 2-core EPYC it takes a 28x28 PNG in
about 14 us against 60-80 us for ``to_array``, and takes fmnist-infer on 10,000 PNGs from 0.80
to 0.92 of the bare interpreter's speed, measured in one run (docs/benchmarks.md).

Only folders come here (batch.py); fmnist-serve's uploads are decoded by Pillow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .budget import DecodeLimits

try:
    from . import _fastpng
except ImportError:  # not built: no compiler or no zlib at install, or FMNIST_EDGE_PURE=1
    _fastpng = None

AVAILABLE = _fastpng is not None
TAKEN = 0  # a status of ``decode``: the file's pixels are in its slot
_SEGMENTS_SEEN = 64  # chunks the C walk reads at most; a file of more is left to the walk


def describe(native: bool = True) -> str:
    """How a folder's images are decoded, for --verbose and reports."""
    if native and AVAILABLE:
        return "C for plain gray PNGs of the model's size, Pillow for the rest"
    why = "the C decode is not built" if native else "the C decode is off"
    return f"Pillow ({why})"


def takes(mode: str, size: tuple[int, int], color: str, limits: DecodeLimits) -> bool:
    """Whether files decoded for a model of ``size`` and ``color`` in ``mode`` may go to the C
    decode: a plain gray PNG of the model's size is then taken as stored, as ``to_array`` takes
    it (``raw``, and ``auto``, which takes a gray image of the model's size as raw; a photo's
    pixels are not the file's), and within ``limits``'s pixels."""
    return (
        AVAILABLE
        and mode != "photo"
        and color == "grayscale"
        and size[0] * size[1] <= limits.max_pixels
    )


def decode(paths: Sequence[str], out: np.ndarray, limits: DecodeLimits) -> bytes:
    """Decode each of ``paths`` into ``out[i]`` ((N, H, W) or (N, H, W, 1) C-ordered uint8, N
    at least len(paths)) where it is a plain 8-bit gray PNG of H x W within ``limits``: one
    status a path, TAKEN or not (``out[i]`` then holds anything)."""
    height, width = out.shape[1:3]
    chunks = min(_SEGMENTS_SEEN, limits.max_segments)
    return _fastpng.decode_gray(paths, out, height, width, chunks, limits.max_metadata)
