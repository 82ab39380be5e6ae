"""BatchNorm statistics that belong to the weights beside them, whatever the run's length.

Keras keeps each BatchNormalization's moving mean and variance as an exponential average of the
training batches' (momentum 0.99) that starts at 0 and 1: after S steps 0.99**S of the start is
still there (20% after 158 steps), so a short run's model is right in training mode and near
chance in inference mode, the mode that validation, export, the runtime and the server use. Here
the statistics are re-estimated instead ("precise BN", Wu & Johnson 2021): one pass in training
mode over a fixed sample of training images (augmented once as the run's batches are), Dropout
off, in chunks; each layer gets the exact mean and variance of its inputs over the whole sample,
pooled across chunks. Training steps never read the moving statistics, so the training curve
(loss and accuracy in history.csv) is the same, bit for bit, with or without this.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from fmnist_edge.common.pixels import to_model_input

from .augment import augment
from .config import TrainConfig

CHUNK = 256  # images per forward pass: each chunk's statistics are near the population's


# Layers that draw random numbers in training mode, all off at rate 0
_DROPOUTS = (keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.AlphaDropout)


def _layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):  # a nested model's own layers
            yield from _layers(layer)


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization in ``model``, nested models included, in call order."""
    return [x for x in _layers(model) if isinstance(x, keras.layers.BatchNormalization)]


@contextlib.contextmanager
def batch_statistics(model: keras.Model, momentum: float | None = None) -> Iterator[None]:
    """Inside, ``model(x, training=True)`` normalizes with each batch's own statistics and drops
    nothing: Dropout rates are 0, so no random stream advances and the output is a function of
    the weights and ``x``. With ``momentum``, every BatchNormalization uses it meanwhile."""
    dropouts = [x for x in _layers(model) if isinstance(x, _DROPOUTS)]
    bns = batchnorm_layers(model)
    rates, momenta = [d.rate for d in dropouts], [b.momentum for b in bns]
    try:
        for d in dropouts:
            d.rate = 0.0  # their call skips the random draw at rate 0
        if momentum is not None:
            for b in bns:
                b.momentum = momentum
        yield
    finally:
        for d, rate in zip(dropouts, rates, strict=True):
            d.rate = rate
        for b, m in zip(bns, momenta, strict=True):
            b.momentum = m


def predict_in_training_mode(model: keras.Model, x: np.ndarray, batch: int = 128) -> np.ndarray:
    """The outputs with each batch of ``batch`` normalized by its own statistics (Dropout off):
    what the network learned, whatever its stored statistics. A reference, as in training;
    the stored statistics are left as they are (momentum 1)."""
    with batch_statistics(model, momentum=1.0):
        out = [model(x[i : i + batch], training=True) for i in range(0, len(x), batch)]
    return np.concatenate([keras.ops.convert_to_numpy(o) for o in out])


def estimate(model: keras.Model, images: np.ndarray, chunk: int = CHUNK) -> None:
    """Set every BatchNormalization's moving mean and variance to those of its inputs over
    ``images`` (model input, (N, ...)), all layers in one pass, in chunks of ``chunk``.

    In training mode each layer normalizes a chunk with the chunk's own statistics and, at
    momentum 0, stores them as its moving ones, where they are read after each chunk. Pooled
    over chunks (weighted by their sizes) the mean is exact, and the variance is too: the mean
    of the chunks' variances plus the variance of their means.
    """
    bns = batchnorm_layers(model)
    if not bns or len(images) == 0:
        return
    n = len(images)
    first = [np.zeros(b.moving_mean.shape, np.float64) for b in bns]  # sum of w * mean
    second = [np.zeros(b.moving_mean.shape, np.float64) for b in bns]  # sum of w * E[x^2]
    with batch_statistics(model, momentum=0.0):
        for start in range(0, n, chunk):
            x = images[start : start + chunk]
            model(x, training=True)
            w = len(x)
            for b, s1, s2 in zip(bns, first, second, strict=True):
                mean = keras.ops.convert_to_numpy(b.moving_mean).astype(np.float64)
                var = keras.ops.convert_to_numpy(b.moving_variance).astype(np.float64)
                s1 += w * mean
                s2 += w * (var + mean * mean)
    for b, s1, s2 in zip(bns, first, second, strict=True):
        mean = s1 / n
        b.moving_mean.assign(mean.astype(np.float32))
        b.moving_variance.assign(np.maximum(s2 / n - mean * mean, 0.0).astype(np.float32))


def sample(images: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` of ``images``, a random subset in their order (all when there are no
    more than ``count``)."""
    if len(images) <= count:
        return images
    return images[np.sort(rng.choice(len(images), count, replace=False))]


class PreciseBatchNorm(keras.callbacks.Callback):
    """Re-estimates the statistics from a fixed sample of the training images before each
    validation and at each epoch's end (list it before the callback that saves the model).

    ``estimate_now`` serves weights swapped in by others (the EMA's, which need their own)."""

    def __init__(self, images: np.ndarray, of: int, augmented: bool):
        super().__init__()
        self.images, self.of, self.augmented = images, of, augmented
        self.seconds: list[float] = []
        self._stale = True

    @classmethod
    def for_run(cls, cfg: TrainConfig, x_train: np.ndarray) -> PreciseBatchNorm | None:
        """The run's estimator, or None when it keeps Keras' moving averages (bn_images 0).
        ``x_train``: the training images, uint8 pixels (made float here) or model input.

        The sample is augmented once as training augments (measured on the bundled model:
        statistics of plain images cost it 0.35 pp of test accuracy, augmented ones nothing; its
        layers learned behind the statistics of augmented batches). A private generator seeded
        from the run's seed draws it, so the training streams are untouched and a resumed run
        estimates from the same images."""
        if not cfg.bn_images:
            return None
        rng = np.random.default_rng(cfg.seed)
        images = np.asarray(sample(x_train, cfg.bn_images, rng))  # a memory-mapped set's rows
        if images.dtype == np.uint8:  # the run's stored pixels: as the model takes them
            images = to_model_input(images)
        augmented = bool(cfg.flip or cfg.crop_pad or cfg.erase)
        if augmented:
            images = augment(images, rng, cfg.flip, cfg.crop_pad, cfg.erase)
        return cls(images, len(x_train), augmented)

    def estimate_now(self, model: keras.Model) -> None:
        t0 = time.perf_counter()
        estimate(model, self.images)
        self.seconds.append(time.perf_counter() - t0)

    def _refresh(self) -> None:
        if self._stale:  # once an epoch: validation and the save see the same statistics
            self.estimate_now(self.model)
            self._stale = False

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._stale = True

    def on_test_begin(self, logs=None) -> None:
        self._refresh()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self._refresh()

    def record(self) -> dict[str, Any]:
        """How the saved models' statistics were made, for metrics.json."""
        return {
            "method": "re-estimated",
            "images": len(self.images),
            "of_training_images": self.of,
            "augmented": self.augmented,
            "when": "before each validation and each save; EMA weights get their own",
            "median_seconds": float(np.median(self.seconds)) if self.seconds else None,
        }


def moving_average_record(model: keras.Model) -> dict[str, Any]:
    """The record of a run that kept Keras' moving averages (bn_images 0)."""
    momenta = sorted({float(b.momentum) for b in batchnorm_layers(model)})
    return {"method": "Keras moving averages", "momentum": momenta}


def short_run_notice(
    model: keras.Model, images: int, steps_per_epoch: int, epochs: int, bn_images: int
) -> str | None:
    """One line for a run too short for Keras' moving averages to forget their start (1% left
    after 459 steps at momentum 0.99); None for a longer run or a model without BatchNorm."""
    momenta = [b.momentum for b in batchnorm_layers(model)]
    if not momenta or max(momenta) <= 0:
        return None
    settled = math.ceil(math.log(0.01) / math.log(max(momenta)))
    steps = steps_per_epoch * epochs
    if steps >= settled:
        return None
    left = max(momenta) ** steps
    line = (
        f"a short run: {images:,} training images make {steps_per_epoch} steps an epoch, "
        f"{steps} in all; Keras' moving BatchNorm statistics would keep {left:.0%} of their "
        f"start (1% after {settled} steps)"
    )
    if not bn_images:
        return line + (
            ", and with --bn-images 0 the saved model uses them: expect near-chance accuracy "
            "in inference (validation, export, infer, serve); leave --bn-images at its default"
        )
    return line + (
        f", so they are re-estimated from {min(images, bn_images):,} training images before "
        "each validation and save; what small sets reach: docs/training.md, 'Small sets'"
    )
