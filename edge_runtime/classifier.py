"""The Fashion-MNIST classifier: a .tflite model, its metadata, preprocessing, top-k results.

    clf = Classifier()                      # the bundled int8 model, the first runtime found
    clf.predict("shoe.jpg").label           # 'Sneaker'
    clf.predict_proba(images)               # (N, 28, 28) uint8 -> (N, 10) float32
    Classifier(tta="flip")                  # also classify each mirror image, average both

Input handling comes from the model: dtype, scale and zero point from the interpreter's tensor
details; class names, normalization and what the output holds (logits or probabilities) from the
file's fmnist_edge metadata record (CLASS_NAMES, pixel / 255 and probabilities when a file has
none, with a warning). For logits the softmax is applied here, in float.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.errors import ImageError, ModelError, UsageError
from fmnist_edge.common.labels import CLASS_NAMES
from fmnist_edge.common.pixels import PIXEL_OFFSET, PIXEL_SCALE

from .checks import check_mode, check_top_k, check_tta
from .interpreter import TensorSpec, TFLiteModel, load_runtime
from .metadata import check_tflite, read_metadata
from .preprocess import SIDE, ImageSource, pixel_values, to_array

log = logging.getLogger(__name__)
BUNDLED_MODEL = "models/default.tflite"  # inside the edge_runtime package
MIB = 1024 * 1024
MAX_MODEL_BYTES = 256 * MIB  # a Pi-sized model is a few MiB; the notebook's float32 is 47 MiB
DEFAULT_NORMALIZATION = (PIXEL_SCALE, PIXEL_OFFSET)  # x = pixel * scale + offset
_SIGN_BIT = np.uint8(128)


@dataclass(frozen=True)
class Prediction:
    """One image's result: the top class and the ``k`` most likely (label, probability)."""

    label: str
    index: int
    score: float  # probability of ``label``, 0-1
    top_k: list[tuple[str, float]] = field(default_factory=list)


def read_model_bytes(model_path: str | os.PathLike | None) -> tuple[bytes, str]:
    """The model file's bytes and the name to use in messages; None means the bundled model."""
    if model_path is None:
        from importlib import resources  # only for the bundled model

        bundled = resources.files("fmnist_edge.edge_runtime").joinpath(BUNDLED_MODEL)
        if not bundled.is_file():
            raise ModelError(
                "no bundled model; pass --model (edge_runtime/models/default.tflite is missing)"
            )
        return bundled.read_bytes(), f"<bundled {BUNDLED_MODEL}>"
    path = Path(model_path)
    try:
        # O_NONBLOCK: a FIFO must not block the open; it is refused below, as a device is
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, not a .tflite file") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ModelError(f"{path}: is a directory, not a .tflite file")
        if not stat.S_ISREG(info.st_mode):  # /dev/zero or a FIFO would be read without end
            raise ModelError(f"{path}: not a regular file, not a .tflite file")
        if info.st_size > MAX_MODEL_BYTES:
            raise ModelError(
                f"{path}: {info.st_size / MIB:,.0f} MiB; a .tflite over "
                f"{MAX_MODEL_BYTES // MIB} MiB is refused"
            )
        try:
            content = fh.read(MAX_MODEL_BYTES + 1)  # a file that grew since: still bounded
        except OSError as exc:
            raise ModelError(f"{path}: cannot read model ({exc.strerror or exc})") from None
    if len(content) > MAX_MODEL_BYTES:
        raise ModelError(f"{path}: over {MAX_MODEL_BYTES // MIB} MiB; refused")
    return content, str(path)


def _normalization(meta: dict[str, Any] | None, name: str) -> tuple[float, float]:
    if meta is None:
        return DEFAULT_NORMALIZATION
    norm = meta.get("normalization") or {}
    try:
        return float(norm.get("scale", DEFAULT_NORMALIZATION[0])), float(norm.get("offset", 0.0))
    except (TypeError, ValueError):
        raise ModelError(f"{name}: metadata normalization is not numeric: {norm}") from None


def _class_names(meta: dict[str, Any] | None, name: str, num_classes: int) -> tuple[str, ...]:
    names = tuple(meta.get("class_names") or ()) if meta else ()
    if not names:
        if num_classes != len(CLASS_NAMES):
            raise ModelError(f"{name}: {num_classes} outputs and no class names in its metadata")
        return CLASS_NAMES
    if len(names) != num_classes:
        raise ModelError(
            f"{name}: its metadata names {len(names)} classes, the model outputs {num_classes}"
        )
    return tuple(str(n) for n in names)


def _table_kind(lut: np.ndarray) -> str:
    """The common int8 and uint8 tables are shifts of the pixel itself: skip the lookup then
    (checked value by value, not assumed from the dtype)."""
    ramp = np.arange(256)
    if lut.dtype == np.int8 and np.array_equal(lut, ramp - 128):
        return "pixel-128"
    if lut.dtype == np.uint8 and np.array_equal(lut, ramp):
        return "pixel"
    return "table"


def _output_values(meta: dict[str, Any] | None, name: str) -> str:
    """What the output tensor holds: "logits" (the runtime applies softmax), "probabilities"
    or "scores" (both passed through). Files without metadata are taken as probabilities."""
    values = ((meta or {}).get("output") or {}).get("values", "probabilities")
    if values not in ("logits", "probabilities", "scores"):
        raise ModelError(f"{name}: metadata output values {values!r} are not understood")
    return values


def _output_table(spec: TensorSpec, logits: bool) -> np.ndarray | None:
    """For an 8-bit quantized output, a value per code, indexed by the code's bits: the code
    dequantized, or for logits exp(logit - the largest logit the tensor can hold).
    Softmax is shift-invariant, so a row of these divided by its sum is the probabilities.
    None for float outputs, and for logits whose range could underflow exp."""
    if spec.dtype not in (np.int8, np.uint8):
        return None
    values = spec.dequantize(np.arange(256, dtype=np.uint8).view(spec.dtype))
    if not logits:
        return values
    values = values.astype(np.float64)
    spread = values.max() - values.min()
    if spread > 700:  # exp(-700) is still > 0 in float64
        return None
    table = np.exp(values - values.max())
    return table.astype(np.float32) if spread < 80 else table  # float32: down to exp(-87)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Classifier:
    """A Fashion-MNIST .tflite classifier (int8, uint8 or float32 I/O; float16 weights too).

    ``model_path`` None uses the bundled model; ``runtime`` None (or "auto") the first of
    ai-edge-litert and tflite-runtime that works. ``tta`` "flip" classifies each image and its
    left-right mirror in one invoke and averages the two probabilities (twice the work; the
    model was trained on mirrored images, so the mirror is as valid an input). Not
    thread-safe: one per thread.
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        threads: int | None = None,
        runtime: str | None = None,
        tta: str | None = None,
    ):
        if threads is not None and threads < 1:
            raise UsageError(f"threads must be >= 1 (got {threads})")
        self.tta = check_tta(tta)
        content, self.name = read_model_bytes(model_path)
        check_tflite(content, self.name)
        self.metadata: dict[str, Any] | None = read_metadata(content, self.name)
        self._runtime = load_runtime(runtime)
        self.runtime = str(self._runtime)  # e.g. "ai-edge-litert 2.3.0"
        self.model = TFLiteModel(content, self.name, self._runtime, threads)
        self.class_names = _class_names(self.metadata, self.name, self.model.num_classes)
        scale, offset = _normalization(self.metadata, self.name)
        # Every uint8 pixel value -> the input tensor's value: normalization and quantization
        # folded into one 256-entry table, so a batch is prepared by a single lookup.
        self._lut = self.model.input.quantize(np.arange(256) * scale + offset)
        self._lut_kind = _table_kind(self._lut)
        self.output_values = _output_values(self.metadata, self.name)
        self._logits = self.output_values == "logits"
        self._out_lut = _output_table(self.model.output, self._logits)
        if self.metadata is None:  # said once the model itself has been accepted
            log.warning(
                "%s has no fmnist_edge metadata: assuming Fashion-MNIST class names, "
                "pixel / 255 and probabilities out",
                self.name,
            )

    def __repr__(self) -> str:
        tta = f", tta={self.tta!r}" if self.tta != "none" else ""
        name, runtime = self.name, self.runtime
        return f"Classifier({name!r}, runtime={runtime!r}, input={self.input_dtype}{tta})"

    @property
    def input_dtype(self) -> str:
        return self.model.input.dtype.name

    def _input(self, x: np.ndarray) -> np.ndarray:
        """uint8 pixels -> the input tensor's values."""
        if self._lut_kind == "pixel-128":
            return (x ^ _SIGN_BIT).view(np.int8)  # exactly pixel - 128
        if self._lut_kind == "pixel":
            return x
        return self._lut[x]

    def _proba(self, x: np.ndarray) -> np.ndarray:
        """(N, 28, 28[, 1]) uint8, already checked -> (N, classes) float32, averaged over each
        image and its mirror with tta "flip"."""
        if self.tta == "flip":
            n = len(x)
            both = self._model_proba(np.concatenate([x, x[:, :, ::-1]]))  # one invoke of 2N
            return (both[:n] + both[n:]) * np.float32(0.5)
        return self._model_proba(x)

    def _model_proba(self, x: np.ndarray) -> np.ndarray:
        out = self.model.run(self._input(x))
        if self._out_lut is None:
            values = self.model.output.dequantize(out)
            return _softmax(values) if self._logits else values
        values = self._out_lut[out.view(np.uint8)]  # one lookup instead of (q - zp) * scale
        if self._logits:  # the table already holds exp(logit - max)
            return (values / values.sum(axis=1, keepdims=True)).astype(np.float32, copy=False)
        return values

    def _pixels(self, x: np.ndarray) -> np.ndarray:
        """A batch as given -> (N, 28, 28[, 1]) uint8; one (28, 28) image becomes a batch of one.
        Pixels are checked as predict checks them (preprocess.pixel_values); the shape error
        shows the caller's shape, not ours."""
        given = np.asarray(x)
        x = pixel_values(given)
        if x.ndim == 2:
            x = x[None]
        if x.ndim not in (3, 4) or x.shape[1:3] != (SIDE, SIDE) or x.shape[3:] not in ((), (1,)):
            raise ImageError(
                f"array: predict_proba needs (N, 28, 28[, 1]) images, got {given.shape}"
            )
        return x

    def output_tensor(self, x: np.ndarray) -> np.ndarray:
        """(N, 28, 28[, 1]) raw pixels (uint8, or integers 0-255) -> the model's output tensor
        as the interpreter returns it (for the bundled model: int8 logits), before any
        dequantization or softmax, and without tta. What to compare, bit for bit, between two
        machines."""
        x = self._pixels(x)
        if len(x) == 0:
            return np.zeros((0, len(self.class_names)), dtype=self.model.output.dtype)
        return self.model.run(self._input(x)).copy()

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, 28, 28[, 1]) raw pixels (uint8, or integers 0-255) -> (N, classes) float32
        probabilities (the softmax of the logits, for a file that outputs logits)."""
        x = self._pixels(x)
        if len(x) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return self._proba(x)

    def _result(self, probs: np.ndarray, top_k: int) -> Prediction:
        values = probs.tolist()  # plain floats: ranking 10 numbers is faster in Python
        order = sorted(range(len(values)), key=values.__getitem__, reverse=True)
        ranked = [(self.class_names[i], values[i]) for i in order[:top_k]]  # top_k >= 1
        return Prediction(ranked[0][0], order[0], ranked[0][1], ranked)

    def predict(self, image: ImageSource, mode: str = "auto", top_k: int = 3) -> Prediction:
        """Classify one image: a path, encoded image bytes (PNG, JPEG, ...: an upload), a PIL
        image, or a numpy array of pixels (uint8, or integers 0-255). ``top_k`` >= 1 classes
        are ranked (UsageError otherwise)."""
        check_top_k(top_k)
        return self._result(self._proba(to_array(image, mode)[None])[0], top_k)

    def predict_batch(
        self, images: Iterable[ImageSource], mode: str = "auto", top_k: int = 3
    ) -> list[Prediction]:
        """Classify many images in batched invokes. An unreadable image raises ImageError."""
        check_mode(mode)
        check_top_k(top_k)
        arrays = [to_array(image, mode) for image in images]
        if not arrays:
            return []
        return [self._result(p, top_k) for p in self.predict_proba(np.stack(arrays))]
