"""Held-out accuracy of short runs on small training sets, before and after BatchNorm re-estimation.

For images per class x architecture x epochs (train/batchnorm.py re-estimates the statistics).

    python -m fmnist_edge.benchmarks.small_sets [--dataset fashion|digits ...] [--per-class N ...]
        [--arch NAME ...] [--epochs E ...] [--momentum-rule] [--json FILE]

Sets are cut from Fashion-MNIST's training split (held out: the official test images) and from
scikit-learn's digits (8x8 in 17 levels, scaled to 0-255 and resized to 28x28; held out: the
digits no set took). Each cell trains once as ``fmnist-train --val-fraction 0`` does (Adam at a
constant 1e-3, batch 128, no augmentation, the last epoch is the model) and scores the same
weights three ways: with Keras' moving averages (momentum 0.99, what fmnist-train saved before),
re-estimated from the training images (what it saves now), and in training mode (each batch of
128 normalized by its own statistics: what the network learned). Training never reads the
moving statistics, so "before" and "after" are one run. ``--momentum-rule`` trains each cell a
second time with the other remedy, a momentum set from the run's steps (the start keeps 1% of
its weight after the first epoch), and scores its moving averages.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.errors import FmnistError, UsageError

DATASETS = ("fashion", "digits")
HELD_OUT = 2000  # Fashion-MNIST test images scored, 200 a class


@dataclass(frozen=True)
class SmallSet:
    name: str  # e.g. "fashion, 30 a class"
    x_train: np.ndarray  # (N, H, W, C) float32 model input
    y_train: np.ndarray  # (N,) class indices
    x_held: np.ndarray
    y_held: np.ndarray

    @property
    def classes(self) -> int:
        return int(max(self.y_train.max(), self.y_held.max())) + 1


def _per_class(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random indices of every class, shuffled together."""
    picked = [rng.permutation(np.flatnonzero(labels == c))[:count] for c in np.unique(labels)]
    if min(len(p) for p in picked) < count:
        raise UsageError(f"--per-class {count}: a class has only {min(map(len, picked))} images")
    return rng.permutation(np.concatenate(picked))


def fashion(per_class: int, seed: int) -> SmallSet:
    from fmnist_edge.common.pixels import to_model_input
    from fmnist_edge.dataset import load_split

    train, test = load_split("train"), load_split("test")
    rng = np.random.default_rng(seed)
    tr = _per_class(train.labels, per_class, rng)
    held = _per_class(test.labels, HELD_OUT // 10, np.random.default_rng(0))  # same every cell
    return SmallSet(
        f"fashion, {per_class} a class",
        to_model_input(train.images[tr]),
        train.labels[tr].astype(np.int64),
        to_model_input(test.images[held]),
        test.labels[held].astype(np.int64),
    )


def digits(per_class: int, seed: int, size: int = 28) -> SmallSet:
    """scikit-learn's 1,797 digits, pixels 0-16 scaled to 0-255, resized to ``size`` square
    (bilinear, as a photo would be) to fit the architectures' input."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UsageError(
            "--dataset digits needs scikit-learn: pip install scikit-learn "
            "(or pip install -e '.[dev]')"
        ) from None
    from PIL import Image

    from fmnist_edge.common.pixels import to_model_input

    d = load_digits()
    pixels = np.round(d.images * (255 / 16)).astype(np.uint8)
    big = np.stack(
        [np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR)) for p in pixels]
    )
    rng = np.random.default_rng(seed)
    tr = _per_class(d.target, per_class, rng)
    held = np.setdiff1d(np.arange(len(d.target)), tr)
    x = to_model_input(big)
    return SmallSet(f"digits, {per_class} a class", x[tr], d.target[tr], x[held], d.target[held])


def momentum_rule(steps_per_epoch: int) -> float:
    """The momentum at which the start keeps 1% of its weight after one epoch (at most
    Keras' 0.99): 0.01 ** (1 / steps)."""
    return min(0.99, 0.01 ** (1 / steps_per_epoch))


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(x, batch_size=512, verbose=0).argmax(axis=1) == y))


def _fit(data: SmallSet, arch: str, epochs: int, seed: int, momentum: float | None = None):
    import keras

    from fmnist_edge.train.batchnorm import batchnorm_layers
    from fmnist_edge.train.config import TrainConfig
    from fmnist_edge.train.models import build_model
    from fmnist_edge.train.optim import make_loss, make_optimizer

    cfg = TrainConfig(arch=arch, epochs=epochs, seed=seed, val_fraction=0.0)
    keras.utils.set_random_seed(seed)
    model = build_model(arch, data.classes)
    if momentum is not None:
        for bn in batchnorm_layers(model):
            bn.momentum = momentum
    model.compile(optimizer=make_optimizer(cfg), loss=make_loss(cfg), metrics=["accuracy"])
    fit = model.fit(data.x_train, data.y_train, batch_size=cfg.batch_size, epochs=epochs, verbose=0)
    return model, cfg.batch_size, fit.history


def measure(data: SmallSet, arch: str, epochs: int, seed: int, rule: bool) -> dict[str, Any]:
    """One cell: a run of ``arch`` on ``data``, scored before and after re-estimation."""
    from fmnist_edge.train.batchnorm import estimate, predict_in_training_mode

    x, y = data.x_held, data.y_held
    t0 = time.perf_counter()
    model, batch, history = _fit(data, arch, epochs, seed)
    steps = math.ceil(len(data.y_train) / batch)
    row = {
        "set": data.name,
        "images": len(data.y_train),
        "held_out": len(y),
        "arch": arch,
        "epochs": epochs,
        "steps": steps * epochs,
        "train_accuracy": float(history["accuracy"][-1]),
        "keras_moving": _accuracy(model, x, y),
        "training_mode": float(np.mean(predict_in_training_mode(model, x, batch).argmax(1) == y)),
    }
    estimate(model, data.x_train)
    row["re_estimated"] = _accuracy(model, x, y)
    if rule:
        m = momentum_rule(steps)
        ruled, _, again = _fit(data, arch, epochs, seed, momentum=m)
        row["momentum_rule"] = {
            "momentum": m,
            "accuracy": _accuracy(ruled, x, y),
            "same_training_curve": again["loss"] == history["loss"],  # momentum is never read
        }
    row["seconds"] = time.perf_counter() - t0
    return row


def format_row(row: dict[str, Any]) -> str:
    rule = row.get("momentum_rule")
    extra = f"  momentum {rule['momentum']:.2f}: {rule['accuracy']:.3f}" if rule else ""
    return (
        f"{row['set']:<20} {row['arch']:<9} {row['epochs']:>3} epochs {row['steps']:>4} steps  "
        f"before {row['keras_moving']:.3f}  after {row['re_estimated']:.3f}  "
        f"training mode {row['training_mode']:.3f}{extra}  ({row['seconds']:.0f} s)"
    )


def markdown(rows: list[dict[str, Any]]) -> str:
    """The docs' table: one line per cell."""
    lines = [
        "| set | images | arch | epochs | steps | before: Keras' moving averages | after: "
        "re-estimated | training mode |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['images']:,} | {r['arch']} | {r['epochs']} | {r['steps']} | "
            f"{100 * r['keras_moving']:.1f}% | {100 * r['re_estimated']:.1f}% | "
            f"{100 * r['training_mode']:.1f}% |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fmnist_edge.benchmarks.small_sets", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--dataset", action="append", choices=DATASETS, help="repeatable; default: both"
    )
    parser.add_argument(
        "--per-class",
        type=int,
        action="append",
        metavar="N",
        help="training images a class, repeatable; default: 10, 30, 100",
    )
    parser.add_argument("--arch", action="append", help="repeatable; default: edge-s, resnet20")
    parser.add_argument(
        "--epochs", type=int, action="append", metavar="E", help="repeatable; default: 10, 30"
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="picks the training images, seeds the runs"
    )
    parser.add_argument(
        "--momentum-rule",
        action="store_true",
        help="also train each cell with BatchNorm momentum 0.01 ** (1 / steps an epoch)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the rows and the machine here")
    args = parser.parse_args(argv)
    try:
        rows = run(args)
    except FmnistError as exc:
        parser.exit(exc.exit_code, f"error: {exc}\n")
    print(markdown(rows))


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from fmnist_edge.train.archs import ARCHS

    archs = args.arch or ["edge-s", "resnet20"]
    for arch in archs:
        if arch not in ARCHS:
            raise UsageError(f"unknown --arch {arch!r}; choose from {', '.join(ARCHS)}")
    sizes, epochs = args.per_class or [10, 30, 100], args.epochs or [10, 30]
    if min(sizes) < 1 or min(epochs) < 1:
        raise UsageError("--per-class and --epochs must be at least 1")
    if args.json and Path(args.json).is_dir():
        raise UsageError(f"--json {args.json}: a folder; name the file to write")
    if args.json and not Path(args.json).parent.is_dir():
        raise UsageError(f"--json {args.json}: no folder {Path(args.json).parent}")
    from fmnist_edge.common.machine import prefer_onednn

    prefer_onednn()  # as fmnist-train does, before TensorFlow's import
    from fmnist_edge.benchmarks.machine import machine_info

    cut = {"fashion": fashion, "digits": digits}
    sets = [cut[name](k, args.seed) for name in args.dataset or DATASETS for k in sizes]
    rows = []  # every set cut first: a size a dataset cannot give stops before any training
    for data in sets:
        for arch in archs:
            for n in epochs:
                rows.append(measure(data, arch, n, args.seed, args.momentum_rule))
                print(format_row(rows[-1]), file=sys.stderr, flush=True)
    if args.json:
        from fmnist_edge.common.fileio import atomic_write_json

        atomic_write_json(args.json, {"machine": machine_info(), "rows": rows})
    return rows


if __name__ == "__main__":
    main()
