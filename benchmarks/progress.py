"""A plain progress bar on stderr for the long steps (no tqdm dependency).

On a terminal the bar redraws in place and its clock keeps running between updates, so a
step of a minute never looks hung; in a log file (not a TTY) each step writes one line when it
ends, plus one per note. ``update(done, note=...)`` says what the step is doing now.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO


class Bar:
    """``with Bar("int8 latency, 2 threads", total=200) as bar: bar.update(done)``, and for a
    step with few, long parts ``bar.update(1, note="converting float16")``."""

    def __init__(
        self,
        label: str,
        total: int,
        stream: TextIO | None = None,
        width: int = 28,
        tick: float = 0.5,
    ):
        self.label, self.total, self.width = label, max(int(total), 1), width
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.note = ""  # what the step is doing now, shown after the bar
        self.tick = tick  # seconds between redraws of the clock on a terminal (0: none)
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._lock = threading.Lock()  # the clock's thread and the caller both draw
        self._stop = threading.Event()
        self._clock: threading.Thread | None = None

    def __enter__(self) -> Bar:
        self._draw(force=True)
        if self.tty and self.tick > 0:
            self._clock = threading.Thread(target=self._run_clock, name="bar-clock", daemon=True)
            self._clock.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish(ok=exc[0] is None)

    def update(self, done: int, note: str | None = None) -> None:
        self.done = min(int(done), self.total)
        if note is not None and note != self.note:
            self.note = note
            if not self.tty:  # a log gets the news as a line of its own
                self._write(self._line() + "\n")
        self._draw()

    def _run_clock(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self._draw(force=True)
            except (OSError, ValueError):  # the stream was closed under us: stop drawing
                return

    def _line(self, columns: int | None = None) -> str:
        """The bar's text; within ``columns`` the drawn bar is dropped before the note is cut."""
        frac = self.done / self.total
        filled = int(self.width * frac)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self._start
        counts = f"{self.done}/{self.total} {elapsed:5.1f}s"
        line = f"{self.label} [{bar}] {counts}"
        if not self.note:
            return line if columns is None else line[:columns]
        line = f"{line}: {self.note}"
        if columns is not None and len(line) > columns:
            line = f"{self.label} {counts}: {self.note}"[:columns]
        return line

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.perf_counter()
        if force or now - self._last_draw > 0.1 or self.done == self.total:
            self._last_draw = now
            columns = shutil.get_terminal_size().columns  # a wrapped line would not redraw
            self._write("\r" + self._line(max(columns - 1, 20)) + "\x1b[K")

    def finish(self, ok: bool = True) -> None:
        self._stop.set()
        if self._clock is not None:
            self._clock.join()
        if ok:
            self.done, self.note = self.total, ""
        line = self._line() + ("" if ok else " (stopped)")
        self._write(("\r" + line + "\x1b[K\n") if self.tty else line + "\n")


class Silent:
    """The bar's face, doing nothing: what library calls get when nobody watches."""

    def __init__(self, label: str = "", total: int = 1, **_: object):
        pass

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, done: int, note: str | None = None) -> None:
        pass
