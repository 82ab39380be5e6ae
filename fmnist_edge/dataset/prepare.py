"""A run's data, from what it was told: Fashion-MNIST (the default) or the user's own images,
decoded, checked and split the same way for fmnist-train, fmnist-export and fmnist-bench.

    spec = DataSpec(Path("photos"), image_size=64, color="rgb")
    data = prepare(spec)            # data.train / data.val / data.test, data.report

Fashion-MNIST keeps the notebook's split (train_val_split); own data is split stratified by
class with the same seed. Checks before any training: images per class and split, bad images
(named, exit 2, or skipped with --skip-bad), and the same picture in training and in
validation or test (a leak: reported, or dropped from training with --drop-leaks).
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.errors import DataError, UsageError
from fmnist_edge.common.labels import CLASS_NAMES

from .decode import decode_files, default_look
from .files import load_split, train_val_split
from .images import COLORS, Dataset, Images
from .sources import Listing, list_source

log = logging.getLogger("fmnist.data")
_LEAK_EXAMPLES = 3


@dataclass(frozen=True)
class DataSpec:
    """Which images a run uses and how they are made into the model's input."""

    path: Path | None = None  # None: Fashion-MNIST; else a folder, CSV or IDX folder (own data)
    data_dir: Path | None = None  # where Fashion-MNIST's IDX files are (None: the search)
    image_size: int | None = None  # square side; None: 28 for Fashion-MNIST, else from the data
    color: str | None = None  # "grayscale" or "rgb"; None: from the data
    val_fraction: float = 0.2  # split off the training images when the layout has no val/
    split_seed: int = 42
    limit: int | None = None  # first N images of every split (smoke runs)
    skip_bad: bool = False  # skip unreadable images (counted) instead of stopping
    drop_leaks: bool = False  # remove from training the images also in validation or test

    def __post_init__(self) -> None:
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))
        if self.color is not None and self.color not in COLORS:
            raise UsageError(f"--color must be gray or rgb (got {self.color!r})")
        if self.image_size is not None and not 8 <= self.image_size <= 512:
            raise UsageError(f"--image-size must be 8..512 pixels (got {self.image_size})")
        if self.path is None and (self.image_size not in (None, 28) or self.color == "rgb"):
            raise UsageError(
                "--image-size and --color apply to --data (Fashion-MNIST is 28x28 gray)"
            )


def run_spec(record: dict[str, Any] | None, data_dir: str | Path | None = None) -> DataSpec:
    """The data of the run whose metrics.json (or state.json) is ``record``, as it trained on
    it, without its --limit (its whole held-out split is scored). Without a record:
    Fashion-MNIST and the notebook's split (20%, seed 42)."""
    config = (record or {}).get("config") or {}
    return DataSpec(
        path=config.get("data"),
        data_dir=data_dir,
        image_size=config.get("image_size"),
        color=config.get("color"),
        val_fraction=float(config.get("val_fraction", 0.2)),
        split_seed=int(config.get("split_seed", 42)),
        skip_bad=bool(config.get("skip_bad", False)),
        drop_leaks=bool(config.get("drop_leaks", False)),
    )


@dataclass(frozen=True)
class TrainingData:
    dataset: Dataset  # as the source gave it
    train: Images
    val: Images  # empty when the run trains on every image
    test: Images | None  # None: the data has no test split
    report: dict[str, Any]  # the checks' findings, for metrics.json

    @property
    def held_out(self) -> tuple[str, Images]:
        """The images a model is scored on: validation, else test."""
        if len(self.val):
            return "validation", self.val
        if self.test is not None:
            return "test", self.test
        raise UsageError("the data has no validation or test images to score on")


def load_dataset(spec: DataSpec) -> Dataset:
    """The images as the source gives them (decoded, or from the cache)."""
    if spec.path is None:
        train, test = load_split("train", spec.data_dir), load_split("test", spec.data_dir)
        return Dataset(
            kind="fashion-mnist",
            source=str(train.source),
            class_names=CLASS_NAMES,
            image_size=(28, 28),
            color="grayscale",
            train=Images(train.images[..., None], train.labels),
            test=Images(test.images[..., None], test.labels),
            sha256={**train.sha256, **test.sha256},
        )
    listing = list_source(spec.path)
    if listing.arrays:
        return _from_arrays(listing, spec)
    return _from_files(listing, spec)


def _from_arrays(listing: Listing, spec: DataSpec) -> Dataset:
    """IDX: pixels already; resized and converted only when asked for another look."""
    from fmnist_edge.edge_runtime.preprocess import to_array

    x, _ = listing.arrays["train"]
    side = spec.image_size or x.shape[1]
    color = spec.color or "grayscale"
    splits = {}
    for split, (images, labels) in listing.arrays.items():
        if (side, side) != images.shape[1:3] or color != "grayscale":
            images = np.stack([to_array(im, "raw", (side, side), color) for im in images])
            images = images.reshape(len(images), side, side, -1)
        splits[split] = Images(images, labels)
    return Dataset(
        kind="idx",
        source=str(listing.source),
        class_names=listing.class_names,
        image_size=(side, side),
        color=color,
        train=splits["train"],
        test=splits.get("test"),
        sha256=listing.sha256,
    )


def _from_files(listing: Listing, spec: DataSpec) -> Dataset:
    all_paths = [p for files in listing.splits.values() for p in files.paths]
    side, color = spec.image_size, spec.color
    if side is None or color is None:  # chosen from the images' headers
        looks = default_look(all_paths)
        side, color = side or looks[0], color or looks[1]
    decoded = decode_files(all_paths, (side, side), color)
    if decoded.bad and not spec.skip_bad:
        path, why = decoded.bad[0]
        more = f" (and {len(decoded.bad) - 1} more)" if len(decoded.bad) > 1 else ""
        raise DataError(f"{path}: {why}{more}; --skip-bad trains without them")
    every = Images(
        decoded.images,
        np.concatenate([files.labels for files in listing.splits.values()]),
        tuple(str(p) for p in all_paths),
    )
    good = np.zeros(len(all_paths), bool)
    good[decoded.kept] = True
    splits, start = {}, 0
    for split, files in listing.splits.items():  # the files are listed split after split
        rows = np.arange(start, start + len(files.paths))
        start += len(files.paths)
        splits[split] = every.take(rows[good[rows]])
    return Dataset(
        kind=listing.kind,
        source=str(listing.source),
        class_names=listing.class_names,
        image_size=(side, side),
        color=color,
        train=splits["train"],
        val=splits.get("val"),
        test=splits.get("test"),
        sha256=listing.sha256,
        content_sha256=decoded.content_sha256,
        skipped=decoded.bad,
    )


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: ceil(fraction * n) of each class's n images to validation, picked
    by one seeded permutation; both in that permutation's order (shuffled, not by class)."""
    order = np.random.RandomState(seed).permutation(len(labels))
    labels = np.asarray(labels)[order]
    val = np.zeros(len(order), bool)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        val[members[: math.ceil(fraction * len(members))]] = True
    return order[~val], order[val]


def prepare(spec: DataSpec, report: bool = True) -> TrainingData:
    """Load, split, limit and check a run's data; DataError or UsageError for what stops it.
    ``report``: log what the checks found (training does; export and the benchmarks, which
    prepare a run's data again, do not repeat it)."""
    dataset = load_dataset(spec)
    train, val = dataset.train, dataset.val
    if val is not None and spec.val_fraction == 0:
        raise UsageError(
            f"--val-fraction 0: {spec.path} has a validation folder of its own, which is the "
            "validation split; leave --val-fraction out"
        )
    if val is None:
        if spec.val_fraction > 0:
            split = train_val_split if dataset.is_fashion_mnist else stratified_split
            args = (len(train), spec.val_fraction, spec.split_seed)
            if not dataset.is_fashion_mnist:
                args = (train.labels, spec.val_fraction, spec.split_seed)
            tr, va = split(*args)
            train, val = train.take(tr), train.take(va)
        else:
            val = train.take(np.arange(0))
    test = dataset.test
    n = spec.limit
    if n is not None:
        if n > len(train):
            raise UsageError(f"--limit {n} is more than the {len(train):,} training images")
        train, val = train.take(slice(0, n)), val.take(slice(0, n))
        test = test.take(slice(0, n)) if test is not None else None
    if not len(val) and test is None:
        raise UsageError(
            f"--data {spec.path}: no validation or test images (no val/ or test/ folder, "
            "--val-fraction 0): nothing to score the model on; give --val-fraction > 0"
        )
    train, leaks = _leaks(dataset, train, val, test, spec.drop_leaks, report)
    _check_counts(dataset, train, spec)
    findings = {
        "counts": {
            name: part.counts(dataset.num_classes)
            for name, part in (("train", train), ("val", val), ("test", test))
            if part is not None
        },
        "image_size": list(dataset.image_size),
        "color": dataset.color,
        "skipped": len(dataset.skipped),
        "leaks": leaks,
    }
    return TrainingData(dataset, train, val, test, findings)


def _check_counts(dataset: Dataset, train: Images, spec: DataSpec) -> None:
    counts = train.counts(dataset.num_classes)
    empty = [name for name, c in zip(dataset.class_names, counts, strict=True) if c == 0]
    if empty and spec.limit is None:
        raise DataError(
            f"--data {spec.path or dataset.source}: class {empty[0]!r} has no training images"
            + (f" (and {len(empty) - 1} more classes)" if len(empty) > 1 else "")
        )


def _digest_rows(images: Any) -> list[bytes]:
    """A digest of each image's decoded pixels, a chunk at a time (memory-mapped sets)."""
    out = []
    for start in range(0, len(images), 4096):
        chunk = np.ascontiguousarray(images[start : start + 4096])
        out += [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in chunk]
    return out


def _leaks(
    dataset: Dataset, train: Images, val: Images, test: Images | None, drop: bool, say: bool
) -> tuple[Images, dict[str, Any]]:
    """Training images whose decoded pixels are also a validation or test image's."""
    held = {}
    for name, part in (("val", val), ("test", test)):
        if part is not None and len(part):
            for i, digest in enumerate(_digest_rows(part.images)):
                held.setdefault(digest, (name, i, part))
    digests = _digest_rows(train.images) if held else []
    leaked = [i for i, d in enumerate(digests) if d in held]
    report: dict[str, Any] = {"count": len(leaked), "dropped": bool(drop and leaked)}
    if leaked:
        examples = []
        for i in leaked[:_LEAK_EXAMPLES]:
            split, j, part = held[digests[i]]
            examples.append([_where(train, i, "train"), _where(part, j, split)])
        report["first"] = examples
        pairs = "; ".join(f"{a} = {b}" for a, b in examples)
        action = "dropped from training (--drop-leaks)" if drop else "--drop-leaks removes them"
        if say:
            log.warning(
                "leak: %d training image(s) also in validation/test: %s; %s",
                len(leaked), pairs, action,
            )
        if drop:
            train = train.take(np.setdiff1d(np.arange(len(train)), leaked))
    return train, report


def _where(part: Images, i: int, split: str) -> str:
    return part.paths[i] if part.paths else f"{split}[{i}]"
