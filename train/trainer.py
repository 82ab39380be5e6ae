"""The training loop: the notebook's recipe in backend-agnostic Keras 3, with a run directory
that survives Ctrl-C and can be resumed.

Run directory: model.keras (best by val_accuracy), last.keras + state.json (for --resume),
history.csv, metrics.json, classification_report.{json,txt}, curves.png,
confusion_matrix.png, samples.png. Every file is written atomically.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
import math
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from fmnist_edge.common.errors import ModelError, UsageError
from fmnist_edge.common.fileio import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    missing_folders,
    remove_empty_folders,
)
from fmnist_edge.common.kerasfile import load_keras
from fmnist_edge.common.rundir import RunDir
from fmnist_edge.dataset.prepare import TrainingData, prepare

from . import report
from .augment import Augmented
from .batches import PREDICT_BATCH, Batches, predict_labels
from .batchnorm import PreciseBatchNorm, moving_average_record, short_run_notice
from .config import TrainConfig, read_run_state
from .device import DeviceInfo, detect, strategy_scope
from .models import build_model, describe
from .optim import Schedule, make_loss, make_optimizer, one_hot_labels, uses_schedule

log = logging.getLogger("fmnist.train")


def load_data(cfg: TrainConfig) -> TrainingData:
    """The run's images, uint8 and possibly memory-mapped: each batch is made float32 when
    it is used (batches.py), so a large own-data set is never all in RAM as floats."""
    return prepare(cfg.data_spec())


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


def history_keys(cfg: TrainConfig) -> tuple[str, ...]:
    """history.csv's columns: validation ones only when there is a validation split."""
    keys = ["epoch", "loss", "accuracy"]
    if cfg.has_validation:
        keys += ["val_loss", "val_accuracy"] + (["ema_val_accuracy"] if cfg.ema else [])
    return (*keys, "lr", "seconds")


@contextlib.contextmanager
def averaged_weights(model: keras.Model, bn: PreciseBatchNorm | None = None) -> Iterator[None]:
    """Inside, the model holds its optimizer's EMA weights, with BatchNorm statistics of their
    own when ``bn`` is given; after, its own weights and statistics again."""
    raw = [v.numpy() for v in model.weights]  # trainable weights and BatchNorm statistics
    model.optimizer.finalize_variable_values(model.trainable_weights)
    for v in model.trainable_weights:  # copies: on JAX the weights now share the optimizer's
        v.assign(v.numpy())  # arrays, which predict() donates, and a later save read deleted
    try:
        if bn is not None:
            bn.estimate_now(model)
        yield
    finally:
        for v, value in zip(model.weights, raw, strict=True):
            v.assign(value)


class RunRecorder(keras.callbacks.Callback):
    """After every epoch: the selected model, the last model, history.csv and state.json, each
    replaced atomically, so an interrupted run can always be resumed from its last epoch.

    model.keras is the best epoch by validation accuracy, or the last epoch when the run has no
    validation split; with --ema it holds the averaged weights (and is selected by them)."""

    def __init__(
        self,
        cfg: TrainConfig,
        data: TrainingData,
        history: list[dict],
        best: float,
        reduce_lr=None,
        resumes: list[dict] | None = None,
        bn: PreciseBatchNorm | None = None,
    ):
        super().__init__()
        self.cfg, self.data, self.history = cfg, data, history
        self.keys = history_keys(cfg)
        self.best, self.reduce_lr = best, reduce_lr
        self.resumes = resumes or []
        self.bn = bn
        self._t0, self._lr = 0.0, 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if batch == 0:  # the rate the epoch ran at (after a schedule set it), as logged
            self._lr = _current_lr(self.model)

    def _select(self, row: dict[str, Any]) -> bool:
        if not self.cfg.has_validation:
            return True
        score = row["ema_val_accuracy"] if self.cfg.ema else row["val_accuracy"]
        if score > self.best:
            self.best = score
            return True
        return False

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        out = self.out
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({k: float(logs.get(k, float("nan"))) for k in self.keys[1:-2]})
        with averaged_weights(self.model, self.bn) if self.cfg.ema else contextlib.nullcontext():
            if self.cfg.ema and self.cfg.has_validation:
                row["ema_val_accuracy"] = _accuracy(self.model, self.data.val)
                logs["ema_val_accuracy"] = row["ema_val_accuracy"]  # printed: it selects
            row.update(lr=self._lr, seconds=time.perf_counter() - self._t0)
            if self._select(row):
                _save_model(self.model, RunDir(out).model)
        self.history.append(row)
        _save_model(self.model, RunDir(out).last)
        write_history(RunDir(out).history, self.history, self.keys)
        state = {
            "arch": self.cfg.arch,
            "epoch": epoch + 1,
            "best_val_accuracy": self.best,
            "lr": _current_lr(self.model),  # for the next epoch, after any reduction
            "config": {k: v for k, v in self.cfg.to_dict().items() if k != "resume"},
            "resumes": self.resumes,
        }
        if self.reduce_lr is not None:
            state["reduce_lr"] = {
                "wait": int(self.reduce_lr.wait),
                "best": None if self.reduce_lr.best is None else float(self.reduce_lr.best),
                "cooldown_counter": int(self.reduce_lr.cooldown_counter),
            }
        atomic_write_json(RunDir(out).state, state)

    @property
    def out(self) -> Path:
        return self.cfg.out


def _accuracy(model: keras.Model, images) -> float:
    return float(np.mean(predict_labels(model, images.images) == images.labels))


def _save_model(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


def write_history(path: Path, history: list[dict], keys: tuple[str, ...]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buf.getvalue())


def read_history(path: Path) -> list[dict]:
    """A run's history.csv, to continue it on --resume; UsageError when it is missing or broken
    (a resume without it would write a record that starts at the resumed epoch)."""
    try:
        with open(path, newline="") as fh:
            return [
                {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
                for row in csv.DictReader(fh)
            ]
    except FileNotFoundError:
        raise UsageError(f"--resume: {path}: missing; the run's record is incomplete") from None
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise UsageError(f"--resume: {path}: unreadable ({exc})") from None


def check_out(cfg: TrainConfig) -> dict[str, Any] | None:
    """Check the run directory before any work; return the saved state when resuming. A new
    run's folder is only created by ``create_out``, once the data has loaded."""
    out = cfg.out
    if cfg.resume:
        state = read_run_state(out)
        if state.get("arch", cfg.arch) != cfg.arch:
            raise UsageError(
                f"--resume: {out} was trained as --arch {state['arch']}, not {cfg.arch}"
            )
        if state["epoch"] >= cfg.epochs:
            raise UsageError(
                f"--resume: {out} already completed {state['epoch']} epochs; raise --epochs"
            )
        return state
    if RunDir(out).holds_run():
        raise UsageError(f"--out {out} already holds a run; use --resume or another --out")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: not a folder")
    return None


def create_out(out: Path) -> list[Path]:
    """Create a new run's folder; return the folders this made (to remove them if the run
    fails before its first epoch is saved)."""
    made = missing_folders(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out {out}: not writable ({exc.strerror or exc})") from None
    return made


def versions() -> dict[str, str]:
    v = {"python": platform.python_version(), "keras": keras.__version__, "numpy": np.__version__}
    backend = keras.config.backend()
    v["backend"] = backend
    if backend in ("tensorflow", "jax"):
        v[backend] = __import__(backend).__version__
    return v


def _compile(model: keras.Model, cfg: TrainConfig) -> None:
    model.compile(optimizer=make_optimizer(cfg), loss=make_loss(cfg), metrics=["accuracy"])


def train(cfg: TrainConfig, callbacks: tuple = ()) -> dict[str, Any]:
    """Fit ``cfg.arch`` as configured, evaluate the selected checkpoint, write the run
    directory, and return what metrics.json holds."""
    state = check_out(cfg)
    keras.utils.set_random_seed(cfg.seed + (state["epoch"] if state else 0))
    data = load_data(cfg)
    cfg = resolved(cfg, data)
    log.info("data: %s", data_summary(data))
    if not data.dataset.is_fashion_mnist:
        log.info("images per class (train/val/test): %s", per_class_summary(data))
    device = detect()
    mixed = device.kind == "GPU" if cfg.mixed_precision is None else cfg.mixed_precision
    keras.mixed_precision.set_dtype_policy("mixed_float16" if mixed else "float32")
    log.info("device: %s; mixed precision: %s", device.describe(), "on" if mixed else "off")
    made = [] if state else create_out(cfg.out)
    steps = math.ceil(len(data.train) / cfg.batch_size)
    run = RunDir(cfg.out)
    dataset = data.dataset

    with strategy_scope(device, cfg.distribute):
        if state:
            try:
                model = load_keras(run.last, compile=True)
            except ModelError as exc:
                raise UsageError(f"--resume: {exc}") from None
        else:
            model = build_model(
                cfg.arch, dataset.num_classes, (*dataset.image_size, dataset.channels)
            )
            _compile(model, cfg)
    if state and not uses_schedule(cfg):
        model.optimizer.learning_rate.assign(state["lr"] if cfg.plateau else cfg.lr)
    history = read_history(run.history) if state else []
    start = state["epoch"] if state else 0
    resumes = resume_record(state, cfg.epochs)
    shape = describe(model)
    log.info("%s: %s params, %.1fM MACs", cfg.arch, f"{shape['params']:,}", shape["macs"] / 1e6)
    notice = short_run_notice(model, len(data.train), steps, cfg.epochs, cfg.bn_images)
    if notice:
        log.warning(notice)

    cbs: list = list(callbacks)
    reduce_lr = None
    if cfg.plateau:
        reduce_lr = ResumableReduceLROnPlateau(
            monitor="val_loss",
            factor=cfg.lr_factor,
            patience=cfg.lr_patience,
            min_lr=cfg.min_lr,
            restored=(state or {}).get("reduce_lr"),
        )
        cbs.insert(0, reduce_lr)
    elif uses_schedule(cfg):
        cbs.insert(0, Schedule(cfg, steps))
    best = state["best_val_accuracy"] if state else -1.0
    bn = PreciseBatchNorm.for_run(cfg, data.train.images)
    if bn is not None:
        cbs.append(bn)  # after the schedule's callbacks, before the recorder saves
    recorder = RunRecorder(cfg, data, history, best, reduce_lr, resumes, bn)

    y_train, y_val = data.train.labels, data.val.labels
    if one_hot_labels(cfg):  # label smoothing needs categorical targets
        eye = np.eye(dataset.num_classes, dtype=np.float32)
        y_train, y_val = eye[y_train], eye[y_val]
    fit_x = Augmented(  # shuffled, made float32 a batch at a time; plain when nothing is on
        data.train.images,
        y_train,
        cfg.batch_size,
        cfg.seed + start,
        flip=cfg.flip,
        crop_pad=cfg.crop_pad,
        erase=cfg.erase,
    )
    val = Batches(data.val.images, y_val, PREDICT_BATCH) if cfg.has_validation else None
    t0 = time.perf_counter()
    try:
        model.fit(
            fit_x,
            epochs=cfg.epochs,
            initial_epoch=start,
            validation_data=val,
            callbacks=[*cbs, recorder],  # the recorder last: it saves the others' updated state
            # Keras draws its bar on stdout: live in a terminal, one line an epoch when piped
            verbose=1 if sys.stdout.isatty() else 2,
        )
    except BaseException:
        if not history:  # nothing saved: leave nothing behind (an interrupted run keeps its epochs)
            remove_empty_folders(made)
        raise
    fit_seconds = time.perf_counter() - t0
    return finish(cfg, data, device, shape, history, fit_seconds, mixed, resumes, bn)


def resolved(cfg: TrainConfig, data: TrainingData) -> TrainConfig:
    """``cfg`` with the image size and colour the data was given in (chosen from the data when
    the user named none), so that state.json and metrics.json say what ran."""
    if cfg.data is None:
        return cfg
    side = data.dataset.image_size[0]
    return dataclasses.replace(cfg, image_size=side, color=data.dataset.color)


def data_record(data: TrainingData) -> dict[str, Any]:
    """metrics.json's "data": where the images came from, their hashes, the split sizes, the
    dataset's description and what the checks found."""
    d = data.dataset
    split = {"train": len(data.train), "val": len(data.val)}
    split["test"] = len(data.test) if data.test is not None else 0
    return {
        "source": d.source,
        "sha256": d.sha256,
        "split": split,
        "dataset": d.describe(),
        "checks": data.report,
    }


def data_summary(data: TrainingData) -> str:
    """One line: what the run trains on, and what it holds out."""
    d = data.dataset
    test = f"{len(data.test):,}" if data.test is not None else "no"
    counts = f"{len(data.train):,} train / {len(data.val):,} validation / {test} test images"
    if d.is_fashion_mnist:
        return f"{counts} from {d.source}"
    look = f"{d.image_size[1]}x{d.image_size[0]} {d.color}"
    skipped = f", {len(d.skipped)} unreadable skipped" if d.skipped else ""
    return f"{counts}, {d.num_classes} classes, {look}, from {d.source} ({d.kind}){skipped}"


def per_class_summary(data: TrainingData, most: int = 12) -> str:
    """``boot 38/10/16, sandal ...``: the first ``most`` classes' images in each split."""
    counts = list(data.report["counts"].values())
    names = data.dataset.class_names
    parts = [f"{n} {'/'.join(str(c[i]) for c in counts)}" for i, n in enumerate(names[:most])]
    more = f", and {len(names) - most} more classes" if len(names) > most else ""
    return ", ".join(parts) + more


def resume_record(state: dict[str, Any] | None, epochs: int) -> list[dict[str, int]]:
    """Where the run was resumed, and to what total: each --resume reseeds the random streams
    (from the epoch it starts at), and a raised --epochs stretches the schedule, so both are
    part of how the model was made."""
    if not state:
        return []
    entry = {"after_epoch": state["epoch"], "epochs_before": state["config"]["epochs"]}
    return [*state.get("resumes", []), {**entry, "epochs": epochs}]


def finish(
    cfg: TrainConfig,
    data: TrainingData,
    device: DeviceInfo,
    shape: dict[str, int],
    history: list[dict],
    fit_seconds: float,
    mixed: bool,
    resumes: list[dict[str, int]],
    bn: PreciseBatchNorm | None = None,
) -> dict[str, Any]:
    """Evaluate the best checkpoint on validation and test; write reports, plots, metrics.json."""
    best = keras.models.load_model(RunDir(cfg.out).model)
    names = data.dataset.class_names
    reports, predicted = {}, {}
    for split, images in (("validation", data.val), ("test", data.test)):
        if images is not None and len(images):
            predicted[split] = predict_labels(best, images.images)
            reports[split] = report.classification_report(images.labels, predicted[split], names)
    report.write_reports(cfg.out, reports)
    report.plot_curves(history, cfg.out / "curves.png")
    split = "test" if "test" in predicted else "validation"  # what the plots show
    shown = data.test if split == "test" else data.val
    cm = report.confusion_matrix(shown.labels, predicted[split], len(names))
    report.plot_confusion(
        cm, cfg.out / "confusion_matrix.png", names, f"Confusion matrix ({split})"
    )
    report.plot_samples(
        shown.images[:25], shown.labels, predicted[split], cfg.out / "samples.png", names
    )

    seconds = [h["seconds"] for h in history]
    if cfg.has_validation:
        key = "ema_val_accuracy" if cfg.ema else "val_accuracy"
        selected = int(max(history, key=lambda h: h[key])["epoch"])
        selection = f"best {key} on the validation split: epoch {selected}"
    else:
        selected = int(history[-1]["epoch"])
        selection = f"last epoch ({selected}): no validation split, trained on every image"
    if cfg.ema:
        selection += ", averaged (EMA) weights"
    for r in resumes:
        if r["epochs"] != r["epochs_before"]:
            change = "raised" if r["epochs"] > r["epochs_before"] else "lowered"
            selection += (
                f"; --epochs {change} from {r['epochs_before']} to {r['epochs']}"
                f" by --resume after epoch {r['after_epoch']}"
            )
    metrics = {
        "arch": cfg.arch,
        **shape,
        "config": cfg.to_dict(),
        "data": data_record(data),
        "versions": versions(),
        "device": device.describe(),
        "device_kind": device.kind,
        "cpu": device.cpu,
        "mixed_precision": mixed,
        "epochs_completed": len(history),
        "resumes": resumes,
        "epoch_seconds": seconds,
        "train_seconds": float(sum(seconds)),
        "images_per_s": len(data.train) / float(np.median(seconds)),
        "best_epoch": selected,
        "selection": selection,
        "batchnorm": bn.record() if bn is not None else moving_average_record(best),
        **{
            f"{'val' if k == 'validation' else k}_accuracy": r["accuracy"]
            for k, r in reports.items()
        },
        "wall_seconds": fit_seconds,
    }
    atomic_write_json(RunDir(cfg.out).metrics, metrics)
    return metrics
