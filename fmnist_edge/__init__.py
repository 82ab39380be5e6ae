"""fmnist-edge: Fashion-MNIST from training to a Raspberry Pi.

    from fmnist_edge import Classifier
    Classifier().predict("shirt.png")   # the bundled int8 model, no TensorFlow needed

One import name; its parts, each in its own top-level folder of the repository:
fmnist_edge.edge_runtime (edge_runtime/, the Pi runtime), fmnist_edge.train (train/),
fmnist_edge.export (export/), fmnist_edge.benchmarks (benchmarks/), and here, shared by all
commands, fmnist_edge.common (errors, atomic files, click options, machine facts, model input)
and fmnist_edge.dataset (the IDX files and their download).
"""

from pathlib import Path as _Path

# In a checkout, fmnist_edge.train and the other parts live in sibling folders (train/, ...):
# search the checkout's root too, so that `python -m fmnist_edge...` from it (or any install
# shadowed by it) finds them. An installed wheel holds them inside this folder and skips this.
_ROOT = _Path(__file__).resolve().parent.parent
if (_ROOT / "setup.cfg").is_file() and (_ROOT / "edge_runtime" / "classifier.py").is_file():
    __path__.append(str(_ROOT))  # noqa: F821 (a package's __path__)

from fmnist_edge.common.errors import (  # noqa: E402
    DataError,
    FmnistError,
    ImageError,
    ModelError,
    OutputError,
    QualityError,
    RuntimeUnavailable,
    UsageError,
)
from fmnist_edge.common.labels import CLASS_NAMES, IMAGE_SHAPE, NUM_CLASSES  # noqa: E402

__all__ = [
    "CLASS_NAMES",
    "Classifier",
    "Prediction",
    "IMAGE_SHAPE",
    "NUM_CLASSES",
    "DataError",
    "FmnistError",
    "ImageError",
    "ModelError",
    "OutputError",
    "QualityError",
    "RuntimeUnavailable",
    "UsageError",
]
__version__ = "0.2.0"


def __getattr__(name: str):
    # Lazy: `import fmnist_edge` must not load numpy, Pillow or an interpreter (start-up time on
    # a Raspberry Pi); `from fmnist_edge import Classifier` loads them on first use.
    if name in ("Classifier", "Prediction"):
        from fmnist_edge.edge_runtime import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
