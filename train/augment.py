"""Data augmentation in numpy (so it runs on every Keras backend), one function per transform,
and the shuffled, augmented batches that fit() reads.

Every transform takes (N, H, W, C) float32 images in [0, 1] and a numpy Generator and returns
new images of the same shape; none modifies its input.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from fmnist_edge.common.pixels import to_model_input


def flip(x: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Mirror each image left-right with probability ``p``."""
    out = x.copy()
    mask = rng.random(len(x)) < p
    out[mask] = out[mask, :, ::-1]
    return out


def crop(x: np.ndarray, rng: np.random.Generator, pad: int) -> np.ndarray:
    """A random HxW window of each image zero-padded by ``pad`` pixels on every side."""
    if pad == 0:
        return x.copy()
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, n))
    out = np.empty_like(x)
    for k in range(n):  # (N, H + 2 pad, W + 2 pad, C) -> (N, H, W, C)
        out[k] = padded[k, dy[k] : dy[k] + h, dx[k] : dx[k] + w]
    return out


def erase_boxes(
    n: int,
    rng: np.random.Generator,
    p: float,
    size: tuple[int, int] = (28, 28),
    area: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.3, 1 / 0.3),
) -> list[tuple[int, int, int, int] | None]:
    """Random Erasing's boxes (Zhong et al. 2020): for each image, with probability ``p``, a
    (top, left, height, width) box covering ``area`` of the image at aspect ``ratio`` (tried up
    to 100 times until it fits, as in the paper); None where the image is left alone."""
    h, w = size
    boxes: list[tuple[int, int, int, int] | None] = []
    for _ in range(n):
        box = None
        if rng.random() < p:
            for _attempt in range(100):
                target = rng.uniform(*area) * h * w
                aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
                bh = int(round(math.sqrt(target * aspect)))
                bw = int(round(math.sqrt(target / aspect)))
                if 0 < bh < h and 0 < bw < w:
                    top, left = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
                    box = (int(top), int(left), bh, bw)
                    break
        boxes.append(box)
    return boxes


def erase(x: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Random Erasing: replace one box per chosen image by uniform noise in [0, 1] (the paper's
    RE-R variant, its best on CIFAR)."""
    out = x.copy()
    for k, box in enumerate(erase_boxes(len(x), rng, p, x.shape[1:3])):
        if box is not None:
            top, left, bh, bw = box
            out[k, top : top + bh, left : left + bw] = rng.random((bh, bw, x.shape[3]))
    return out


def augment(
    x: np.ndarray, rng: np.random.Generator, do_flip: bool, crop_pad: int, erase_p: float
) -> np.ndarray:
    """The run's augmentation of a batch: flip, then crop, then erase (the reference order:
    erasing comes last); each step only when configured."""
    if do_flip:
        x = flip(x, rng)
    x = crop(x, rng, crop_pad)
    if erase_p:
        x = erase(x, rng, erase_p)
    return x


class Augmented(keras.utils.PyDataset):
    """Shuffled batches, each through ``augment`` as configured. Images may be uint8 (made
    float32 in [0, 1] a batch at a time, bit for bit as converting them all first) or float32.
    Labels are passed through (sparse or one-hot). With no transform on, plain shuffled
    batches."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        seed: int,
        flip: bool = True,
        crop_pad: int = 2,
        erase: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.do_flip, self.crop_pad, self.erase_p = flip, crop_pad, erase
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        x = self.x[idx]
        if x.dtype == np.uint8:
            x = to_model_input(x)
        x = augment(x, self.rng, self.do_flip, self.crop_pad, self.erase_p)
        return x, self.y[idx]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))
