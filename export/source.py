"""The model fmnist-export converts: a run directory or a .keras file, checked before any work.

A run directory holds model.keras and metrics.json (the training record that the files'
provenance and the choice of held-out images come from); a bare .keras file has no record.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

from fmnist_edge.common.errors import ModelError
from fmnist_edge.common.kerasfile import KERAS_SUFFIXES
from fmnist_edge.common.rundir import RunDir
from fmnist_edge.dataset.images import Dataset

RUN_MODEL, RUN_METRICS, RUN_STATE = RunDir.MODEL, RunDir.METRICS, RunDir.STATE
log = logging.getLogger("fmnist.export")


def resolve_source(source: Path) -> tuple[Path, dict[str, Any] | None]:
    """The .keras file to export and the run's record: its metrics.json, or for a run that has
    not finished the settings in its state.json; None for a .keras file outside a run."""
    source = Path(source)
    if source.is_dir():
        model_path = source / RUN_MODEL
        if not model_path.is_file():
            raise ModelError(f"{source}: no {RUN_MODEL} in this directory (not a run directory)")
    elif not source.exists():
        raise ModelError(f"{source}: no such file or directory")
    elif source.suffix not in KERAS_SUFFIXES:  # say it now, not after TensorFlow's import
        what = "a TFLite model" if source.suffix == ".tflite" else f"{source.suffix or 'no'} suffix"
        raise ModelError(
            f"{source}: not a Keras model ({what}); fmnist-export converts a .keras file "
            "or a run directory"
        )
    else:
        model_path = source
    metrics = _read_record(model_path.parent / RUN_METRICS)
    if metrics is None:  # a run still training, or stopped: its settings are in state.json
        state = _read_record(model_path.parent / RUN_STATE) or {}
        if isinstance(state.get("config"), dict):
            where = f"epoch {state.get('epoch')} of {state['config'].get('epochs')}"
            log.info("%s: an unfinished run, at %s", model_path.parent, where)
            metrics = {
                "arch": state.get("arch"),
                "config": state["config"],
                "selection": f"an unfinished run: its model.keras at {where}",
            }
    return model_path, metrics


def _read_record(path: Path) -> dict[str, Any] | None:
    """A run's JSON record, or None when it is missing or unreadable (with a warning)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.warn(
            f"{path}: unreadable, provenance lacks training metrics ({exc})", stacklevel=3
        )
        return None
    return record if isinstance(record, dict) else None


def _shapes(tensors: list[Any]) -> str:
    return ", ".join(str(tuple(t.shape)) for t in tensors) or "nothing"


def check_classifier(model: Any, path: Path, dataset: Dataset) -> None:
    """ModelError unless ``model`` maps the data's images, (N, H, W, C), to its classes."""
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError):
        raise ModelError(f"{path}: the model has no defined input shape") from None
    image = (*dataset.image_size, dataset.channels)
    ok = (
        len(inputs) == 1
        and tuple(inputs[0].shape[1:]) == image
        and len(outputs) == 1
        and tuple(outputs[0].shape[1:]) == (dataset.num_classes,)
    )
    if not ok:
        h, w, c = image
        raise ModelError(
            f"{path}: takes {_shapes(inputs)} and returns {_shapes(outputs)}; its data "
            f"({dataset.source}) needs (None, {h}, {w}, {c}) -> (None, {dataset.num_classes})"
        )
