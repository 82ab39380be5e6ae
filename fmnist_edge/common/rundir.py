"""A run directory: the one place that knows its file names and reads its JSON records.

fmnist-train writes it, fmnist-export, fmnist-bench and ``train.compare`` read it. No Keras
here: reading a run's record must not cost TensorFlow's import.

    run = RunDir("runs/edge-m")
    run.model, run.last, run.state, run.history, run.metrics   # Paths
    run.read_metrics()                                        # dict or None
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunDir:
    path: Path

    MODEL = "model.keras"  # the selected model (best val_accuracy, or the last epoch)
    LAST = "last.keras"  # the last epoch, for --resume
    STATE = "state.json"  # where the run stands: epoch, learning rate, settings
    HISTORY = "history.csv"  # one row an epoch
    METRICS = "metrics.json"  # the finished run's record

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def model(self) -> Path:
        return self.path / self.MODEL

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    @property
    def state(self) -> Path:
        return self.path / self.STATE

    @property
    def history(self) -> Path:
        return self.path / self.HISTORY

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    def holds_run(self) -> bool:
        """Whether a run was started here (a new run must not overwrite it)."""
        return self.state.exists() or self.model.exists()

    def read_metrics(self) -> dict[str, Any] | None:
        """metrics.json, or None when the run has not finished (or it is unreadable)."""
        return read_json(self.metrics)

    def read_state(self) -> dict[str, Any] | None:
        """state.json, or None when missing or unreadable."""
        return read_json(self.state)

    def record(self) -> dict[str, Any] | None:
        """What is known of how the run's model was made: metrics.json when the run finished,
        else the settings in state.json (a run still training, or stopped), else None."""
        metrics = self.read_metrics()
        if metrics is not None:
            return metrics
        state = self.read_state() or {}
        if not isinstance(state.get("config"), dict):
            return None
        where = f"epoch {state.get('epoch')} of {state['config'].get('epochs')}"
        return {
            "arch": state.get("arch"),
            "config": state["config"],
            "data": state.get("data"),
            "selection": f"an unfinished run: its model at {where}",
            "unfinished": where,
        }


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when missing, unreadable or not an object."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None
