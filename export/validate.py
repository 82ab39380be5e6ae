"""How much accuracy a conversion cost: the Keras model and the .tflite file on the same images."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fmnist_edge.common.pixels import to_model_input


@dataclass(frozen=True)
class Validation:
    samples: int  # images scored
    float_accuracy: float  # the Keras model's top-1 accuracy
    tflite_accuracy: float  # the .tflite file's top-1 accuracy, through the edge runtime
    drop_pp: float  # float_accuracy - tflite_accuracy, in percentage points
    agreement: float  # fraction of images where both give the same top-1 class

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def keras_proba(model: Any, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(N, H, W[, C]) uint8 -> (N, classes) float32 from the Keras model (inference mode)."""
    x = to_model_input(images)
    # direct calls, not model.predict: no per-model tracing, which dominates small exports
    batches = [model(x[i : i + batch_size], training=False) for i in range(0, len(x), batch_size)]
    return np.concatenate([np.asarray(b, dtype=np.float32) for b in batches])


def tflite_proba(
    path: str | os.PathLike, images: np.ndarray, threads: int | None = None
) -> np.ndarray:
    """(N, H, W[, C]) uint8 -> (N, classes) float32 from a .tflite file, run by edge_runtime as
    a Raspberry Pi would run it (its own quantization, its own normalization from metadata)."""
    from fmnist_edge.edge_runtime.classifier import Classifier

    return np.asarray(Classifier(path, threads=threads).predict_proba(images), dtype=np.float32)


def rgb_proba(
    path: str | os.PathLike, images: np.ndarray, threads: int | None = None, batch: int = 1000
) -> np.ndarray:
    """(N, H, W[, C]) uint8 -> (N, classes) float32 from a -mediapipe.tflite file, fed as
    MediaPipe feeds it: RGB uint8 (a gray image repeated into R, G and B), no normalization of
    ours."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    rgb = np.asarray(images, np.uint8)
    if rgb.ndim == 4 and rgb.shape[-1] == 1:
        rgb = rgb[..., 0]
    if rgb.ndim == 3:  # gray
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    parts, size = [], None
    for i in range(0, len(rgb), batch):
        chunk = rgb[i : i + batch]
        if len(chunk) != size:
            interp.resize_tensor_input(inp["index"], [len(chunk), *rgb.shape[1:]])
            interp.allocate_tensors()
            size = len(chunk)
        interp.set_tensor(inp["index"], chunk)
        interp.invoke()
        parts.append(np.array(interp.get_tensor(out["index"]), dtype=np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, out["shape"][-1]), np.float32)


def compare(float_proba: np.ndarray, tflite_proba: np.ndarray, labels: np.ndarray) -> Validation:
    """Accuracy of each, the drop, and their top-1 agreement."""
    labels = np.asarray(labels)
    f_top, t_top = np.argmax(float_proba, axis=1), np.argmax(tflite_proba, axis=1)
    float_acc = float(np.mean(f_top == labels))
    tflite_acc = float(np.mean(t_top == labels))
    return Validation(
        samples=int(len(labels)),
        float_accuracy=float_acc,
        tflite_accuracy=tflite_acc,
        drop_pp=round(100.0 * (float_acc - tflite_acc), 6),
        agreement=float(np.mean(f_top == t_top)),
    )
