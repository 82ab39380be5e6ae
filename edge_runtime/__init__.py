"""fmnist-edge's TensorFlow-free runtime: numpy, pillow and a TFLite interpreter only.

Never import tensorflow or keras from this package: it runs on a Raspberry Pi without them.
The public API is re-exported by the top package: ``from fmnist_edge import Classifier``.
"""

__all__ = ["Classifier", "Prediction"]


def __getattr__(name: str):
    # Lazy: importing the package must not load numpy, Pillow or an interpreter (start-up time
    # on a Raspberry Pi); `from fmnist_edge.edge_runtime import Classifier` loads them on use.
    if name in __all__:
        from . import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
