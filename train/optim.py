"""The optimizer, the loss and the learning-rate schedule of a run, built from its settings.

The schedule is a callback that sets a plain float learning rate before every step, computed
from (epoch, step) and the run's settings alone. Nothing about it is saved inside the model, so
a resumed or extended run follows the schedule of its current settings: extending a finished
cosine run to more epochs stretches the cosine over the new total (the rate rises again from
where the longer schedule would be), and it trains.
"""

from __future__ import annotations

import math
from typing import Any

import keras

from .config import TrainConfig


def lr_at(cfg: TrainConfig, epoch: float) -> float:
    """The learning rate at a (fractional) epoch: linear warm-up from 0 over ``cfg.warmup``
    epochs, then cosine decay to 0 at ``cfg.epochs`` (or constant ``cfg.lr`` without --cosine)."""
    if epoch < cfg.warmup:
        return cfg.lr * epoch / cfg.warmup
    if not cfg.cosine:
        return cfg.lr
    t = (epoch - cfg.warmup) / (cfg.epochs - cfg.warmup)
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * min(t, 1.0)))


class Schedule(keras.callbacks.Callback):
    """Sets the optimizer's learning rate before each training step to ``lr_at``."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int):
        super().__init__()
        self.cfg, self.steps = cfg, steps_per_epoch
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs=None) -> None:
        # the step's midpoint, so epoch 0 step 0 of a warm-up does not run at exactly 0
        lr = lr_at(self.cfg, self._epoch + (batch + 0.5) / self.steps)
        self.model.optimizer.learning_rate.assign(lr)


def uses_schedule(cfg: TrainConfig) -> bool:
    return cfg.cosine or cfg.warmup > 0


def make_optimizer(cfg: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam (the notebook's), AdamW or SGD with Nesterov momentum, with decoupled weight decay
    and an optional EMA of the weights. The rate starts at its schedule's first value."""
    common: dict[str, Any] = {"learning_rate": lr_at(cfg, 0.0) if uses_schedule(cfg) else cfg.lr}
    if cfg.weight_decay:
        common["weight_decay"] = cfg.weight_decay
    if cfg.ema:
        common.update(use_ema=True, ema_momentum=cfg.ema)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=cfg.momentum, nesterov=True, **common)
    if cfg.optimizer == "adamw":
        common.setdefault("weight_decay", 0.0)
        return keras.optimizers.AdamW(**common)
    return keras.optimizers.Adam(**common)


def make_loss(cfg: TrainConfig) -> keras.losses.Loss:
    """Cross-entropy on probabilities; one-hot targets when label smoothing is on (Keras smooths
    only categorical targets), so the data must then be one-hot too (see ``one_hot_labels``)."""
    if cfg.label_smoothing:
        return keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def one_hot_labels(cfg: TrainConfig) -> bool:
    return cfg.label_smoothing > 0
