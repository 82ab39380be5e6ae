"""Named training recipes: settings that go together, so a user need not know them.

A recipe fills in TrainConfig fields; any flag given on the command line still wins. Plain
data, importable without Keras, like train.archs.

A recipe's warm-up is epochs of its own run; a run too short for it (a smoke run of the edge
recipe, ``--epochs 1 --limit 1000``) gets the same share of its own epochs instead, and a log
line says so. A ``--warmup`` the user gave is never changed.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("fmnist.train")

RECIPES: dict[str, dict[str, Any]] = {
    # The notebook's: Adam 1e-3, ReduceLROnPlateau on an 80/20 split, no augmentation.
    "notebook": {"arch": "miniresnet"},
    # The published small-ResNet recipe for Fashion-MNIST (Zhong et al., Random Erasing), on
    # all 60,000 images with a fixed schedule whose last epoch is the model: SGD with Nesterov
    # momentum 0.9 at 0.1 (batch 128), weight decay 5e-4 as PyTorch applies it (coupled, through
    # the momentum: 5e-3 decoupled here, since w -= lr * wd * w per step is 10x smaller without
    # the momentum's 1 / (1 - 0.9)), crop with 4 px padding, flip, random erasing p = 0.5.
    # Cosine decay after a 2-epoch warm-up instead of steps at 50% and 75%, and 120 epochs
    # instead of 300 (a CPU budget); label smoothing 0.1.
    "edge": {
        "arch": "resnet20",
        "epochs": 120,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-3,
        "label_smoothing": 0.1,
        "flip": True,
        "crop_pad": 4,
        "erase": 0.5,
        "cosine": True,
        "warmup": 2.0,
        "val_fraction": 0.0,
    },
}


def recipe_settings(name: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """Recipe ``name``'s settings (none without a name) with the flags ``given`` on top; the
    recipe's warm-up scaled to a run that is not longer than it."""
    recipe = RECIPES[name] if name else {}
    settings = {**recipe, **given}
    warmup, epochs = recipe.get("warmup", 0), settings.get("epochs")
    if warmup and "warmup" not in given and epochs is not None and 1 <= epochs <= warmup:
        settings["warmup"] = warmup * epochs / recipe["epochs"]
        log.info(
            "--recipe %s: --epochs %s is not longer than its %g-epoch warm-up; warming up for "
            "%.3g epochs instead, the recipe's share (%g of %d; --warmup sets it)",
            name,
            epochs,
            warmup,
            settings["warmup"],
            warmup,
            recipe["epochs"],
        )
    return settings
