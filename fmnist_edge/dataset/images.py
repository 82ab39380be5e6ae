"""The dataset type every source returns: labelled uint8 images with their class names, size,
colour and where they came from. numpy only (a Pi without TensorFlow reads these too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

COLORS = ("grayscale", "rgb")


class Rows:
    """Some rows of a (memory-mapped) array, read only when indexed: what a split of a large
    decoded set is, so that splitting never copies the set into RAM. Indexes like an array
    (an int, a slice or an index array) and converts with ``np.asarray``."""

    def __init__(self, base: np.ndarray, index: np.ndarray):
        self.base, self.index = base, np.asarray(index, dtype=np.int64)

    @classmethod
    def of(cls, array: np.ndarray | Rows, index: np.ndarray) -> Rows:
        if isinstance(array, Rows):
            return cls(array.base, array.index[index])
        return cls(array, index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.base[self.index[key]])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.asarray(self.base[self.index])
        return out if dtype is None else out.astype(dtype)


@dataclass(frozen=True)
class Images:
    """One split: (N, H, W, C) uint8 pixels (C = 1 gray, 3 RGB; possibly memory-mapped), (N,)
    integer labels indexing the dataset's class names, and each image's file when it had one."""

    images: np.ndarray
    labels: np.ndarray
    paths: tuple[str, ...] = ()  # empty for arrays read whole (IDX)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray | slice) -> Images:
        """The images at ``index`` (an index array or a slice), labels and paths alike. Images
        on disk (memory-mapped) stay there: the result reads them when indexed."""
        picked = np.arange(len(self))[index]
        paths = tuple(self.paths[i] for i in picked) if self.paths else ()
        if isinstance(self.images, np.memmap | Rows):
            images: Any = Rows.of(self.images, picked)
        else:
            images = self.images[picked]
        return Images(images, np.asarray(self.labels)[picked], paths)

    def counts(self, num_classes: int) -> list[int]:
        return np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=num_classes).tolist()


@dataclass(frozen=True)
class Dataset:
    """A labelled image set as a source gave it: a training split, and a validation and test
    split where the source's layout has them (None: the trainer splits validation off)."""

    kind: str  # "fashion-mnist", "folders", "split-folders", "csv", "idx"
    source: str  # the path the user named (or where Fashion-MNIST was found)
    class_names: tuple[str, ...]
    image_size: tuple[int, int]  # (height, width)
    color: str  # "grayscale" or "rgb"
    train: Images
    val: Images | None = None
    test: Images | None = None
    sha256: dict[str, str] = field(default_factory=dict)  # file -> SHA-256 (IDX and CSV files)
    content_sha256: str | None = None  # of every image file's bytes, in order (own data)
    skipped: tuple[tuple[str, str], ...] = ()  # (path, what is wrong): --skip-bad

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return 3 if self.color == "rgb" else 1

    @property
    def is_fashion_mnist(self) -> bool:
        return self.kind == "fashion-mnist"

    def splits(self) -> dict[str, Images]:
        out = {"train": self.train}
        if self.val is not None:
            out["val"] = self.val
        if self.test is not None:
            out["test"] = self.test
        return out

    def describe(self) -> dict[str, Any]:
        """The JSON-ready description that metrics.json and every exported file carry."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "source": self.source,
            "class_names": list(self.class_names),
            "image_size": list(self.image_size),
            "color": self.color,
            "counts": {k: v.counts(self.num_classes) for k, v in self.splits().items()},
            "sha256": dict(self.sha256),
        }
        if self.content_sha256 is not None:
            out["content_sha256"] = self.content_sha256
        if self.skipped:
            first = [list(s) for s in self.skipped[:5]]
            out["skipped"] = {"count": len(self.skipped), "first": first}
        return out
