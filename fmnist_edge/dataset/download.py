"""Fetch Fashion-MNIST's files from a mirror, verified before they are kept.

Silent by default: it logs one line per file on the "fmnist.data" logger, and reports bytes to
a ``progress`` callback when the caller gives one (the commands decide what to show).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from fmnist_edge.common.errors import DataError, DownloadError
from fmnist_edge.common.fileio import atomic_open

from .files import SHA256, Progress, decompress

OFFICIAL_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
KERAS_MIRROR = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
DEFAULT_MIRRORS = (OFFICIAL_MIRROR, KERAS_MIRROR)

log = logging.getLogger("fmnist.data")


def download_file(
    stem: str,
    directory: str | os.PathLike,
    *,
    mirrors: Sequence[str] | None = None,
    progress: Progress | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch ``stem``.gz from the first mirror that serves it, verify it, store it atomically.

    $FMNIST_MIRROR, when set, is tried before the official mirrors.
    """
    mirrors = list(mirrors or DEFAULT_MIRRORS)
    if os.environ.get("FMNIST_MIRROR"):
        mirrors.insert(0, os.environ["FMNIST_MIRROR"])
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"{directory}: cannot create download directory ({exc})") from None
    dest = directory / f"{stem}.gz"
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + f"/{stem}.gz"
        log.info("downloading %s", url)
        t0 = time.perf_counter()
        try:
            with (
                urllib.request.urlopen(url, timeout=timeout) as resp,
                atomic_open(dest, "w+b") as out,
            ):
                total = resp.headers.get("Content-Length")
                total = int(total) if total else None
                done = 0
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(dest.name, done, total)
                if total is not None and done != total:
                    raise DataError(f"{url}: connection closed after {done} of {total} bytes")
                # verify before the rename: a bad download never replaces anything
                out.seek(0)
                if hashlib.sha256(decompress(out.read(), url)).hexdigest() != SHA256[stem]:
                    raise DataError(f"{url}: downloaded file fails its SHA-256 check")
            seconds = time.perf_counter() - t0
            log.info("%s: %.1f MiB in %.1f s, verified", dest, done / 2**20, seconds)
            return dest
        except (urllib.error.URLError, OSError, DataError) as exc:
            reason = getattr(exc, "reason", None) or exc
            failures.append(f"{url} ({reason})")
    raise DownloadError(f"could not download {stem}.gz: " + "; ".join(failures))


