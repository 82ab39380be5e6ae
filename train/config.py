"""The settings of one training run: one frozen dataclass, defaults as in the notebook."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.errors import UsageError


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "miniresnet"  # a key of train.models.ARCHS
    epochs: int = 50  # total epochs (a resumed run continues up to this)
    batch_size: int = 128  # per step, across all devices
    lr: float = 1e-3  # Adam's initial learning rate
    seed: int = 42  # seeds weights, shuffling and augmentation (the split uses split_seed)
    split_seed: int = 42  # the notebook's random_state for the 80/20 split
    val_fraction: float = 0.2  # the notebook's test_size
    augment: bool = False  # random shifts (up to 2 px) and horizontal flips
    limit: int | None = None  # first N samples of every split, for smoke runs
    data_dir: Path | None = None  # Fashion-MNIST IDX files (None: the usual search)
    out: Path = Path("runs/run")  # the run directory
    resume: bool = False  # continue from out/last.keras
    mixed_precision: bool | None = None  # None: on when a GPU is used
    distribute: bool = False  # data-parallel over all local devices
    lr_patience: int = 3  # ReduceLROnPlateau on val_loss ...
    lr_factor: float = 0.5  # ... halves the rate ...
    min_lr: float = 1e-6  # ... down to this
    cosine: bool = False  # cosine decay over all epochs instead of ReduceLROnPlateau

    def __post_init__(self) -> None:
        # accept str paths from callers; frozen, so set through object
        object.__setattr__(self, "out", Path(self.out))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"--batch-size must be at least 1 (got {self.batch_size})"),
            (
                math.isfinite(self.lr) and self.lr > 0,
                f"--lr must be a positive number (got {self.lr})",
            ),
            (self.limit is None or self.limit >= 1, f"--limit must be at least 1 ({self.limit})"),
            (0 < self.val_fraction < 1, "val_fraction must be between 0 and 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()
        }
