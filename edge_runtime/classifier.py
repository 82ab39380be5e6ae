"""The classifier: a .tflite model, its record, preprocessing, top-k results.

    clf = Classifier()                      # the bundled Fashion-MNIST int8 model
    clf.predict("shoe.jpg").label           # 'Sneaker'
    clf.predict_proba(images)               # (N, 28, 28) uint8 -> (N, 10) float32
    Classifier("shoes.tflite").image_shape  # (64, 64, 3): an own-data RGB model's input
    Classifier(tta="flip")                  # also classify each mirror image, average both

Input handling comes from the model: dtype, scale and zero point from the interpreter's tensor
details; image size, colour, class names, normalization and what the output holds (logits or
probabilities) from the file's record (record.py; for a file without one: its tensors,
Fashion-MNIST's class names, pixel / 255 and probabilities, with a warning). For logits the
softmax is applied here, in float.
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

from fmnist_edge.common.errors import ImageError, ModelError, RuntimeUnavailable, UsageError

from .budget import DecodeLimits
from .checks import check_mode, check_top_k, check_tta
from .interpreter import ModelIO, Runtime, TensorSpec, TFLiteModel, load_runtime
from .metadata import check_tflite
from .preprocess import ImageSource, pixel_values, to_array
from .record import ModelRecord

log = logging.getLogger(__name__)
BUNDLED_MODEL = "models/default.tflite"  # inside the edge_runtime package
MIB = 1024 * 1024
MAX_MODEL_BYTES = 256 * MIB  # a Pi-sized model is a few MiB; the notebook's float32 is 47 MiB
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
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # io refuses a directory; /dev/zero would never end
        os.close(fd)
        what = "is a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ModelError(f"{path}: {what}, not a .tflite file")
    with os.fdopen(fd, "rb") as fh:
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


def open_model(
    content: bytes, name: str, runtime: Runtime, threads: int | None, workload: str
) -> ModelIO:
    """The engine that runs ``content``: a TFLite interpreter of ``runtime``, or for openvino a
    compiled model whose tensor contract a TFLite interpreter of the same bytes reads."""
    if runtime.name != "openvino":
        return TFLiteModel(content, name, runtime, threads)
    from .openvino_engine import OpenVINOModel

    try:
        reader = load_runtime(None)
    except RuntimeUnavailable as exc:
        raise RuntimeUnavailable(
            f"openvino reads the model's tensor contract with a TFLite interpreter: {exc}"
        ) from None
    contract = TFLiteModel(content, name, reader, threads=1)
    return OpenVINOModel(content, contract, runtime, threads, workload)


def _record(content: bytes, name: str, model: ModelIO) -> tuple[ModelRecord, bool]:
    """The file's record checked against its tensors, and whether the file carries one (a file
    without one is described from its tensors, as Fashion-MNIST when it has ten outputs)."""
    height, width, channels = model.image_shape
    record = ModelRecord.from_model(content, name)
    if record is None:
        return ModelRecord.assumed(height, width, channels, model.num_classes, name), False
    if record.num_classes != model.num_classes:
        raise ModelError(
            f"{name}: its metadata names {record.num_classes} classes, "
            f"the model outputs {model.num_classes}"
        )
    if (*record.input.size, record.input.channels) != (height, width, channels):
        raise ModelError(
            f"{name}: its metadata describes a {record.input.width}x{record.input.height} "
            f"{record.input.color} input, the model takes {width}x{height}x{channels}"
        )
    return record, True


def _table_kind(lut: np.ndarray) -> str:
    """The common int8 and uint8 tables are shifts of the pixel itself: skip the lookup then
    (checked value by value, not assumed from the dtype)."""
    ramp = np.arange(256)
    if lut.dtype == np.int8 and np.array_equal(lut, ramp - 128):
        return "pixel-128"
    if lut.dtype == np.uint8 and np.array_equal(lut, ramp):
        return "pixel"
    return "table"


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
    """A .tflite image classifier (int8, uint8 or float32 I/O; float16 weights too), of
    Fashion-MNIST or of the user's own classes, gray or RGB, at the size its record gives.

    ``model_path`` None uses the bundled model; ``runtime`` None (or "auto") the first of
    ai-edge-litert and tflite-runtime that works; "openvino" runs the same file in OpenVINO,
    compiled for ``workload``: "latency" (an image at a time) or "throughput" (batches split
    over its streams); such a Classifier may be shared by threads (``model.thread_safe``).
    ``tta`` "flip" classifies each image and its left-right mirror in one invoke and averages
    the two probabilities (twice the work; the model was trained on mirrored images, so the
    mirror is as valid an input). With a TFLite interpreter, not thread-safe: one per thread.
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        threads: int | None = None,
        runtime: str | None = None,
        tta: str | None = None,
        workload: str = "latency",
    ):
        if threads is not None and threads < 1:
            raise UsageError(f"threads must be >= 1 (got {threads})")
        self.tta = check_tta(tta)
        content, self.name = read_model_bytes(model_path)
        check_tflite(content, self.name)
        self._runtime = load_runtime(runtime)
        self.runtime = str(self._runtime)  # e.g. "ai-edge-litert 2.3.0"
        self.model = open_model(content, self.name, self._runtime, threads, workload)
        self.record, self.has_record = _record(content, self.name, self.model)
        self.class_names = self.record.class_names
        self.image_size = self.record.input.size  # (height, width)
        self.color = self.record.input.pixel_color  # what images are converted to
        record = self.record
        # Every uint8 pixel value -> the input tensor's value: normalization and quantization
        # folded into one 256-entry table, so a batch is prepared by a single lookup.
        pixels = np.arange(256) * record.normalization_scale + record.normalization_offset
        self._lut = self.model.input.quantize(pixels)
        self._lut_kind = _table_kind(self._lut)
        self.output_values = record.output_values
        self._logits = self.output_values == "logits"
        self._out_lut = _output_table(self.model.output, self._logits)
        self._gray_as_rgb = record.input.grayscale is not None  # a MediaPipe variant
        if not self.has_record:  # said once the model itself has been accepted
            log.warning(
                "%s has no fmnist_edge metadata: assuming Fashion-MNIST class names, "
                "pixel / 255 and probabilities out",
                self.name,
            )

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The file's record as its JSON (None for a file without one)."""
        return self.record.to_dict() if self.has_record else None

    def resolve_mode(self, mode: str) -> str:
        """``mode`` for this model: photo and auto are Fashion-MNIST's conversions; any other
        model takes its images as they are (raw: converted to its size and colour only)."""
        check_mode(mode)
        if self.record.is_fashion_mnist:
            return mode
        if mode == "photo":
            raise UsageError(
                f"--mode photo is Fashion-MNIST's conversion; {self.name} is a "
                f"{self.image_size[1]}x{self.image_size[0]} {self.color} model of its own "
                "classes: use --mode raw (resize and convert only)"
            )
        return "raw"

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
        """(N, H, W[, C]) uint8, already checked -> (N, classes) float32, averaged over each
        image and its mirror with tta "flip"."""
        if self.tta == "flip":
            n = len(x)
            both = self._model_proba(np.concatenate([x, x[:, :, ::-1]]))  # one invoke of 2N
            return (both[:n] + both[n:]) * np.float32(0.5)
        return self._model_proba(x)

    def input_tensor(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W[, C]) uint8 pixels, already checked -> the input tensor's values, as the
        engine's ``run`` takes them (what a benchmark times the engine on)."""
        return self._input(self._tensor_pixels(x))

    def _model_proba(self, x: np.ndarray) -> np.ndarray:
        out = self.model.run(self.input_tensor(x))
        if self._out_lut is None:
            values = self.model.output.dequantize(out)
            return _softmax(values) if self._logits else values
        values = self._out_lut[out.view(np.uint8)]  # one lookup instead of (q - zp) * scale
        if self._logits:  # the table already holds exp(logit - max)
            return (values / values.sum(axis=1, keepdims=True)).astype(np.float32, copy=False)
        return values

    def _tensor_pixels(self, x: np.ndarray) -> np.ndarray:
        """A MediaPipe variant takes its gray image as RGB: the gray channel three times."""
        if not self._gray_as_rgb:
            return x
        return np.repeat(x.reshape(*x.shape[:3], 1), 3, axis=3)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """One image's pixels as the methods take them: (H, W) gray, (H, W, 3) RGB."""
        return (*self.image_size, 3) if self.color == "rgb" else self.image_size

    def _pixels(self, x: np.ndarray) -> np.ndarray:
        """A batch as given -> (N, H, W[, C]) uint8; one image becomes a batch of one. Pixels
        are checked as predict checks them (preprocess.pixel_values); the shape error shows
        the caller's shape, not ours."""
        given = np.asarray(x)
        x = pixel_values(given)
        one = self.image_shape
        if x.shape == one or (self.color != "rgb" and x.shape == (*one, 1)):
            x = x[None]
        rgb = self.color == "rgb"
        ok = x.ndim in (3, 4) and x.shape[1:3] == self.image_size
        ok = ok and (x.shape[3:] == (3,) if rgb else x.shape[3:] in ((), (1,)))
        if not ok:
            h, w = self.image_size
            want = f"(N, {h}, {w}, 3)" if rgb else f"(N, {h}, {w}[, 1])"
            raise ImageError(f"array: predict_proba needs {want} images, got {given.shape}")
        return x

    def output_tensor(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W[, C]) raw pixels (uint8, or integers 0-255) -> the model's output tensor
        as the interpreter returns it (for the bundled model: int8 logits), before any
        dequantization or softmax, and without tta. What to compare, bit for bit, between two
        machines."""
        x = self._pixels(x)
        if len(x) == 0:
            return np.zeros((0, len(self.class_names)), dtype=self.model.output.dtype)
        return self.model.run(self.input_tensor(x)).copy()

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W[, C]) raw pixels (uint8, or integers 0-255) -> (N, classes) float32
        probabilities (the softmax of the logits, for a file that outputs logits)."""
        x = self._pixels(x)
        if len(x) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return self._proba(x)

    def _result(self, probs: np.ndarray, top_k: int) -> Prediction:
        return self._results(probs[None], top_k)[0]

    def _results(self, probs: np.ndarray, top_k: int) -> list[Prediction]:
        """(N, classes) probabilities -> N Predictions, each ranking its ``top_k`` >= 1 classes
        (ties in class order), ranked for the whole batch at once."""
        orders = np.argsort(-probs, axis=1, kind="stable")[:, :top_k].tolist()
        names, out = self.class_names, []
        for order, values in zip(orders, probs.tolist(), strict=True):
            ranked = [(names[i], values[i]) for i in order]
            out.append(Prediction(ranked[0][0], order[0], ranked[0][1], ranked))
        return out

    def predict(self, image: ImageSource, mode: str = "auto", top_k: int = 3) -> Prediction:
        """Classify one image: a path, encoded image bytes (PNG, JPEG, ...: an upload), a PIL
        image, or a numpy array of pixels (uint8, or integers 0-255). ``top_k`` >= 1 classes
        are ranked (UsageError otherwise)."""
        check_top_k(top_k)
        return self._result(self._proba(self.to_array(image, mode)[None])[0], top_k)

    def to_array(
        self, image: ImageSource, mode: str = "auto", *, limits: DecodeLimits | None = None
    ) -> np.ndarray:
        """One image as this model takes it: decoded within ``limits`` (None: the defaults),
        converted to its colour and fitted to its size (preprocess.to_array, with ``mode``
        resolved for the model)."""
        mode = self.resolve_mode(mode)
        return to_array(image, mode, self.image_size, self.color, limits=limits)

    def predict_batch(
        self, images: Iterable[ImageSource], mode: str = "auto", top_k: int = 3
    ) -> list[Prediction]:
        """Classify many images in batched invokes. An unreadable image raises ImageError.
        A numpy array is a batch of pixels, (N, H, W[, C]), as predict_proba takes it."""
        mode = self.resolve_mode(mode)
        check_top_k(top_k)
        if isinstance(images, np.ndarray):
            return self._results(self.predict_proba(images), top_k)
        arrays = [self.to_array(image, mode) for image in images]
        if not arrays:
            return []
        return self._results(self.predict_proba(np.stack(arrays)), top_k)
