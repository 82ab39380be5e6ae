"""The settings of one training run: one frozen dataclass, defaults as in the notebook."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist_edge.common.errors import UsageError
from fmnist_edge.common.rundir import RunDir
from fmnist_edge.dataset.prepare import DataSpec

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "miniresnet"  # a key of train.models.ARCHS
    epochs: int = 50  # total epochs (a resumed run continues up to this)
    batch_size: int = 128  # per step, across all devices
    lr: float = 1e-3  # the optimizer's initial (peak, with --warmup) learning rate
    optimizer: str = "adam"  # adam (the notebook's), adamw, or sgd (Nesterov momentum)
    momentum: float = 0.9  # SGD's momentum
    weight_decay: float = 0.0  # decoupled: every step w -= lr * weight_decay * w (all weights)
    label_smoothing: float = 0.0  # target = (1 - s) * one_hot + s / 10
    seed: int = 42  # seeds weights, shuffling and augmentation (the split uses split_seed)
    split_seed: int = 42  # the notebook's random_state for the 80/20 split
    val_fraction: float = 0.2  # the notebook's test_size; 0 trains on all 60,000 images
    augment: bool = False  # shorthand for flip=True, crop_pad=2 (the edge models' recipe)
    flip: bool = False  # random horizontal flips
    crop_pad: int = 0  # random 28x28 crops of the image zero-padded by this many pixels
    erase: float = 0.0  # random erasing: probability of one random-valued box per image
    limit: int | None = None  # first N samples of every split, for smoke runs
    data_dir: Path | None = None  # Fashion-MNIST IDX files (None: the usual search)
    data: Path | None = None  # own images: a folder, a CSV or an IDX folder (None: Fashion-MNIST)
    image_size: int | None = None  # own data: square side (None: chosen from the data, recorded)
    color: str | None = None  # own data: "grayscale" or "rgb" (None: from the data, recorded)
    skip_bad: bool = False  # own data: train without unreadable images (counted), not stop
    drop_leaks: bool = False  # remove training images that are also validation or test images
    out: Path = Path("runs/run")  # the run directory
    resume: bool = False  # continue from out/last.keras
    mixed_precision: bool | None = None  # None: on when a GPU is used
    distribute: bool = False  # data-parallel over all local devices
    lr_patience: int = 3  # ReduceLROnPlateau on val_loss ...
    lr_factor: float = 0.5  # ... halves the rate ...
    min_lr: float = 1e-6  # ... down to this
    cosine: bool = False  # cosine decay to 0 over all epochs instead of ReduceLROnPlateau
    warmup: float = 0.0  # epochs of linear warm-up from 0 to --lr (then cosine or constant)
    ema: float = 0.0  # exponential moving average of the weights (momentum per step; 0: off)
    # BatchNorm statistics re-estimated from this many training images (augmented as training
    # is) before each validation and save; 0 keeps Keras' moving averages (train/batchnorm.py)
    bn_images: int = 2048
    recipe: str | None = None  # the named preset these settings started from, for the record

    def __post_init__(self) -> None:
        # accept str paths from callers; frozen, so set through object
        object.__setattr__(self, "out", Path(self.out))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.data is not None:
            object.__setattr__(self, "data", Path(self.data))
        if self.color == "gray":  # the flag's word for the record's
            object.__setattr__(self, "color", "grayscale")
        if self.augment:  # the shorthand, resolved once so the record says what ran
            object.__setattr__(self, "flip", True)
            object.__setattr__(self, "crop_pad", self.crop_pad or 2)
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"--batch-size must be at least 1 (got {self.batch_size})"),
            (
                math.isfinite(self.lr) and self.lr > 0,
                f"--lr must be a positive number (got {self.lr})",
            ),
            (
                self.optimizer in OPTIMIZERS,
                f"--optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})",
            ),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1) (got {self.momentum})"),
            (
                0 <= self.weight_decay < 1,
                f"--weight-decay must be in [0, 1) (got {self.weight_decay})",
            ),
            (
                0 <= self.label_smoothing < 1,
                f"--label-smoothing must be in [0, 1) (got {self.label_smoothing})",
            ),
            (0 <= self.crop_pad <= 14, f"--crop-pad must be 0..14 pixels (got {self.crop_pad})"),
            (0 <= self.erase <= 1, f"--erase must be a probability in [0, 1] (got {self.erase})"),
            (
                0 <= self.warmup < self.epochs,
                f"--warmup must be at least 0 and less than --epochs (got {self.warmup})",
            ),
            (0 <= self.ema < 1, f"--ema must be in [0, 1) (got {self.ema})"),
            (self.bn_images >= 0, f"--bn-images must be at least 0 (got {self.bn_images})"),
            (self.limit is None or self.limit >= 1, f"--limit must be at least 1 ({self.limit})"),
            (
                0 <= self.val_fraction < 1,
                f"--val-fraction must be in [0, 1) (got {self.val_fraction})",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    @property
    def has_validation(self) -> bool:
        return self.val_fraction > 0

    def data_spec(self) -> DataSpec:
        """Which images this run trains on, and how they are made into the model's input."""
        return DataSpec(
            path=self.data,
            data_dir=self.data_dir,
            image_size=self.image_size,
            color=self.color,
            val_fraction=self.val_fraction,
            split_seed=self.split_seed,
            limit=self.limit,
            skip_bad=self.skip_bad,
            drop_leaks=self.drop_leaks,
        )

    @property
    def plateau(self) -> bool:
        """ReduceLROnPlateau drives the rate: the notebook's way, needs a validation split."""
        return not self.cosine and self.warmup == 0 and self.has_validation

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()
        }


def read_run_state(out: Path) -> dict[str, Any]:
    """What a run directory saved after its last epoch (state.json: the epoch, the learning
    rate, the settings), or UsageError when ``out`` holds no run to resume."""
    run = RunDir(out)
    state_path = run.state
    if not (state_path.is_file() and run.last.is_file()):
        raise UsageError(f"--resume: {out} holds no interrupted run (no state.json/last.keras)")
    try:
        state = json.loads(state_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--resume: {state_path}: unreadable ({exc})") from None
    if not (isinstance(state, dict) and isinstance(state.get("epoch"), int)):
        raise UsageError(f"--resume: {state_path}: not a run state (no epoch)")
    return state
