"""Where a user's own images are and what they are labelled: one function per layout, each
returning the files (or, for IDX, the arrays) of every split with integer labels and class
names. Nothing is decoded here (decode.py does that, once, into a cache).

Layouts (``detect``):
- ``folders``: DIR/<class>/* (any depth below the class folder); validation is split off.
- ``split-folders``: DIR/train/<class>/*, and optionally val/ (or valid/, validation/) and
  test/ of the same classes (the Ultralytics and Keras layout).
- ``csv``: a CSV of image and label: ``id,label`` with images at <csv folder>/train/{id}.<ext>
  (the hackathon layout), or a column holding a path relative to the CSV. Class names are the
  label strings (sorted), or a classes.txt beside it (one name a line, in index order) when
  the labels are integers.
- ``idx``: a folder of MNIST-style IDX files (train/test images and labels, gzipped or not:
  MNIST, KMNIST, EMNIST), with classes.txt for names; labels count from 0, or from 1 when they
  run 1..K for K names (EMNIST letters).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmnist_edge.common.errors import DataError
from fmnist_edge.common.labels import CLASS_NAMES

from .files import SHA256, parse_idx, read_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
CLASSES_FILE = "classes.txt"
_IDX = {
    "train_images": re.compile(r"train-images.*idx3-ubyte(\.gz)?$"),
    "train_labels": re.compile(r"train-labels.*idx1-ubyte(\.gz)?$"),
    "test_images": re.compile(r"(t10k|test)-images.*idx3-ubyte(\.gz)?$"),
    "test_labels": re.compile(r"(t10k|test)-labels.*idx1-ubyte(\.gz)?$"),
}
log = logging.getLogger("fmnist.data")
_IMAGE_COLUMNS = ("id", "image", "filename", "file", "path", "image_path", "img")
_LABEL_COLUMNS = ("label", "class", "category", "target", "y")


@dataclass(frozen=True)
class Files:
    """One split's image files and their labels (indices into the class names)."""

    paths: tuple[Path, ...]
    labels: np.ndarray  # (N,) int32


@dataclass(frozen=True)
class Listing:
    kind: str
    source: Path
    class_names: tuple[str, ...]
    splits: dict[str, Files] = field(default_factory=dict)  # "train", "val", "test"
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # IDX
    sha256: dict[str, str] = field(default_factory=dict)  # of CSV/IDX/classes.txt files


def detect(path: Path) -> str:
    """The layout of ``path`` (a DataError naming it when none fits)."""
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        raise DataError(f"--data {path}: a file that is not a .csv (give a folder or a CSV)")
    if not path.is_dir():
        raise DataError(f"--data {path}: no such file or folder")
    names = {p.name for p in path.iterdir()}
    if "train" in names and (path / "train").is_dir():
        return "split-folders"
    if any(_IDX["train_images"].search(n) for n in names):
        return "idx"
    return "folders"


def list_source(path: Path) -> Listing:
    """The files and labels of ``path`` in whichever layout it has."""
    path = Path(path)
    kind = detect(path)
    return {"csv": list_csv, "idx": read_idx_folder, "split-folders": list_split_folders}.get(
        kind, list_folders
    )(path)


def _images_in(folder: Path) -> list[Path]:
    """Image files below ``folder``, sorted, hidden files and folders left out."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _check_classes(names: list[str] | tuple[str, ...], where: Path) -> None:
    if len(names) < 2:
        found = f"only {names[0]!r}" if names else "none"
        raise DataError(f"--data {where}: needs at least 2 classes, found {found}")


def _folder_files(root: Path, class_names: tuple[str, ...], split: str) -> Files:
    paths, labels = [], []
    for folder in _class_folders(root):
        if folder.name not in class_names:
            raise DataError(
                f"--data {folder}: class {folder.name!r} is not among the training classes"
            )
        files = _images_in(folder)
        if not files and split == "train":
            raise DataError(f"--data {folder}: empty class folder (no images)")
        paths += files
        labels += [class_names.index(folder.name)] * len(files)
    return Files(tuple(paths), np.asarray(labels, dtype=np.int32))


def list_folders(path: Path) -> Listing:
    """DIR/<class>/*: one split, class names the folder names sorted."""
    names = tuple(p.name for p in _class_folders(path))
    if not names and _images_in(path):
        raise DataError(
            f"--data {path}: images but no class folders; put each class's images in a "
            "folder of its own (DIR/<class>/*)"
        )
    _check_classes(names, path)
    return Listing("folders", path, names, {"train": _folder_files(path, names, "train")})


def list_split_folders(path: Path) -> Listing:
    """DIR/train/<class>/*, optional DIR/{val,valid,validation}/ and DIR/test/."""
    names = tuple(p.name for p in _class_folders(path / "train"))
    _check_classes(names, path / "train")
    splits = {"train": _folder_files(path / "train", names, "train")}
    for split in ("val", "test"):
        found = [path / n for n in SPLIT_FOLDERS[split] if (path / n).is_dir()]
        if len(found) > 1:
            raise DataError(f"--data {path}: both {found[0].name}/ and {found[1].name}/")
        if found:
            splits[split] = _folder_files(found[0], names, split)
    return Listing("split-folders", path, names, splits)


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _classes_file(folder: Path) -> tuple[tuple[str, ...] | None, dict[str, str]]:
    path = folder / CLASSES_FILE
    if not path.is_file():
        return None, {}
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None
    names = tuple(line for line in lines if line)
    if len(set(names)) != len(names):
        raise DataError(f"{path}: a class name appears twice")
    return names, {CLASSES_FILE: _sha256(path)}


def _pick_column(header: list[str], wanted: tuple[str, ...], fallback: int) -> int:
    lowered = [h.strip().lower() for h in header]
    for name in wanted:
        if name in lowered:
            return lowered.index(name)
    return fallback


def _image_folder(csv_path: Path) -> dict[str, Path]:
    """stem -> file for the hackathon's ids: <csv folder>/<csv stem>/ or train/ or images/."""
    for name in (csv_path.stem, "train", "images"):
        folder = csv_path.parent / name
        if folder.is_dir():
            return {p.stem: p for p in _images_in(folder)}
    return {}


def list_csv(path: Path) -> Listing:
    """A CSV of image and label (one split; validation is split off)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"--data {path}: unreadable CSV ({exc})") from None
    if len(rows) < 2 or len(rows[0]) < 2:
        raise DataError(f"--data {path}: needs a header and rows of image and label")
    header, body = rows[0], [r for r in rows[1:] if any(c.strip() for c in r)]
    image_col = _pick_column(header, _IMAGE_COLUMNS, 0)
    label_col = _pick_column(header, _LABEL_COLUMNS, len(header) - 1)
    by_stem = None
    paths, raw_labels = [], []
    for line, row in enumerate(body, start=2):
        if len(row) <= max(image_col, label_col):
            raise DataError(f"{path}:{line}: {len(row)} columns, the header has {len(header)}")
        ref, label = row[image_col].strip(), row[label_col].strip()
        if Path(ref).suffix.lower() in IMAGE_SUFFIXES:
            file = path.parent / ref
        else:  # an id: the hackathon's train/{id}.png
            by_stem = _image_folder(path) if by_stem is None else by_stem
            file = by_stem.get(ref, path.parent / "train" / f"{ref}.png")
        if not file.is_file():
            raise DataError(f"{path}:{line}: image {file} not found")
        paths.append(file)
        raw_labels.append(label)
    names, sha = _classes_file(path.parent)
    sha[path.name] = _sha256(path)
    integers = all(re.fullmatch(r"\d+", v) for v in raw_labels)
    if integers:
        values = [int(v) for v in raw_labels]
        if names is None:
            names = tuple(str(i) for i in range(max(values) + 1))
        for line, v in enumerate(values, start=2):
            if v >= len(names):
                raise DataError(
                    f"{path}:{line}: label {v} is not in {path.parent / CLASSES_FILE} "
                    f"({len(names)} classes, 0-{len(names) - 1})"
                )
        labels = values
    else:
        if names is None:
            names = tuple(sorted(set(raw_labels)))
        unknown = [(i, v) for i, v in enumerate(raw_labels, start=2) if v not in names]
        if unknown:
            line, v = unknown[0]
            raise DataError(f"{path}:{line}: label {v!r} is not in {path.parent / CLASSES_FILE}")
        labels = [names.index(v) for v in raw_labels]
    _check_classes(names, path)
    files = Files(tuple(paths), np.asarray(labels, dtype=np.int32))
    return Listing("csv", path, names, {"train": files}, sha256=sha)


def read_idx_folder(path: Path) -> Listing:
    """The four IDX files of an MNIST-style folder, already pixels: no decoding needed."""
    found: dict[str, Path] = {}
    for file in sorted(path.iterdir()):
        for key, pattern in _IDX.items():
            if pattern.search(file.name) and key not in found:
                found[key] = file
    sha: dict[str, str] = {}
    arrays = {}
    for split in ("train", "test"):
        images, labels = found.get(f"{split}_images"), found.get(f"{split}_labels")
        if images is None and split == "test":
            continue
        if labels is None:
            raise DataError(f"--data {path}: {images.name} has no {split} labels file beside it")
        x, y = (parse_idx(_read(f, sha), str(f)) for f in (images, labels))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(
                f"--data {path}: {images.name} {x.shape} and {labels.name} {y.shape} do not "
                "pair as (N, H, W) images and (N,) labels"
            )
        arrays[split] = (x[..., None], y.astype(np.int32))
    names, classes_sha = _classes_file(path)
    sha.update(classes_sha)
    low = min(int(y.min()) for _, y in arrays.values())
    top = max(int(y.max()) for _, y in arrays.values())
    if names is None:
        fashion = all(sha.get(stem) == digest for stem, digest in SHA256.items())
        names = CLASS_NAMES if fashion else tuple(str(i) for i in range(top + 1))
    elif low == 1 and top == len(names):  # EMNIST letters: labels 1-26 for 26 names
        log.info("%s: labels 1-%d for %d class names: taken as counting from 1", path, top, top)
        arrays = {split: (x, y - 1) for split, (x, y) in arrays.items()}
    for split, (_, y) in arrays.items():
        if int(y.max()) >= len(names):
            raise DataError(
                f"--data {path}: {split} label {int(y.max())} is not in {CLASSES_FILE} "
                f"({len(names)} classes)"
            )
    _check_classes(names, path)
    return Listing("idx", path, names, arrays=arrays, sha256=sha)


def _read(file: Path, sha: dict[str, str]) -> bytes:
    data = read_bytes(file)
    stem = file.name.removesuffix(".gz")
    sha[stem] = hashlib.sha256(data).hexdigest()
    return data
