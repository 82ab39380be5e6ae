"""The images an export scores its files on, and the pool it calibrates int8 from.

A file's accuracy means something only on images its model never trained on. A run records
which data it used and how it split it (metrics.json, or state.json for an unfinished run:
``config.data``, ``val_fraction``, ``split_seed``, the image size and colour); the export
prepares the same data the same way (fmnist_edge.dataset.prepare: the decode cache makes that
cheap) and scores on the run's validation part, or on the test split when the run held out no
validation (``--val-fraction 0``, as the edge recipe does). A .keras file without a run beside it
is taken to be a Fashion-MNIST model with the notebook's split (20%, seed 42). Calibration images
come only from the images the run trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.dataset.images import Dataset, Images
from fmnist_edge.dataset.prepare import prepare, run_spec

from .config import SPLIT_SEED


@dataclass(frozen=True)
class Holdout:
    images: np.ndarray  # (N, H, W, C) uint8, images the model never trained on
    labels: np.ndarray  # (N,) integer labels
    split: str  # where they come from, for each file's record


@dataclass(frozen=True)
class ExportData:
    holdout: Holdout
    train: Images  # the images the run trained on: the calibration pool
    dataset: Dataset  # the data's description: class names, size, colour, source, hashes


def load_export_data(
    metrics: dict[str, Any] | None, data_dir: str | Path | None, samples: int | None
) -> ExportData:
    """The held-out images (the first ``samples`` of a seeded shuffle; all when None) and the
    training images, as the run behind ``metrics`` split them."""
    spec = run_spec(metrics, data_dir)
    data = prepare(spec, report=False)
    if len(data.val):  # the validation part is already in a seeded random order
        held = data.val.take(slice(0, samples))
        fraction = f"{spec.val_fraction:.0%}, seed {spec.split_seed}"
        where = f"train split, validation part ({fraction})"
        if data.dataset.val is not None:
            where = "the data's validation folder"
    else:
        test = data.test
        picked = np.random.RandomState(SPLIT_SEED).permutation(len(test))[:samples]
        held = test.take(picked)
        where = f"test split (the run trained on all {len(data.train):,} training images)"
    holdout = Holdout(np.asarray(held.images), np.asarray(held.labels), where)
    return ExportData(holdout, data.train, data.dataset)
