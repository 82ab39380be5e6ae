"""The training loop: the notebook's recipe in backend-agnostic Keras 3, with a run directory
that survives Ctrl-C and can be resumed.

Run directory: model.keras (best by val_accuracy), last.keras + state.json (for --resume),
history.csv, metrics.json, classification_report.{json,txt}, curves.png,
confusion_matrix.png, samples.png. Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from edge_runtime.data import load_split, train_val_split
from edge_runtime.errors import UsageError
from edge_runtime.fileio import atomic_path, atomic_write_json, atomic_write_text

from . import report
from .config import TrainConfig
from .device import DeviceInfo, detect, strategy_scope
from .models import build_model, describe

log = logging.getLogger("fmnist.train")

HISTORY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


@dataclass(frozen=True)
class Data:
    """(N, 28, 28, 1) float32 images in [0, 1] and (N,) uint8 labels for each split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: dict[str, Any]  # source, sha256 and split sizes, for metrics.json


def _scale(images: np.ndarray) -> np.ndarray:
    # (N, 28, 28) uint8 -> (N, 28, 28, 1) float32 in [0, 1]: the normalization every model expects
    return (images.astype(np.float32) / 255.0)[..., None]


def load_data(cfg: TrainConfig) -> Data:
    train, test = load_split("train", cfg.data_dir), load_split("test", cfg.data_dir)
    tr, va = train_val_split(len(train.labels), cfg.val_fraction, cfg.split_seed)
    n = cfg.limit
    parts = {
        "train": (train.images[tr][:n], train.labels[tr][:n]),
        "val": (train.images[va][:n], train.labels[va][:n]),
        "test": (test.images[:n], test.labels[:n]),
    }
    info = {
        "source": str(train.source),
        "sha256": {**train.sha256, **test.sha256},
        "split": {k: len(v[1]) for k, v in parts.items()},
    }
    (xt, yt), (xv, yv), (xs, ys) = parts.values()
    return Data(_scale(xt), yt, _scale(xv), yv, _scale(xs), ys, info)


class Augmented(keras.utils.PyDataset):
    """Shuffled batches with random shifts of up to 2 px and horizontal flips (numpy, so it runs
    on every backend). Fashion-MNIST items are left-right symmetric enough for flips to help."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        x = self.x[idx]
        flip = self.rng.random(len(x)) < 0.5
        x[flip] = x[flip, :, ::-1]
        padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
        dy, dx = self.rng.integers(0, 5, size=(2, len(x)))
        out = np.empty_like(x)
        for k in range(len(x)):  # (N, 32, 32, 1) -> random (N, 28, 28, 1) crops
            out[k] = padded[k, dy[k] : dy[k] + 28, dx[k] : dx[k] + 28]
        return out, self.y[idx]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))


def _current_lr(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class ResumableReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose counters (wait, best, cooldown) survive --resume. Keras resets
    them in ``on_train_begin``, so setting them before ``fit`` does nothing: a resumed run
    then forgets its best val_loss and waits ``patience`` more epochs before any reduction."""

    def __init__(self, *args, restored: dict[str, Any] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.restored = dict(restored or {})

    def on_train_begin(self, logs=None) -> None:
        super().on_train_begin(logs)
        for key, value in self.restored.items():
            setattr(self, key, value)


class RunRecorder(keras.callbacks.Callback):
    """After every epoch: the best model, the last model, history.csv and state.json, each
    replaced atomically, so an interrupted run can always be resumed from its last epoch."""

    def __init__(self, arch: str, out: Path, history: list[dict], best: float, reduce_lr=None):
        super().__init__()
        self.arch, self.out, self.history = arch, out, history
        self.best, self.reduce_lr = best, reduce_lr
        self._t0, self._lr = 0.0, 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._t0, self._lr = time.perf_counter(), _current_lr(self.model)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        row = {k: float(logs.get(k, float("nan"))) for k in HISTORY_KEYS[1:5]}
        row = {"epoch": epoch + 1, **row, "lr": self._lr}  # the rate this epoch ran at
        row["seconds"] = time.perf_counter() - self._t0
        self.history.append(row)
        if row["val_accuracy"] > self.best:
            self.best = row["val_accuracy"]
            _save_model(self.model, self.out / "model.keras")
        _save_model(self.model, self.out / "last.keras")
        write_history(self.out / "history.csv", self.history)
        state = {
            "arch": self.arch,
            "epoch": epoch + 1,
            "best_val_accuracy": self.best,
            "lr": _current_lr(self.model),  # for the next epoch, after any reduction
        }
        if self.reduce_lr is not None:
            state["reduce_lr"] = {
                "wait": int(self.reduce_lr.wait),
                "best": None if self.reduce_lr.best is None else float(self.reduce_lr.best),
                "cooldown_counter": int(self.reduce_lr.cooldown_counter),
            }
        atomic_write_json(self.out / "state.json", state)


def _save_model(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


def write_history(path: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_KEYS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buf.getvalue())


def read_history(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return [
            {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
            for row in csv.DictReader(fh)
        ]


def prepare_out(cfg: TrainConfig) -> dict[str, Any] | None:
    """Create or check the run directory; return the saved state when resuming."""
    out = cfg.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out {out}: not writable ({exc.strerror or exc})") from None
    state_path = out / "state.json"
    if cfg.resume:
        if not (state_path.is_file() and (out / "last.keras").is_file()):
            raise UsageError(f"--resume: {out} holds no interrupted run (no state.json/last.keras)")
        state = json.loads(state_path.read_text())
        if state.get("arch", cfg.arch) != cfg.arch:
            raise UsageError(
                f"--resume: {out} was trained as --arch {state['arch']}, not {cfg.arch}"
            )
        if state["epoch"] >= cfg.epochs:
            raise UsageError(
                f"--resume: {out} already completed {state['epoch']} epochs; raise --epochs"
            )
        return state
    if state_path.exists() or (out / "model.keras").exists():
        raise UsageError(f"--out {out} already holds a run; use --resume or another --out")
    return None


def versions() -> dict[str, str]:
    v = {"python": platform.python_version(), "keras": keras.__version__, "numpy": np.__version__}
    backend = keras.config.backend()
    v["backend"] = backend
    if backend in ("tensorflow", "jax"):
        v[backend] = __import__(backend).__version__
    return v


def _compile(model: keras.Model, cfg: TrainConfig, steps_per_epoch: int) -> None:
    lr: Any = cfg.lr
    if cfg.cosine:
        lr = keras.optimizers.schedules.CosineDecay(cfg.lr, cfg.epochs * steps_per_epoch)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def train(cfg: TrainConfig, callbacks: tuple = ()) -> dict[str, Any]:
    """Fit ``cfg.arch`` as configured, evaluate the best checkpoint, write the run directory,
    and return what metrics.json holds."""
    state = prepare_out(cfg)
    keras.utils.set_random_seed(cfg.seed + (state["epoch"] if state else 0))
    device = detect()
    mixed = device.kind == "GPU" if cfg.mixed_precision is None else cfg.mixed_precision
    keras.mixed_precision.set_dtype_policy("mixed_float16" if mixed else "float32")
    log.info("device: %s; mixed precision: %s", device.describe(), "on" if mixed else "off")
    data = load_data(cfg)
    log.info("data: %s from %s", data.info["split"], data.info["source"])
    steps = math.ceil(len(data.y_train) / cfg.batch_size)

    with strategy_scope(device, cfg.distribute):
        if state:
            model = keras.models.load_model(cfg.out / "last.keras")
        else:
            model = build_model(cfg.arch)
            _compile(model, cfg, steps)
    if state and not cfg.cosine:
        model.optimizer.learning_rate.assign(state["lr"])
    history = read_history(cfg.out / "history.csv") if state else []
    start = state["epoch"] if state else 0
    shape = describe(model)
    log.info("%s: %s params, %.1fM MACs", cfg.arch, f"{shape['params']:,}", shape["macs"] / 1e6)

    cbs: list = list(callbacks)
    reduce_lr = None
    if not cfg.cosine:
        reduce_lr = ResumableReduceLROnPlateau(
            monitor="val_loss",
            factor=cfg.lr_factor,
            patience=cfg.lr_patience,
            min_lr=cfg.min_lr,
            restored=(state or {}).get("reduce_lr"),
        )
        cbs.insert(0, reduce_lr)
    best = state["best_val_accuracy"] if state else -1.0
    recorder = RunRecorder(cfg.arch, cfg.out, history, best, reduce_lr)

    if cfg.augment:
        fit_x, fit_y = Augmented(data.x_train, data.y_train, cfg.batch_size, cfg.seed + start), None
    else:
        fit_x, fit_y = data.x_train, data.y_train
    t0 = time.perf_counter()
    model.fit(
        fit_x,
        fit_y,
        batch_size=None if cfg.augment else cfg.batch_size,
        epochs=cfg.epochs,
        initial_epoch=start,
        validation_data=(data.x_val, data.y_val),
        callbacks=[*cbs, recorder],  # the recorder last: it saves the others' updated state
        verbose=1 if os.isatty(2) else 2,
    )
    fit_seconds = time.perf_counter() - t0
    return finish(cfg, data, device, shape, history, fit_seconds, mixed)


def finish(
    cfg: TrainConfig,
    data: Data,
    device: DeviceInfo,
    shape: dict[str, int],
    history: list[dict],
    fit_seconds: float,
    mixed: bool,
) -> dict[str, Any]:
    """Evaluate the best checkpoint on validation and test; write reports, plots, metrics.json."""
    best = keras.models.load_model(cfg.out / "model.keras")
    pred_val = np.argmax(best.predict(data.x_val, batch_size=512, verbose=0), axis=1)
    pred_test = np.argmax(best.predict(data.x_test, batch_size=512, verbose=0), axis=1)
    reports = {
        "validation": report.classification_report(data.y_val, pred_val),
        "test": report.classification_report(data.y_test, pred_test),
    }
    report.write_reports(cfg.out, reports)
    report.plot_curves(history, cfg.out / "curves.png")
    cm = report.confusion_matrix(data.y_test, pred_test)
    report.plot_confusion(cm, cfg.out / "confusion_matrix.png")
    report.plot_samples(data.x_test, data.y_test, pred_test, cfg.out / "samples.png")

    seconds = [h["seconds"] for h in history]
    best_row = max(history, key=lambda h: h["val_accuracy"])
    metrics = {
        "arch": cfg.arch,
        **shape,
        "config": cfg.to_dict(),
        "data": data.info,
        "versions": versions(),
        "device": device.describe(),
        "device_kind": device.kind,
        "cpu": device.cpu,
        "mixed_precision": mixed,
        "epochs_completed": len(history),
        "epoch_seconds": seconds,
        "images_per_s": len(data.y_train) / float(np.median(seconds)),
        "best_epoch": int(best_row["epoch"]),
        "val_accuracy": reports["validation"]["accuracy"],
        "test_accuracy": reports["test"]["accuracy"],
        "wall_seconds": fit_seconds,
    }
    atomic_write_json(cfg.out / "metrics.json", metrics)
    log.info(
        "best epoch %d: val_accuracy %.4f, test_accuracy %.4f (%s)",
        metrics["best_epoch"],
        metrics["val_accuracy"],
        metrics["test_accuracy"],
        cfg.out,
    )
    return metrics
