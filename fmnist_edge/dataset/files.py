"""Fashion-MNIST in its original IDX format: find it, verify it, split it (the download is in
download.py, imported only when a file is missing).

Pure numpy and the standard library, so that a Raspberry Pi without TensorFlow can read the
test set too. Files are verified by the SHA-256 of their *uncompressed* bytes, so any mirror's
gzip (or an already-unpacked copy) is accepted, and nothing unverified is ever used.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmnist_edge.common.errors import DataError
from fmnist_edge.common.fileio import missing_folders, remove_empty_folders

ENV_DATA_DIR = "FMNIST_DATA"
KERAS_CACHE = Path("~/.keras/datasets/fashion-mnist")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

# stem -> SHA-256 of the uncompressed IDX bytes (Zalando's release, identical on every mirror)
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"

Progress = Callable[[str, int, int | None], None]  # (file name, bytes so far, total or None)


def default_cache_dir() -> Path:
    """Where downloads go when no --data-dir or $FMNIST_DATA names a place."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fmnist-edge" / "fashion-mnist"


# --- IDX ------------------------------------------------------------------------------------


def read_bytes(path: str | os.PathLike) -> bytes:
    """The uncompressed content of a raw or gzipped file (detected by magic, not by name)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decompress(raw, str(path))


def decompress(raw: bytes, name: str) -> bytes:
    """``raw`` itself, or its gunzipped content when it starts with the gzip magic."""
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise DataError(f"{name}: truncated gzip stream") from None
    except (OSError, zlib.error) as exc:
        raise DataError(f"{name}: corrupt gzip data ({exc})") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes: 2 zero bytes, a dtype code, the rank, big-endian uint32 dims, data."""
    if len(data) < 4:
        raise DataError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"{name}: not an IDX file (bad magic number 0x{data[:4].hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(data) < expected:
        raise DataError(f"{name}: truncated: {len(data)} bytes, the header promises {expected}")
    if len(data) > expected:
        raise DataError(f"{name}: {len(data) - expected} unexpected trailing bytes")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a raw or gzipped IDX file into a numpy array (no checksum: see ``load_split``)."""
    return parse_idx(read_bytes(path), str(path))


# --- discovery and verification -------------------------------------------------------------


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _has_split(directory: Path, split: str) -> bool:
    return all(_find_file(directory, stem) for stem in SPLITS[split])


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The places searched, in order, each with a word saying where it came from."""
    out: list[tuple[str, Path]] = []
    if data_dir is not None:
        out.append(("--data-dir", Path(data_dir)))
    if os.environ.get(ENV_DATA_DIR):
        out.append((f"${ENV_DATA_DIR}", Path(os.environ[ENV_DATA_DIR])))
    out.append(("Keras cache", KERAS_CACHE.expanduser()))
    out.append(("Debian package dataset-fashion-mnist", DEBIAN_DIR))
    out.append(("download cache", default_cache_dir()))
    return out


def verified_bytes(path: Path, stem: str) -> tuple[bytes, str]:
    """The uncompressed bytes of ``path`` and their SHA-256, refusing anything but Zalando's."""
    data = read_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256[stem]:
        parse_idx(data, str(path))  # a truncated or malformed file says so precisely
        raise DataError(
            f"{path}: SHA-256 mismatch (got {digest[:12]}..., expected {SHA256[stem][:12]}...): "
            "not the official Fashion-MNIST file"
        )
    return data, digest


@dataclass(frozen=True)
class Split:
    """One split as arrays: images (N, 28, 28) uint8, labels (N,) uint8."""

    images: np.ndarray
    labels: np.ndarray
    source: Path  # the directory the files came from
    sha256: dict[str, str] = field(default_factory=dict)  # file stem -> uncompressed SHA-256


def locate(
    split: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> Path:
    """The directory holding ``split``'s two files, downloading them if no place does.

    A folder the user named (``data_dir``, else $FMNIST_DATA) is the only place looked at, and
    it must hold the files. Otherwise: Keras' cache, Debian's package, the download cache, and
    then a download into the download cache (a failed one leaves no empty folder behind).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    places = candidate_dirs(data_dir)
    if places[0][0] in ("--data-dir", f"${ENV_DATA_DIR}"):
        how, directory = places[0]
        if not directory.is_dir():
            raise DataError(f"{how} {directory}: no such folder")
        if not _has_split(directory, split):
            missing = [s for s in SPLITS[split] if _find_file(directory, s) is None]
            raise DataError(
                f"{how} {directory}: holds no Fashion-MNIST {split} files "
                f"({', '.join(f'{m}[.gz]' for m in missing)} missing)"
            )
        return directory
    for _, directory in places:
        if _has_split(directory, split):
            return directory
    searched = ", ".join(str(d) for _, d in places)
    not_found = f"Fashion-MNIST {split} files not found (searched {searched})"
    advice = "install them with `apt-get install dataset-fashion-mnist`, or pass --data-dir DIR"
    if not download:
        raise DataError(f"{not_found}; {advice}")
    from .download import download_file  # the network only when needed

    target = default_cache_dir()
    created = missing_folders(target)
    try:
        for stem in SPLITS[split]:
            if _find_file(target, stem) is None:
                download_file(stem, target, mirrors=mirrors, progress=progress)
    except DataError as exc:
        remove_empty_folders(created)
        raise type(exc)(f"{not_found}, and {exc}; {advice}") from None
    return target


def load_split(
    split: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> Split:
    """Load and verify the ``train`` (60,000) or ``test`` (10,000) split."""
    directory = locate(split, data_dir, download=download, mirrors=mirrors, progress=progress)
    arrays, hashes = [], {}
    for stem in SPLITS[split]:
        path = _find_file(directory, stem)
        data, hashes[stem] = verified_bytes(path, stem)
        arrays.append(parse_idx(data, str(path)))
    images, labels = arrays
    return Split(images=images, labels=labels, source=directory, sha256=hashes)


# --- the notebook's split --------------------------------------------------------------------


def train_val_split(
    n: int, val_fraction: float = 0.2, seed: int = 42
) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (train, val), identical to scikit-learn's
    ``train_test_split(..., test_size=val_fraction, random_state=seed)`` as the notebook used it:
    a RandomState(seed) permutation whose first ceil(val_fraction * n) entries are validation.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError("val_fraction must be in (0, 1)")
    perm = np.random.RandomState(seed).permutation(n)
    n_val = math.ceil(val_fraction * n)
    return perm[n_val:], perm[:n_val]
