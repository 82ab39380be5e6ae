"""The images an export scores its files on, and the pool it calibrates int8 from.

A file's accuracy means something only on images its model never trained on. A run records how
it split the training images (metrics.json: ``config.val_fraction``, ``config.split_seed``);
the export scores on that run's validation part, and on the official test split when the run
trained on all 60,000 images (``--val-fraction 0``, as the edge recipe does): nothing else was
held out. A .keras file without a run beside it is taken to use the notebook's split (20%,
seed 42). Calibration images come only from the images the run trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fmnist_edge.dataset.files import load_split, train_val_split

from .config import SPLIT_SEED, VAL_FRACTION


@dataclass(frozen=True)
class Holdout:
    images: np.ndarray  # (N, 28, 28) uint8, images the model never trained on
    labels: np.ndarray  # (N,) uint8
    split: str  # where they come from, for each file's record


@dataclass(frozen=True)
class ExportData:
    holdout: Holdout
    train_images: np.ndarray  # (60000, 28, 28) uint8, the official train split
    train_labels: np.ndarray  # (60000,) uint8
    trained_on: np.ndarray  # indices into the train split that the run trained on
    sha256: dict[str, str]  # of every file read


def run_split(metrics: dict[str, Any] | None) -> tuple[float, int]:
    """(val_fraction, split_seed) of the run behind ``metrics``; the notebook's without one."""
    config = (metrics or {}).get("config") or {}
    return float(config.get("val_fraction", VAL_FRACTION)), int(
        config.get("split_seed", SPLIT_SEED)
    )


def load_export_data(
    metrics: dict[str, Any] | None, data_dir: str | None, samples: int | None
) -> ExportData:
    """The held-out images (the first ``samples`` of a seeded shuffle; all when None) and the
    training images, as the run behind ``metrics`` split them."""
    train = load_split("train", data_dir)
    fraction, seed = run_split(metrics)
    if fraction > 0:
        trained_on, val_idx = train_val_split(len(train.labels), fraction, seed)
        picked = val_idx[:samples]  # a random subset: val_idx is a permutation
        holdout = Holdout(
            train.images[picked],
            train.labels[picked],
            f"train split, validation part ({fraction:.0%}, seed {seed})",
        )
        return ExportData(holdout, train.images, train.labels, trained_on, dict(train.sha256))
    test = load_split("test", data_dir)
    picked = np.random.RandomState(SPLIT_SEED).permutation(len(test.labels))[:samples]
    holdout = Holdout(
        test.images[picked],
        test.labels[picked],
        f"test split (the run trained on all {len(train.labels):,} training images)",
    )
    trained_on = np.arange(len(train.labels))
    sha = {**train.sha256, **test.sha256}
    return ExportData(holdout, train.images, train.labels, trained_on, sha)
