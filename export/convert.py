"""Keras model -> .tflite bytes, one function per concern: the calibration set, the conversion,
and what the converted file's input and output tensors turned out to be.

TensorFlow is imported inside the functions that need it, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from typing import Any

import numpy as np

from fmnist_edge.common.labels import IMAGE_SHAPE
from fmnist_edge.common.nativelog import native_stderr_captured
from fmnist_edge.common.pixels import PIXEL_OFFSET, PIXEL_SCALE, to_model_input

# The models take pixel / 255 (common/pixels.py); the runtime repeats it from the metadata.
NORMALIZATION = {
    "scale": PIXEL_SCALE,
    "offset": PIXEL_OFFSET,
    "formula": "x = pixel * scale + offset (pixel / 255)",
}


def calibration_indices(
    labels: np.ndarray, num_classes: int, n: int, seed: int, strict: bool = True
) -> np.ndarray:
    """``n`` indices of the training images (never test or validation) whose ``labels`` are
    given, stratified by class: n // classes per class, the remainder spread over randomly
    chosen classes. A class with fewer images is a ValueError when ``strict``, else it gives
    all it has (a small set: fewer than ``n`` in all). Seeded, and in a shuffled order so no
    converter sees the classes in blocks."""
    rng = np.random.default_rng(seed)
    per_class = np.full(num_classes, n // num_classes)
    per_class[rng.choice(num_classes, n % num_classes, replace=False)] += 1
    labels = np.asarray(labels)
    pool = np.arange(len(labels))
    picked = []
    for cls, k in enumerate(per_class):
        members = pool[labels[pool] == cls]
        if k > len(members) and strict:
            raise ValueError(f"class {cls} has only {len(members)} training images, {k} asked for")
        picked.append(rng.choice(members, min(k, len(members)), replace=False))
    out = np.concatenate(picked)
    rng.shuffle(out)
    return out


def without_softmax(model: Any) -> Any | None:
    """The same network ending at its logits, sharing the weights, or None when ``model`` does
    not end in a softmax: a Softmax layer, an Activation("softmax") layer (train/models.py), or
    a Dense layer with a softmax activation (the usual Sequential classifier).

    Why export the logits: TFLite's int8 SOFTMAX is not an XNNPACK op. Its own kernel has
    separate NEON and x86 paths that round differently in rare cases, so an int8 probability
    can be 1 LSB apart on a Pi. The layers before it are bit-identical across CPUs, and the
    softmax of ten numbers costs the runtime microseconds in numpy, at float precision."""
    with native_stderr_captured():
        import keras

    last = model.layers[-1] if model.layers else None
    softmax = keras.activations.softmax
    if isinstance(last, keras.layers.Softmax) or (
        isinstance(last, keras.layers.Activation) and last.activation is softmax
    ):
        logits = last.input
    elif isinstance(last, keras.layers.Dense) and last.activation is softmax:
        head = keras.layers.Dense.from_config({**last.get_config(), "activation": "linear"})
        logits = head(last.input)
        head.set_weights(last.get_weights())
    else:
        return None
    if logits.dtype != "float32":  # a mixed-precision model: its softmax was the float32 cast
        logits = keras.layers.Activation("linear", dtype="float32", name="logits_f32")(logits)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs  # as it was built
    return keras.Model(inputs, logits, name=model.name)


def convert(
    model: Any,
    mode: str,
    calibration: np.ndarray | None = None,
    int8_io: str = "int8",
) -> tuple[bytes, float]:
    """Convert a Keras model to .tflite bytes; returns (bytes, seconds spent converting).

    float32: as is. float16: float16 weights, float32 I/O. dynamic: int8 weights, float
    activations. int8: full-integer post-training quantization (every op TFLITE_BUILTINS_INT8,
    per-channel weights, the converter's default), calibrated on ``calibration``, (N, H, W[, C])
    uint8 images, with ``int8_io`` input and output tensors (int8, uint8 or float32).
    """
    with native_stderr_captured():
        import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 conversion needs calibration images")
        x = to_model_input(calibration)

        def representative_dataset():
            for i in range(len(x)):
                yield [x[i : i + 1]]  # (1, H, W, C) float32, the model's own input

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_dtype = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[int8_io]
        converter.inference_input_type = io_dtype
        converter.inference_output_type = io_dtype
    elif mode != "float32":
        raise ValueError(f"unknown mode {mode!r}")

    start = time.perf_counter()
    # Keras prints its SavedModel signature and TF warns about input statistics it never
    # needs (our input range comes from calibration): neither helps the user.
    with (
        native_stderr_captured(),
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        data = converter.convert()
    return bytes(data), time.perf_counter() - start


def _tensor_info(detail: dict[str, Any]) -> dict[str, Any]:
    dtype = np.dtype(detail["dtype"]).name
    scale, zero_point = detail["quantization"]
    info: dict[str, Any] = {"dtype": dtype, "scale": None, "zero_point": None}
    if dtype in ("int8", "uint8") and scale:
        info.update(scale=float(scale), zero_point=int(zero_point))
    return info


def pixel_offset(scale: float, zero_point: int, dtype: str) -> int | None:
    """k when quantizing every pixel / 255 gives exactly pixel + k (int8: -128, uint8: 0), so a
    runtime may skip the float math; None when it doesn't."""
    info = np.iinfo(dtype)
    pixels = np.arange(256, dtype=np.float64)
    x = (pixels * np.float32(PIXEL_SCALE)).astype(np.float32)  # what the runtime feeds in float
    q = np.clip(np.round(x / np.float32(scale)) + zero_point, info.min, info.max)
    offsets = q - pixels
    return int(offsets[0]) if np.all(offsets == offsets[0]) else None


def io_quantization(tflite: bytes, shape: tuple[int, ...] = IMAGE_SHAPE) -> dict[str, Any]:
    """The input and output tensors' dtype, scale and zero point, read from the interpreter
    (the truth), for the metadata record. ``shape``: the input's, batch aside."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    inputs, outputs = interp.get_input_details(), interp.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"expected 1 input and 1 output, got {len(inputs)} and {len(outputs)}")
    got = tuple(int(d) for d in inputs[0]["shape"][1:])
    if got != shape:
        raise ValueError(f"converted input shape {got}, expected {shape}")
    info = {"input": _tensor_info(inputs[0]), "output": _tensor_info(outputs[0])}
    inp = info["input"]
    if inp["scale"] is not None:
        inp["pixel_offset"] = pixel_offset(inp["scale"], inp["zero_point"], inp["dtype"])
    return info
