"""fmnist-edge's TensorFlow-free runtime: numpy, pillow and a TFLite interpreter only.

Never import tensorflow or keras from this package: it runs on a Raspberry Pi without them.
"""

from .errors import (
    DataError,
    FmnistError,
    ImageError,
    ModelError,
    QualityError,
    RuntimeUnavailable,
    UsageError,
)
from .labels import CLASS_NAMES, IMAGE_SHAPE, NUM_CLASSES

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
    "QualityError",
    "RuntimeUnavailable",
    "UsageError",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: `import edge_runtime` must not load numpy, Pillow or an interpreter (start-up time
    # on a Raspberry Pi); `from edge_runtime import Classifier` loads them on first use.
    if name in ("Classifier", "Prediction"):
        from . import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
