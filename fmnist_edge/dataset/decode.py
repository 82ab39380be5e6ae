"""Image files -> one uint8 array, decoded once: in parallel, through the runtime's own decode
and conversion (edge_runtime.preprocess, the path fmnist-infer and fmnist-serve use), into a
memory-mapped cache keyed by the files' content, the size and the colour. Later epochs, later
runs and fmnist-export read the cache; a large set is never all in RAM.

Cache: $XDG_CACHE_HOME/fmnist-edge/decoded/<key>.npy, (N, H, W, C) uint8, a row a file in the
files' order, and <key>.json naming the rows that did not decode and what is wrong with each.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist_edge.common.errors import DataError, ImageError
from fmnist_edge.common.fileio import atomic_path, atomic_write_json
from fmnist_edge.common.machine import usable_cores

DECODE_VERSION = 1  # bump when the conversion's output changes: old cache entries are ignored
_HEADER_SAMPLE = 1000  # files whose headers choose the default size and colour
_CHUNK = 1024  # files decoded before their rows are written
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
MIN_SIDE, MAX_SIDE = 16, 64  # bounds of the default --image-size
TRAINING_MAX_PIXELS = 100_000_000  # per training image (Pillow's own guard is 89.5M)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fmnist-edge" / "decoded"


@dataclass(frozen=True)
class Decoded:
    images: np.ndarray  # (N, H, W, C) uint8, memory-mapped, a row a file (zero when bad)
    kept: np.ndarray  # (M,) the rows (files) that decoded
    bad: tuple[tuple[str, str], ...]  # (path, what is wrong) of the others
    content_sha256: str  # of the files' SHA-256s in order: the data's identity
    cached: bool  # read from the cache (nothing decoded)


def file_digests(paths: Sequence[Path]) -> list[str]:
    """Each file's SHA-256 (read in parallel: file reads release the GIL)."""

    def digest(path: Path) -> str:
        try:
            with open(path, "rb") as fh:
                return hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as exc:
            raise DataError(f"{path}: unreadable ({exc.strerror or exc})") from None

    with ThreadPoolExecutor(usable_cores()) as pool:
        return list(pool.map(digest, paths, chunksize=64))


def default_look(paths: Sequence[Path]) -> tuple[int, str]:
    """(side, colour) for a set whose user gave neither: the median long side of a sample of
    headers, within 16-64 pixels, and gray when every sampled image is gray, else RGB."""
    from PIL import Image

    step = max(1, len(paths) // _HEADER_SAMPLE)
    sides, gray = [], True
    for path in paths[::step]:
        try:
            with Image.open(path) as img:
                sides.append(max(img.size))
                if img.mode in ("P", "PA"):
                    palette = np.array(img.getpalette("RGB") or [], np.uint8).reshape(-1, 3)
                    gray = gray and bool((palette == palette[:, :1]).all())
                else:
                    gray = gray and img.mode in _GRAY_MODES
        except Exception:  # noqa: BLE001 - a bad file is named later, by the decode itself
            continue
    side = int(np.clip(np.median(sides), MIN_SIDE, MAX_SIDE)) if sides else 32
    return side, "grayscale" if gray else "rgb"


def _decode_one(path: Path, size: tuple[int, int], color: str) -> np.ndarray | str:
    from fmnist_edge.edge_runtime.budget import DecodeLimits  # Pillow only when decoding
    from fmnist_edge.edge_runtime.preprocess import to_array

    # the user's own files, not strangers' uploads: a camera's 12-50 MP PNG is an image here
    limits = DecodeLimits(max_pixels=TRAINING_MAX_PIXELS)
    try:
        return to_array(path, "raw", size, color, limits=limits)
    except ImageError as exc:
        return str(exc).removeprefix(f"{path}: ")


def decode_files(
    paths: Sequence[Path],
    size: tuple[int, int],
    color: str,
    cache: Path | None = None,
    digests: Sequence[str] | None = None,
) -> Decoded:
    """Decode ``paths`` to (H, W, C) uint8 each, or read them from the cache."""
    digests = list(digests) if digests is not None else file_digests(paths)
    content = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    key = hashlib.sha256(
        f"v{DECODE_VERSION} {size[0]}x{size[1]} {color} {content}".encode()
    ).hexdigest()[:32]
    root = cache_root() if cache is None else Path(cache)
    array_path, info_path = root / f"{key}.npy", root / f"{key}.json"
    info = _read_info(info_path)
    if info is not None and array_path.is_file():
        images = np.load(array_path, mmap_mode="r")
        if len(images) == len(paths) == info["files"]:
            bad = tuple((str(paths[i]), why) for i, why in info["bad"])
            kept = _kept(len(paths), info["bad"])
            return Decoded(images, kept, bad, content, cached=True)
    root.mkdir(parents=True, exist_ok=True)
    channels = 3 if color == "rgb" else 1
    bad_index: list[tuple[int, str]] = []
    decode = functools.partial(_decode_one, size=size, color=color)
    with atomic_path(array_path) as tmp:  # one row a file; a bad file's row stays zero
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(paths), *size, channels)
        )
        with ThreadPoolExecutor(usable_cores()) as pool:  # Pillow's decoders release the GIL
            for start in range(0, len(paths), _CHUNK):  # bounded: a chunk in RAM at a time
                chunk = paths[start : start + _CHUNK]
                for i, result in enumerate(pool.map(decode, chunk)):
                    if isinstance(result, str):
                        bad_index.append((start + i, result))
                    else:
                        out[start + i] = result.reshape(*size, channels)
        out.flush()
        del out
    atomic_write_json(info_path, {"files": len(paths), "bad": bad_index})
    bad = tuple((str(paths[i]), why) for i, why in bad_index)
    kept = _kept(len(paths), bad_index)
    return Decoded(np.load(array_path, mmap_mode="r"), kept, bad, content, cached=False)


def _kept(n: int, bad: Sequence[tuple[int, str]]) -> np.ndarray:
    """The rows of the files that decoded: all but ``bad``'s."""
    good = np.ones(n, bool)
    good[[i for i, _ in bad]] = False
    return np.flatnonzero(good)


def _read_info(path: Path) -> dict | None:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "files" in info and "bad" in info else None
