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
