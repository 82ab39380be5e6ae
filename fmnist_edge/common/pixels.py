"""The models' input: 8-bit gray pixels scaled to [0, 1]. Written once; every other place (the
training data, export's calibration and validation, the runtime's default for a file without
metadata, the benchmarks) uses these.
"""

from __future__ import annotations

import numpy as np

PIXEL_SCALE = 1.0 / 255.0  # x = pixel * PIXEL_SCALE + PIXEL_OFFSET
PIXEL_OFFSET = 0.0


def to_model_input(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 pixels -> (N, H, W, C) float32 in [0, 1] (a gray
    image without its channel axis gets one)."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    return x.astype(np.float32) * np.float32(PIXEL_SCALE)
