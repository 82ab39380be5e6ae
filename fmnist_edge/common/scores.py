"""Scores both training and benchmarks report: numpy only, so a Pi without TensorFlow can too."""

from __future__ import annotations

import numpy as np

from fmnist_edge.common.labels import NUM_CLASSES


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int = NUM_CLASSES) -> np.ndarray:
    """(n, n) int64 counts, rows = true class, columns = predicted class."""
    return np.bincount(
        y_true.astype(np.int64) * n + y_pred.astype(np.int64), minlength=n * n
    ).reshape(n, n)
