"""The fmnist_edge metadata record written into every .tflite (see docs/DESIGN.md): what a
runtime needs to use the file correctly, and where the file came from."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import platform
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge import __version__ as fmnist_edge_version
from fmnist_edge.edge_runtime.record import FASHION_MNIST_POLARITY, InputSpec, ModelRecord

from .config import ExportConfig
from .convert import NORMALIZATION
from .holdout import ExportData
from .mediapipe_model import LUMA_CODES, LUMA_DENOMINATOR
from .validate import Validation

WEIGHTS = {  # how each mode stores the weights
    "float32": "float32",
    "float16": "float16",
    "dynamic": "int8 (dynamic-range: float activations)",
    "int8": "int8 per-channel (full-integer: int8 activations)",
}
_TRAINING_METRICS = ("val_accuracy", "test_accuracy", "best_epoch", "selection", "params", "macs")


def versions() -> dict[str, str]:
    """Versions of everything that shaped the file."""
    out = {"python": platform.python_version(), "fmnist-edge": fmnist_edge_version}
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "numpy", "ai-edge-litert", "flatbuffers"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _training(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """What the run's metrics.json says about the model (None without a run directory)."""
    if not metrics:
        return {"training_metrics": None}
    return {
        "training_metrics": {k: metrics[k] for k in _TRAINING_METRICS if k in metrics},
        "training_config": metrics.get("config"),
        "training_versions": metrics.get("versions"),
    }


def base_record(
    cfg: ExportConfig,
    model_path: Path,
    metrics: dict[str, Any] | None,
    arch: str,
    data: ExportData,
    float_proba: np.ndarray,
    logits: bool = False,
) -> ModelRecord:
    """Everything in the record that is the same for every mode. ``logits``: the file outputs
    the logits of a model whose final softmax was left out (the runtime applies it). A model
    that never had a softmax and does not output probabilities is taken to output logits too
    (trained with ``from_logits=True``)."""
    softmax = bool(np.all(float_proba >= 0) and np.allclose(float_proba.sum(axis=1), 1, atol=1e-3))
    dataset = data.dataset
    polarity = FASHION_MNIST_POLARITY if dataset.is_fashion_mnist else None
    data_sha = {**((metrics or {}).get("data") or {}).get("sha256", {}), **dataset.sha256}
    return ModelRecord(
        class_names=dataset.class_names,
        input=InputSpec(*dataset.image_size, dataset.color, polarity),
        output_values="probabilities" if softmax and not logits else "logits",
        normalization_scale=NORMALIZATION["scale"],
        normalization_offset=NORMALIZATION["offset"],
        provenance={
            "arch": arch,
            "source_model": model_path.name,
            "source_sha256": sha256_file(model_path),
            **_training(metrics),
            "data_sha256": data_sha,
            "versions": versions(),
            "export_config": cfg.to_dict(),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
        dataset=None if dataset.is_fashion_mnist else dataset.describe(),
    )


def mode_record(
    base: ModelRecord,
    cfg: ExportConfig,
    mode: str,
    io_quantization: dict[str, Any],
    convert_seconds: float,
    calibration_samples: int | None = None,
) -> ModelRecord:
    """``base`` completed for one mode: its quantization (I/O tensors as the interpreter reports
    them) and its calibration (``calibration_samples``: the images it used)."""
    int8 = mode == "int8"
    return base.replace(
        quantization={
            "mode": mode,
            "weights": WEIGHTS[mode],
            **({"io_dtype": cfg.int8_io} if int8 else {}),
            **io_quantization,
        },
        provenance={
            **base.provenance,
            "mode": mode,
            "calibration_samples": calibration_samples if int8 else None,
            "calibration_seed": cfg.seed if int8 else None,
            "calibration_source": "the run's training images, stratified by class"
            if int8
            else None,
            "convert_seconds": round(convert_seconds, 3),
        },
    )


def validation_record(validation: Validation, split: str) -> dict[str, Any]:
    """How a file scored against its Keras model on held-out images (``split``: which)."""
    return {**validation.to_dict(), "split": split}


def mediapipe_record(
    meta: ModelRecord, io_quantization: dict[str, Any], source: str
) -> ModelRecord:
    """The record of ``source``'s MediaPipe variant (export/mediapipe_model.py): RGB uint8 in
    (converted to gray inside for a gray model), float32 probabilities out; everything else as
    ``source``'s."""
    inside = None
    if meta.input.color == "grayscale":
        inside = "inside the model: ITU-R 601 luma, ({} R + {} G + {} B) / {}".format(
            *LUMA_CODES, LUMA_DENOMINATOR
        )
    return meta.replace(
        input=dataclasses.replace(meta.input, color="rgb", grayscale=inside),
        output_values="probabilities",
        quantization={**meta.quantization, **io_quantization},
        provenance={**meta.provenance, "target": "mediapipe", "derived_from": source},
    )


def agreement_record(
    reference: np.ndarray, proba: np.ndarray, labels: np.ndarray, source: str, split: str
) -> dict[str, Any]:
    """How a derived file's outputs compare with those of the file it was derived from."""
    ref_top, top = np.argmax(reference, axis=1), np.argmax(proba, axis=1)
    accuracy, ref_accuracy = float(np.mean(top == labels)), float(np.mean(ref_top == labels))
    return {
        "samples": int(len(labels)),
        "reference": source,
        "reference_accuracy": ref_accuracy,
        "tflite_accuracy": accuracy,
        "difference_pp": round(100.0 * (accuracy - ref_accuracy), 6),
        "agreement": float(np.mean(top == ref_top)),
        "max_abs_difference": float(np.max(np.abs(proba - reference), initial=0.0)),
        "split": split,
    }
