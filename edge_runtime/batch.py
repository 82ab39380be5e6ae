"""Many inputs at once: expand files, directories and glob patterns, classify them in batches,
and report each input's result or its one-line failure without stopping the others.

The folder pipeline: the inputs, in order, are cut into chunks of CHUNK; worker threads
(threads.ordered_map) each decode a chunk with the runtime's own ``to_array`` (for the model's size
and colour, within the decode budget) into one batch array, a plain gray PNG straight into its
slot, and classify it in one call on an interpreter borrowed from an InterpreterPool, while the
next chunks decode.
Each chunk's files are read ahead by the kernel as the chunk is taken (``_read_ahead``), so a
folder that is not in the page cache is not read one file at a time by a waiting worker.
Results come back in input order, a few chunks at a time."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist_edge.common.errors import ImageError

from . import fastpng
from .budget import DecodeLimits
from .checks import check_top_k
from .classifier import Classifier, Prediction
from .preprocess import to_array
from .threads import InterpreterPool, ordered_map

# What a directory listing counts as an image (explicitly named files are opened whatever
# their name: Pillow identifies the format from the content).
IMAGE_SUFFIXES = frozenset(
    ".png .jpg .jpeg .jpe .gif .bmp .dib .webp .tif .tiff .pgm .ppm .pbm .pnm .ico".split()
)
CHUNK = 64  # images per predict_proba call
PROBE_EVERY = 8  # of a chunk's files, those probed for the page cache (_read_ahead)
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)  # Linux and BSDs; not macOS or Windows
_NOWAIT = getattr(os, "RWF_NOWAIT", None)  # Linux 4.14 and later


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
            and _listed(e)
        ]
    names.sort()
    return names


def _listed(entry: os.DirEntry) -> bool:
    """A regular file, or one that cannot be told (a symlink loop): listed, so that reading it
    gives its own error line, not the whole directory's."""
    try:
        return entry.is_file()
    except OSError:
        return True


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
            base = str(path)  # str(path / name), without a Path for each name
            for name in images:
                yield Outcome(name if base == "." else os.path.join(base, name))
        else:
            yield Outcome(text)


def _chunks(items: Iterable[Outcome], size: int) -> Iterator[list[Outcome]]:
    chunk: list[Outcome] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _read_ahead(chunks: Iterable[list[Outcome]]) -> Iterator[list[Outcome]]:
    """``chunks`` as they are, with the kernel asked to read each chunk's files into the page
    cache as the chunk is taken (os.posix_fadvise WILLNEED: the reads run while the workers
    decode the chunks before it). A folder no longer in the cache is then read many files at
    once, not one file at a time by a worker whose core waits meanwhile.

    A folder all in the cache is not asked for: asking costs 15-20 us a file in the thread
    that feeds the workers (1.5% of the CPU of 10,000 PNGs on the 2-core EPYC). Every
    PROBE_EVERY-th file of a chunk and its last are probed (``_cached``) instead, until one is
    found out of the cache; from that chunk on, every file is read ahead (a kernel that pages
    out idle memory leaves holes all over a folder)."""
    cold = False
    for chunk in chunks:
        if _WILLNEED is not None:
            paths = [item.path for item in chunk if item.ok]
            if not cold:
                cold = not all(_cached(path) for path in [*paths[::PROBE_EVERY], *paths[-1:]])
            if cold:
                for path in paths:
                    _will_need(path)
        yield chunk


def _will_need(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO is not waited for
    except OSError:
        return  # reading it says what is wrong, in its turn
    try:
        os.posix_fadvise(fd, 0, 0, _WILLNEED)
    except OSError:
        pass  # a pipe or a device: nothing to read ahead
    finally:
        os.close(fd)


def _cached(path: str) -> bool:
    """Whether the start of ``path`` is in the page cache: a one-byte read that would rather
    fail than wait for the disk (RWF_NOWAIT). False where that cannot be asked (no such flag,
    a file system that refuses it) or the file cannot be read: then it is read ahead."""
    if _NOWAIT is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO is not waited for
    except OSError:
        return False
    try:
        os.preadv(fd, [bytearray(1)], 0, _NOWAIT)
        return True  # read, or at the end of an empty file
    except OSError:  # EAGAIN: not in the cache; EOPNOTSUPP, EINVAL: cannot say
        return False
    finally:
        os.close(fd)


def _classify_chunk(
    pool: InterpreterPool,
    items: list[Outcome],
    mode: str,
    top_k: int,
    limits: DecodeLimits,
    native: bool,
):
    """In a worker thread: decode each input of the chunk within ``limits`` into the next slot
    of the chunk's batch (a bad one becomes its error Outcome, and the next takes its slot),
    then classify the batch in one call on a borrowed interpreter. With ``native`` (the C
    decode takes this model's files: fastpng.takes), it first takes what it can of the chunk,
    the k-th good input into slot k; the runtime's own ``to_array`` decodes the rest."""
    out = []
    size, color = pool.first.image_size, pool.first.color
    # (N, H, W[, 3]) uint8: the model's size and colour ((28, 28) for Fashion-MNIST's)
    batch = np.empty((len(items), *pool.first.image_shape), dtype=np.uint8)
    status = b""
    if native:
        status = fastpng.decode([item.path for item in items if item.ok], batch, limits)
    n = k = 0  # slots filled; good inputs seen (slot k holds the k-th one's C decode)
    for item in items:
        if item.ok:
            if k < len(status) and status[k] == fastpng.TAKEN:
                if k != n:  # a bad input before it: its slot moves up (n < k: never clobbered)
                    batch[n] = batch[k]
                n += 1
            else:
                try:
                    to_array(item.path, mode, size, color, limits=limits, out=batch[n])
                    n += 1
                except ImageError as exc:
                    item = Outcome(item.path, error=str(exc))
            k += 1
        out.append(item)
    if not n:
        return out
    with pool.borrow() as clf:
        preds = iter(clf.predict_batch(batch[:n], mode="raw", top_k=top_k))
    return [Outcome(o.path, prediction=next(preds)) if o.ok else o for o in out]


def classify_inputs(
    clf: Classifier | InterpreterPool,
    args: Iterable[str | os.PathLike],
    mode: str = "auto",
    top_k: int = 1,
    chunk: int = CHUNK,
    workers: int | None = None,
    limits: DecodeLimits | None = None,
    native: bool = True,
) -> Iterator[Outcome]:
    """Outcomes for every image the arguments name, in order, streamed chunk by chunk, each
    decoded within ``limits`` (None: the defaults). A bad input becomes an error Outcome; the
    others are still classified.

    With an InterpreterPool, ``workers`` threads (default: the pool's ``workers``) each decode a
    chunk and classify it on an interpreter of the pool, while the next chunks are decoded;
    at most ``2 * workers`` chunks are in flight, so memory stays flat however many images
    there are. A Classifier alone works in the caller's thread, one chunk after another.
    ``native``: plain gray PNGs go to the C decode where it is built (fastpng); False decodes
    every image in Python (the same pixels)."""
    check_top_k(top_k)
    pool = clf if isinstance(clf, InterpreterPool) else InterpreterPool.of(clf)
    # photo and auto are Fashion-MNIST's: raw for other models (to_array only reads the record)
    mode = pool.first.resolve_mode(mode)
    limits = limits or DecodeLimits()
    # the same for every chunk: decided once, not in each worker's chunk
    native = native and fastpng.takes(mode, pool.first.image_size, pool.first.color, limits)

    def classify(items: list[Outcome]) -> list[Outcome]:
        return _classify_chunk(pool, items, mode, top_k, limits, native)

    # another interpreter is made only when there is a chunk for it
    chunks = pool.feeding(_read_ahead(_chunks(expand_inputs(args), chunk)))
    for outcomes in ordered_map(classify, chunks, workers or pool.workers):
        yield from outcomes
