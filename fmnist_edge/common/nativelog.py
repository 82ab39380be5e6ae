"""Keep C++ chatter off a command's stderr.

TensorFlow and LiteRT print straight to file descriptor 2 ("INFO: Created TensorFlow Lite
XNNPACK delegate for CPU.", oneDNN and CUDA notices, the quantizer's summary) and offer no
switch. A command's error output should stay one line, so commands run their work inside
``native_stderr_captured``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

from fmnist_edge.common.errors import FmnistError


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[None]:
    """Send descriptor 2 to a temporary file for the duration, and replay what it caught if the
    block raises anything but our own errors or Ctrl-C (then it may explain why). Python's
    own ``sys.stderr`` keeps reaching the terminal through a duplicate of the original
    descriptor, so warnings and errors written meanwhile are not lost."""
    try:
        sys.stderr.flush()
        python_on_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # e.g. a test runner's in-memory stderr
        python_on_fd2 = False
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 at all: nothing to capture
        yield
        return
    original, replacement = sys.stderr, None
    with tempfile.TemporaryFile() as log:
        try:
            if python_on_fd2:
                replacement = os.fdopen(
                    os.dup(saved),
                    "w",
                    buffering=1,
                    encoding=original.encoding,
                    errors="backslashreplace",
                )
                sys.stderr = replacement
            os.dup2(log.fileno(), 2)
            yield
        except (FmnistError, KeyboardInterrupt):
            raise  # our own one-line message says what happened; the C++ notices are noise
        except BaseException:  # a bug or a library failure: what it printed may explain it
            os.dup2(saved, 2)
            log.seek(0)
            (replacement or original).write(log.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if replacement is not None:
                sys.stderr = original
                replacement.close()


# Set (to anything) to let library code's C++ notices through: the emulated-Pi check reads
# LiteRT's "Created TensorFlow Lite XNNPACK delegate" line to prove the delegate is on.
SHOW_NATIVE_LOG = "FMNIST_NATIVE_LOG"
_SWAPPING = threading.RLock()  # descriptor 2 is one per process: one thread swaps it at a time


@contextlib.contextmanager
def native_stderr_quieted() -> Iterator[None]:
    """``native_stderr_captured`` for library code, which may run in several threads at once (a
    server's workers each creating a Classifier). One thread at a time swaps descriptor 2; a
    thread that finds another one doing so runs as it is, since descriptor 2 already goes to
    that one's file (two interleaved swaps could leave it pointing at a deleted file for good).
    """
    if os.environ.get(SHOW_NATIVE_LOG) or not _SWAPPING.acquire(blocking=False):
        yield
        return
    try:
        with native_stderr_captured():
            yield
    finally:
        _SWAPPING.release()
