"""Many inputs at once: expand files, directories and glob patterns, classify them in batches,
and report each input's result or its one-line failure without stopping the others."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fmnist_edge.common.errors import ImageError

from .budget import DecodeLimits
from .checks import check_top_k
from .classifier import Classifier, Prediction

# What a directory listing counts as an image (explicitly named files are opened whatever
# their name: Pillow identifies the format from the content).
IMAGE_SUFFIXES = frozenset(
    ".png .jpg .jpeg .jpe .gif .bmp .dib .webp .tif .tiff .pgm .ppm .pbm .pnm .ico".split()
)
CHUNK = 64  # images per predict_proba call


@dataclass(frozen=True)
class Outcome:
    """One input's result: a prediction, or an error line that names the input."""

    path: str
    prediction: Prediction | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _has_magic(arg: str) -> bool:
    return any(ch in arg for ch in "*?[")


def _directory_images(directory: Path) -> list[str]:
    """The names of a directory's images, sorted. Plain names, not Paths: a listing of 50,000
    files holds about 3 MiB this way and 16 MiB as Path objects (a Pi Zero 2 has 512 MiB)."""
    with os.scandir(directory) as entries:
        names = [
            e.name
            for e in entries
            if not e.name.startswith(".")
            and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
            and e.is_file()
        ]
    names.sort()
    return names


def expand_inputs(args: Iterable[str | os.PathLike]) -> Iterator[Outcome]:
    """Each argument as the image paths it names, in order: a file as itself, a directory as
    its images (sorted, not recursive), a glob pattern the shell left unexpanded as its
    matches. An argument naming no image yields an Outcome with an error; a missing file is
    passed on as a path (opening it reports the error)."""
    for arg in args:
        text = os.fspath(arg)
        path = Path(text)
        if not path.exists() and _has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                yield Outcome(text, error=f"{text}: no files match this pattern")
            for match in matches:
                if Path(match).is_dir():
                    yield from expand_inputs([match])
                else:
                    yield Outcome(match)
        elif path.is_dir():
            try:
                images = _directory_images(path)
            except OSError as exc:
                yield Outcome(text, error=f"{text}: cannot list directory ({exc.strerror})")
                continue
            if not images:
                suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
                yield Outcome(text, error=f"{text}: no images in directory (looked for {suffixes})")
            for name in images:
                yield Outcome(str(path / name))
        else:
            yield Outcome(text)


def classify_inputs(
    clf: Classifier,
    args: Iterable[str | os.PathLike],
    mode: str = "auto",
    top_k: int = 1,
    chunk: int = CHUNK,
    limits: DecodeLimits | None = None,
) -> Iterator[Outcome]:
    """Outcomes for every image the arguments name, in order, streamed chunk by chunk, each
    decoded within ``limits`` (None: the defaults). A bad input becomes an error Outcome; the
    others are still classified."""
    mode = clf.resolve_mode(mode)  # photo and auto are Fashion-MNIST's: raw for other models
    check_top_k(top_k)
    pending: list[tuple[str, object]] = []

    def flush() -> Iterator[Outcome]:
        if not pending:
            return
        paths, arrays = zip(*pending, strict=True)
        pending.clear()
        preds = clf.predict_batch(arrays, mode="raw", top_k=top_k)
        yield from (Outcome(p, prediction=pred) for p, pred in zip(paths, preds, strict=True))

    for item in expand_inputs(args):
        if item.ok:
            try:
                pending.append((item.path, clf.to_array(item.path, mode, limits=limits)))
            except ImageError as exc:
                item = Outcome(item.path, error=str(exc))
        if not item.ok:
            yield from flush()  # keep the output in input order
            yield item
        elif len(pending) >= chunk:
            yield from flush()
    yield from flush()
