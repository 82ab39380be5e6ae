"""Batches of uint8 images made float32 only when used: what ``fit`` and ``predict`` read, so a
run holds its images as uint8 (possibly memory-mapped) and never the whole set as floats.

(N, H, W, C) uint8 -> (batch, H, W, C) float32 in [0, 1] (common/pixels.py), the same
arithmetic as converting the whole set first, so results are bit-identical to it.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from fmnist_edge.common.pixels import to_model_input

PREDICT_BATCH = 512


class Batches(keras.utils.PyDataset):
    """Batches in order (validation, prediction), labels passed through when given."""

    def __init__(self, x: Any, y: np.ndarray | None, batch_size: int, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, i: int):
        part = slice(i * self.batch_size, (i + 1) * self.batch_size)
        x = to_model_input(np.asarray(self.x[part]))
        return x if self.y is None else (x, self.y[part])


def predict_proba(model: keras.Model, images: Any) -> np.ndarray:
    """(N, classes) probabilities of (N, H, W, C) uint8 images, a batch at a time."""
    if len(images) == 0:
        return np.zeros((0, model.outputs[0].shape[-1]), np.float32)
    return model.predict(Batches(images, None, PREDICT_BATCH), verbose=0)


def predict_labels(model: keras.Model, images: Any) -> np.ndarray:
    """(N,) predicted class indices of (N, H, W, C) uint8 images."""
    return np.argmax(predict_proba(model, images), axis=1)
