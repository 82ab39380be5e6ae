"""The runtimes a model can be timed on, found without importing TensorFlow.

ai-edge-litert and tflite-runtime are the Pi's interpreters, openvino an engine for the same
.tflite on x86 (edge_runtime.openvino_engine); tf.lite and Keras' ``predict`` need
TensorFlow and are imported only when a row actually uses them, so device mode never loads TF.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.errors import ModelError, RuntimeUnavailable
from fmnist_edge.common.nativelog import native_stderr_quieted
from fmnist_edge.edge_runtime.interpreter import RUNTIMES as EDGE_RUNTIMES
from fmnist_edge.edge_runtime.interpreter import TensorSpec, load_runtime

from .config import TF_RUNTIMES

# runtime -> (module that must import, distribution names whose version we report)
_PACKAGES = {
    "ai-edge-litert": ("ai_edge_litert.interpreter", ("ai-edge-litert",)),
    "tflite-runtime": ("tflite_runtime.interpreter", ("tflite-runtime",)),
    "openvino": ("openvino", ("openvino",)),
    "tf.lite": ("tensorflow", ("tensorflow", "tensorflow-cpu", "tf-nightly", "tensorflow-macos")),
    "keras": ("keras", ("keras",)),
}


@dataclass(frozen=True)
class RuntimeInfo:
    name: str  # "ai-edge-litert", "tflite-runtime", "tf.lite" or "keras"
    available: bool
    version: str | None  # the package version, when installed
    reason: str | None = None  # why it is unavailable

    def label(self) -> str:
        return f"{self.name} {self.version}" if self.version else self.name


def dist_version(*names: str) -> str | None:
    """The installed version of the first distribution in ``names``, without importing it."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _module_found(module: str) -> bool:
    top = module.split(".")[0]
    if top in sys.modules and sys.modules[top] is None:  # blocked, as the device-mode test does
        return False
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def tensorflow_available() -> bool:
    """Whether TensorFlow could be imported here (checked without importing it)."""
    return _module_found("tensorflow")


def probe(name: str, device: bool = False) -> RuntimeInfo:
    """Is runtime ``name`` usable here? Imports only the TF-free interpreters to be sure."""
    module, dists = _PACKAGES[name]
    version = dist_version(*dists)
    if device and name in TF_RUNTIMES:
        return RuntimeInfo(name, False, version, "device mode: TensorFlow not used")
    if not _module_found(module):
        return RuntimeInfo(name, False, None, "not installed")
    if name in TF_RUNTIMES:
        if name == "keras" and not tensorflow_available():
            return RuntimeInfo(name, False, version, "TensorFlow backend not installed")
        return RuntimeInfo(name, True, version)
    try:  # edge_runtime's own loader: the same checks (numpy 2 vs tflite-runtime) as the app
        runtime = load_runtime(name)
    except RuntimeUnavailable as exc:
        return RuntimeInfo(name, False, version, str(exc))
    except Exception as exc:  # a broken wheel (wrong glibc, missing .so) is "unavailable"
        return RuntimeInfo(name, False, version, f"import failed: {type(exc).__name__}: {exc}")
    return RuntimeInfo(name, True, runtime.version)


def interpreter(runtime: str, model_path: Path, threads: int | None) -> Any:
    """A fresh, allocated interpreter of ``runtime`` for ``model_path``."""
    if runtime in EDGE_RUNTIMES:
        Interpreter = load_runtime(runtime).interpreter_class  # noqa: N806
    elif runtime == "tf.lite":
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    else:
        raise RuntimeUnavailable(f"{runtime}: not a TFLite interpreter")
    with native_stderr_quieted():  # the C++ "Created ... XNNPACK delegate" notice
        try:
            with warnings.catch_warnings():  # tf.lite.Interpreter warns that it is deprecated
                warnings.simplefilter("ignore")
                interp = Interpreter(model_path=str(model_path), num_threads=threads)
            interp.allocate_tensors()
        except ValueError as exc:  # raised inside: our one-line error, the C++ noise dropped
            raise ModelError(f"{model_path}: {runtime} cannot load it ({exc})") from None
    return interp


def input_tensor(detail: dict[str, Any], image: np.ndarray, scale: float, offset: float):
    """One (H, W[, C]) uint8 image as the interpreter's input tensor, from its own details:
    x = pixel * scale + offset, then quantized with the tensor's own scale and zero point. A
    gray image meets an RGB input (a MediaPipe variant) as its gray repeated three times."""
    spec = TensorSpec.from_details(detail)
    pixels = np.asarray(image)
    if spec.shape[-1] == 3 and (pixels.ndim == 2 or pixels.shape[-1] == 1):
        pixels = np.repeat(pixels.reshape(*pixels.shape[:2], 1), 3, axis=2)
    x = pixels.astype(np.float32).reshape(spec.shape) * np.float32(scale) + np.float32(offset)
    return spec.quantize(x)  # (1, H, W, C) in the input dtype


class BatchInterpreter:
    """A bare interpreter of ``runtime`` resized to take ``batch`` images in one invoke (the
    Classifier splits at MAX_BATCH): what the benchmarks' bounds time."""

    def __init__(self, runtime: str, model_path: Path, threads: int | None, batch: int):
        interp = interpreter(runtime, model_path, threads)
        detail = interp.get_input_details()[0]
        self.shape = [batch, *detail["shape"][1:]]
        interp.resize_tensor_input(detail["index"], self.shape)
        interp.allocate_tensors()
        self._interp, self._index = interp, detail["index"]

    def run(self, x: np.ndarray) -> None:
        """One invoke on ``batch`` images already in the input tensor's dtype."""
        self._interp.set_tensor(self._index, x.reshape(self.shape))
        self._interp.invoke()


def interpreter_call(interp: Any, image: np.ndarray, scale: float, offset: float) -> Callable:
    """A no-argument function running one image through ``interp``: what an app does per
    frame (set the input, invoke, read the output). The input is prepared once, outside it."""
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    tensor = input_tensor(inp, image, scale, offset)
    set_tensor, invoke, get_tensor = interp.set_tensor, interp.invoke, interp.get_tensor
    in_index, out_index = inp["index"], out["index"]

    def call() -> np.ndarray:
        set_tensor(in_index, tensor)
        invoke()
        return get_tensor(out_index)

    return call


def keras_call(model: Any, image: np.ndarray) -> Callable:
    """Batch-1 ``model.predict`` as the notebook calls it: pixel / 255, (1, H, W, C)."""
    x = image.astype(np.float32)[None] / 255.0
    x = x[..., None] if x.ndim == 3 else x  # a gray (H, W) image: its channel axis

    def call() -> np.ndarray:
        return model.predict(x, verbose=0)

    return call
