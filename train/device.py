"""Which accelerator Keras will use, and data-parallel strategies, for either backend.

This is the only training module that touches backend-specific APIs (device listing and the
distribution engines that ship with each framework); the training loop itself is pure Keras.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import keras

from fmnist_edge.common.machine import cpu_model


@dataclass(frozen=True)
class DeviceInfo:
    backend: str  # "tensorflow" or "jax"
    kind: str  # "GPU" or "CPU"
    names: tuple[str, ...]  # one per device that training will use
    cpu: str  # the host's CPU model
    onednn: bool = False  # TensorFlow runs its oneDNN CPU kernels

    def describe(self) -> str:
        n = len(self.names)
        kernels = " with oneDNN kernels" if self.kind == "CPU" and self.onednn else ""
        return f"{self.kind} x{n} ({', '.join(self.names)}) on {self.backend}{kernels}"


def _tensorflow_onednn() -> bool:
    """Whether TensorFlow runs its oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS, or TensorFlow's
    own default for this CPU); False where the build can't say."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # no public API for this

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return False


def detect() -> DeviceInfo:
    """GPUs when there are any, else the CPU (logical CPU devices count, for --distribute)."""
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        devs = gpus or jax.devices("cpu")
        names = tuple(getattr(d, "device_kind", str(d)) for d in devs)
        return DeviceInfo(backend, "GPU" if gpus else "CPU", names, cpu_model())
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        devs = gpus or tf.config.list_logical_devices("CPU")
        return DeviceInfo(
            backend,
            "GPU" if gpus else "CPU",
            tuple(d.name for d in devs),
            cpu_model(),
            _tensorflow_onednn(),
        )
    return DeviceInfo(backend, "CPU", ("cpu",), cpu_model())


def strategy_scope(info: DeviceInfo, distribute: bool) -> contextlib.AbstractContextManager[Any]:
    """A context in which to build and compile the model: data-parallel over every device when
    ``distribute`` (MirroredStrategy on TensorFlow, keras.distribution.DataParallel on JAX)."""
    if not distribute:
        return contextlib.nullcontext()
    if info.backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy(devices=list(info.names)).scope()
    if info.backend == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return contextlib.nullcontext()
    raise NotImplementedError(f"--distribute is not supported on the {info.backend} backend")
