"""A plain progress bar on stderr for the long steps (no tqdm dependency).

On a terminal the bar redraws in place; in a log file (not a TTY) each step writes one line
when it ends, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Bar:
    """``with Bar("int8 latency, 2 threads", total=200) as bar: bar.update(done)``."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, width: int = 28):
        self.label, self.total, self.width = label, max(int(total), 1), width
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0

    def __enter__(self) -> Bar:
        self._draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish(ok=exc[0] is None)

    def update(self, done: int) -> None:
        self.done = min(int(done), self.total)
        self._draw()

    def _line(self) -> str:
        frac = self.done / self.total
        filled = int(self.width * frac)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self._start
        return f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s"

    def _draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.perf_counter()
        if force or now - self._last_draw > 0.1 or self.done == self.total:
            self._last_draw = now
            self.stream.write("\r" + self._line() + "\x1b[K")
            self.stream.flush()

    def finish(self, ok: bool = True) -> None:
        if ok:
            self.done = self.total
        line = self._line() + ("" if ok else " (stopped)")
        self.stream.write(("\r" + line + "\x1b[K\n") if self.tty else line + "\n")
        self.stream.flush()


class Silent:
    """The bar's face, doing nothing: what library calls get when nobody watches."""

    def __init__(self, label: str = "", total: int = 1, **_: object):
        pass

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, done: int) -> None:
        pass
