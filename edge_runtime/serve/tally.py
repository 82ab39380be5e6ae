"""Warnings from decoders and parsers, logged once per kind and counted.

Pillow warns through ``warnings`` (corrupt EXIF, a bad TIFF tag, a NaN in a float image...),
python-multipart and uvicorn's protocols through ``logging`` (a bad boundary, an invalid HTTP
request): once per request, often with text the client chose, so that a client could fill the
log. ``WarningTally`` logs the first warning of each kind, where a kind is the warning's
category and the line of code that raised it (never the client's text), and counts the rest;
/metrics shows the counts and the server logs them once more when it stops.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

_MAX_TEXT = 120  # characters of the first warning's own text kept in the log line
PARSER_LOGGERS = ("python_multipart.multipart", "uvicorn.error")


def _clean(text: str) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


class WarningTally:
    """Counts of warnings by kind, from any thread; the first of each kind goes to ``log``."""

    def __init__(self, log: logging.Logger):
        self.log = log
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def note(self, kind: str, text: str) -> None:
        """One warning of ``kind``; ``text`` is logged only for the first of its kind."""
        with self._lock:
            self._counts[kind] += 1
            first = self._counts[kind] == 1
        if first:
            self.log.warning(
                "warning %s: %s (further ones are counted in /metrics)", kind, _clean(text)
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def showwarning(
        self,
        message: Any,
        category: type,
        filename: str,
        lineno: int,
        file: Any = None,
        line: Any = None,
    ) -> None:
        """A ``warnings.showwarning`` replacement."""
        self.note(f"{category.__name__} at {Path(filename).stem}:{lineno}", str(message))

    def filter(self, record: logging.LogRecord) -> bool:
        """A ``logging`` filter: a WARNING is tallied (and dropped), anything else passes."""
        if record.levelno != logging.WARNING:
            return True
        self.note(f"{record.name} at {record.module}:{record.lineno}", record.getMessage())
        return False

    def install(self) -> None:
        """Route every Python warning, and the parsers' logged warnings, through this tally
        (for the whole process: fmnist-serve owns it). Every occurrence reaches it: Python's
        default shows the first per place and message, and the message is the client's."""
        warnings.simplefilter("always")
        warnings.showwarning = self.showwarning
        for name in PARSER_LOGGERS:
            logging.getLogger(name).addFilter(self.filter)

    def summary(self) -> str | None:
        """One line with every kind's count, or None when nothing warned."""
        counts = self.counts()
        if not counts:
            return None
        return "warnings while serving: " + "; ".join(
            f"{kind} x{n}" for kind, n in sorted(counts.items())
        )
