"""A TFLite interpreter without TensorFlow: pick a runtime package, read the model's I/O contract.

Runtimes, in the order ``auto`` tries them: ai-edge-litert (Google's successor package, wheels
for numpy 2 and Python 3.12), then tflite-runtime (the old package: its last release, 2.14, was
built against numpy 1 and dies with ``_ARRAY_API not found`` under numpy 2, so that case is
detected up front and reported with the fix instead of a crash).

The model's tensors are the truth about its input and output: shape, dtype, scale and zero
point all come from the interpreter, never from a file name or a metadata record.

LiteRT's C++ prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on descriptor 2
when a process allocates its first interpreter; ``allocated_interpreter`` keeps it (and any other
native notice) off the caller's stderr, so a Classifier user never sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fmnist_edge.common.errors import ModelError, RuntimeUnavailable, UsageError
from fmnist_edge.common.nativelog import native_stderr_quieted

RUNTIMES = ("ai-edge-litert", "tflite-runtime")  # the TFLite interpreters, in auto's order
# Every --runtime: openvino runs the same .tflite in another engine (openvino_engine.py); it is
# used only when named, never by auto (LiteRT is bit-identical on x86 and the Pi's arm64).
ALL_RUNTIMES = (*RUNTIMES, "openvino")
MAX_BATCH = 64  # images per invoke when the model's batch dimension is resizable
_NUMPY2_FIX = 'pip install ai-edge-litert (recommended), or pip install "numpy<2"'


@dataclass(frozen=True)
class Runtime:
    """An importable interpreter package: its name, version and Interpreter class."""

    name: str  # "ai-edge-litert" or "tflite-runtime"
    version: str
    interpreter_class: Any

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def _version(dist: str, module: Any) -> str:
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    from importlib import metadata  # only when the module has no __version__ (slow import)

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _numpy_major() -> int:
    return int(np.__version__.split(".")[0])


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _is_numpy_abi_error(exc: BaseException) -> bool:
    text = str(exc)
    return "_ARRAY_API" in text or "numpy.core.multiarray failed to import" in text


def _numpy2_error(version: str) -> RuntimeUnavailable:
    return RuntimeUnavailable(
        f"tflite-runtime {version} was built for numpy 1 and crashes with numpy {np.__version__} "
        f"(_ARRAY_API not found): {_NUMPY2_FIX}"
    )


def _load_ai_edge_litert() -> Runtime:
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"ai-edge-litert is not installed ({exc}): pip install ai-edge-litert"
        ) from None
    return Runtime("ai-edge-litert", _version("ai-edge-litert", ai_edge_litert), Interpreter)


def _load_tflite_runtime() -> Runtime:
    try:
        import tflite_runtime
    except ImportError as exc:
        raise RuntimeUnavailable(  # its last release (2.14) needs numpy 1: say so in the fix
            f"tflite-runtime is not installed ({exc}): pip install tflite-runtime 'numpy<2'"
        ) from None
    version = _version("tflite-runtime", tflite_runtime)
    # Every published tflite-runtime (the last is 2.14) was compiled against numpy 1: under
    # numpy 2 creating an Interpreter fails with "_ARRAY_API not found". Say so before trying.
    release = _release(version)
    if _numpy_major() >= 2 and (not release or release < (2, 15)):
        raise _numpy2_error(version)
    try:
        from tflite_runtime.interpreter import Interpreter
    except (ImportError, AttributeError) as exc:
        if _is_numpy_abi_error(exc):
            raise _numpy2_error(version) from None
        raise RuntimeUnavailable(f"tflite-runtime {version} failed to import ({exc})") from None
    return Runtime("tflite-runtime", version, Interpreter)


_LOADERS = {"ai-edge-litert": _load_ai_edge_litert, "tflite-runtime": _load_tflite_runtime}


def load_runtime(name: str | None = None) -> Runtime:
    """The runtime package ``name`` ("ai-edge-litert", "tflite-runtime", "openvino"), or with
    None or "auto" the first TFLite interpreter that works. Raises RuntimeUnavailable saying
    what to install."""
    if name in (None, "auto"):
        reasons = []
        for candidate in RUNTIMES:
            try:
                return _LOADERS[candidate]()
            except RuntimeUnavailable as exc:
                reasons.append(str(exc))
        raise RuntimeUnavailable("no usable TFLite interpreter: " + "; ".join(reasons))
    if name == "openvino":
        from .openvino_engine import load_openvino  # imports openvino only when named

        return load_openvino()
    if name not in _LOADERS:
        raise UsageError(f"--runtime must be one of auto, {', '.join(ALL_RUNTIMES)} (got {name!r})")
    return _LOADERS[name]()


def allocated_interpreter(runtime: Runtime, name: str, **kwargs: Any) -> Any:
    """``runtime.interpreter_class(**kwargs)`` with its tensors allocated, its C++ notices kept
    off stderr (a few hundred microseconds, once per interpreter). A file the runtime cannot
    load raises ModelError naming ``name``."""
    with native_stderr_quieted():  # our own errors are raised inside it: C++ noise not replayed
        try:
            interp = runtime.interpreter_class(**kwargs)
            interp.allocate_tensors()
        except (ImportError, AttributeError) as exc:
            if runtime.name == "tflite-runtime" and _is_numpy_abi_error(exc):
                raise _numpy2_error(runtime.version) from None
            raise
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{name}: corrupt or unsupported TFLite model ({exc})") from None
    return interp


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor as the interpreter describes it."""

    index: int
    shape: tuple[int, ...]  # with the batch dimension, as allocated now
    batch_resizable: bool  # the batch dimension is -1 in the shape signature
    dtype: np.dtype
    scale: float  # 0.0 for float tensors
    zero_point: int

    @classmethod
    def from_details(cls, d: dict[str, Any]) -> TensorSpec:
        scale, zero_point = d.get("quantization", (0.0, 0))
        signature = d.get("shape_signature")
        resizable = signature is not None and len(signature) > 0 and int(signature[0]) == -1
        return cls(
            index=int(d["index"]),
            shape=tuple(int(n) for n in d["shape"]),
            batch_resizable=resizable,
            dtype=np.dtype(d["dtype"]),
            scale=float(scale),
            zero_point=int(zero_point),
        )

    @property
    def quantized(self) -> bool:
        return np.issubdtype(self.dtype, np.integer)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Real values -> this tensor's dtype: ``clip(round(x / scale) + zero_point)``."""
        if not self.quantized:
            return x.astype(self.dtype)
        info = np.iinfo(self.dtype)
        q = np.round(x / self.scale) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """This tensor's values -> float32 reals, with its own scale and zero point."""
        if not self.quantized:
            return q.astype(np.float32)
        return ((q.astype(np.float32) - self.zero_point) * self.scale).astype(np.float32)


class ModelIO:
    """What the Classifier needs of an engine: the input and output tensors' contract and
    ``run(batch) -> output tensor``. TFLiteModel is one; openvino_engine.OpenVINOModel, which
    takes its contract from a TFLiteModel, is the other."""

    name: str
    runtime: Runtime
    input: TensorSpec
    output: TensorSpec
    thread_safe = False  # whether one instance may run batches from several threads at once
    parallel_runs = 1  # how many ``run`` calls of one instance compute at once

    @property
    def num_classes(self) -> int:
        return self.output.shape[1]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one input image."""
        h, w, *c = self.input.shape[1:]
        return h, w, (c[0] if c else 1)

    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W[, C]) in the input dtype -> (N, classes) in the output dtype."""
        raise NotImplementedError

    def describe(self) -> str:
        """How it runs, for --verbose (empty: nothing beyond the runtime's name)."""
        return ""


class TFLiteModel(ModelIO):
    """A loaded .tflite checked to be an image classifier (gray or RGB, NHWC) with
    ``num_classes`` outputs.

    ``run`` takes a batch already in the input tensor's dtype and returns the raw output
    tensor values; batching is split or looped as the model allows. Not thread-safe.
    """

    def __init__(
        self,
        content: bytes,
        name: str,
        runtime: Runtime,
        threads: int | None = None,
        num_classes: int | None = None,
    ):
        self.name, self.runtime = name, runtime
        self._content = content  # the interpreter reads from this buffer: keep it alive
        self._interp = allocated_interpreter(
            runtime, name, model_content=content, num_threads=threads
        )
        inputs = self._interp.get_input_details()
        outputs = self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{name}: expected 1 input and 1 output tensor, found {len(inputs)} and "
                f"{len(outputs)}"
            )
        self.input = TensorSpec.from_details(inputs[0])
        self.output = TensorSpec.from_details(outputs[0])
        self._check(num_classes)
        self._batch = self.input.shape[0]
        self._sample_shape = self.input.shape[1:]
        # bound once: these three calls are the whole per-image cost besides invoke itself
        self._set, self._invoke_raw, self._get = (
            self._interp.set_tensor,
            self._interp.invoke,
            self._interp.get_tensor,
        )

    def _check(self, num_classes: int | None) -> None:
        shape, out = self.input.shape, self.output.shape
        if len(shape) not in (3, 4) or min(shape[1:3]) < 1 or shape[3:] not in ((), (1,), (3,)):
            raise ModelError(
                f"{self.name}: input shape {list(shape)} is not an image "
                "(expected [N, H, W, 1] gray or [N, H, W, 3] RGB)"
            )
        if len(out) != 2 or (num_classes is not None and out[1] != num_classes):
            want = f"[N, {num_classes}]" if num_classes else "[N, classes]"
            raise ModelError(f"{self.name}: output shape {list(out)} is not {want}")
        for spec, what in ((self.input, "input"), (self.output, "output")):
            if spec.dtype not in (np.float32, np.float16, np.int8, np.uint8, np.int16):
                raise ModelError(f"{self.name}: unsupported {what} dtype {spec.dtype}")
            if spec.quantized and spec.scale <= 0:
                raise ModelError(f"{self.name}: {spec.dtype} {what} without a quantization scale")

    def _resize(self, n: int) -> None:
        if n != self._batch:
            self._interp.resize_tensor_input(self.input.index, [n, *self._sample_shape])
            self._interp.allocate_tensors()
            self._batch = n

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        self._set(self.input.index, x)
        self._invoke_raw()
        return self._get(self.output.index)

    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W[, C]) in the input dtype -> (N, classes) in the output dtype."""
        n = len(x)
        x = x.reshape((n, *self._sample_shape))
        if n == self._batch:
            return self._invoke(x)
        if not self.input.batch_resizable:
            if self._batch != 1:
                raise ModelError(f"{self.name}: fixed batch of {self._batch}, got {n} images")
            return np.concatenate([self._invoke(x[i : i + 1]) for i in range(n)])
        chunks = []
        for start in range(0, n, MAX_BATCH):
            part = x[start : start + MAX_BATCH]
            self._resize(len(part))
            chunks.append(self._invoke(part))
        return np.concatenate(chunks)
