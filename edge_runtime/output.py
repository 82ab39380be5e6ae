"""fmnist-infer's output formats: text lines, JSON Lines, CSV rows, and the hackathon
submission file (``id,label``: the file's stem and the class index), written as results come."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fmnist_edge.common.errors import OutputError, UsageError
from fmnist_edge.common.fileio import atomic_open

from .batch import Outcome


def _reason(outcome: Outcome) -> str:
    """The error without the leading ``path: `` (JSON and CSV carry the path separately)."""
    prefix = f"{outcome.path}: "
    error = outcome.error or ""
    return error[len(prefix) :] if error.startswith(prefix) else error


def text_line(outcome: Outcome) -> str:
    """``path: Label (p%)``, with the runners-up after commas when top_k > 1."""
    if not outcome.ok:
        return f"error: {outcome.error}"
    pred = outcome.prediction
    ranked = ", ".join(f"{label} ({100 * p:.1f}%)" for label, p in pred.top_k)
    return f"{outcome.path}: {ranked}"


def json_record(outcome: Outcome) -> dict[str, Any]:
    """``{path, label, index, score, top_k}``, or ``{path, error}`` for a failed input."""
    if not outcome.ok:
        return {"path": outcome.path, "error": _reason(outcome)}
    pred = outcome.prediction
    return {
        "path": outcome.path,
        "label": pred.label,
        "index": pred.index,
        "score": round(pred.score, 6),
        "top_k": [{"label": label, "score": round(p, 6)} for label, p in pred.top_k],
    }


def json_line(outcome: Outcome) -> str:
    return json.dumps(json_record(outcome), ensure_ascii=False)


def csv_header(top_k: int) -> list[str]:
    extra = [f"{col}_{i}" for i in range(2, top_k + 1) for col in ("label", "score")]
    return ["path", "label", "index", "score", *extra, "error"]


def csv_row(outcome: Outcome, top_k: int) -> list[str]:
    if not outcome.ok:
        return [outcome.path, "", "", "", *[""] * (2 * (top_k - 1)), _reason(outcome)]
    pred = outcome.prediction
    extra = []
    for i in range(1, top_k):
        label, p = pred.top_k[i] if i < len(pred.top_k) else ("", None)
        extra += [label, "" if p is None else f"{p:.6f}"]
    return [outcome.path, pred.label, str(pred.index), f"{pred.score:.6f}", *extra, ""]


def csv_line(row: list[str]) -> str:
    """One CSV row without its line end. (The csv module quotes a field that holds a character
    of its line terminator; with none it would not quote a file name's line break.)"""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(row)  # quotes fields with \r or \n
    return buf.getvalue()[:-2]


SUBMISSION_HEADER = "id,label"
_CSV_SPECIAL = frozenset(',"\r\n')  # a stem with one of these is quoted by the csv module


def submission_line(outcome: Outcome) -> str | None:
    """``id,label`` for a classified input (id = file stem, label = class index); None for one
    that failed (it has no row)."""
    if not outcome.ok:
        return None
    stem = os.path.splitext(os.path.basename(outcome.path))[0]  # Path(...).stem, a fifth the time
    if _CSV_SPECIAL.isdisjoint(stem):
        return f"{stem},{outcome.prediction.index}"
    return csv_line([stem, str(outcome.prediction.index)])


def submission_text(outcomes: Iterable[Outcome]) -> str:
    """The whole submission for ``outcomes``, header first."""
    rows = (line for line in map(submission_line, outcomes) if line is not None)
    return "\n".join([SUBMISSION_HEADER, *rows]) + "\n"


@contextlib.contextmanager
def submission_writer(path: str | os.PathLike) -> Iterator[Callable[[Outcome], None]]:
    """``with submission_writer(p) as add: add(outcome)...``: each row is written as it comes,
    into a temporary file beside ``path``, so memory stays flat however many images there are;
    the file is renamed over ``path`` when the block ends without an error. A failure or a
    Ctrl-C leaves ``path`` as it was, and nothing else. A folder that takes no file raises
    UsageError before the block runs; a file that cannot be completed (disk full) OutputError."""
    phase = "open"
    try:
        with atomic_open(path, "w") as fh:
            phase = "rows"
            fh.write(SUBMISSION_HEADER + "\n")

            def add(outcome: Outcome) -> None:
                line = submission_line(outcome)
                if line is not None:
                    fh.write(line + "\n")

            yield add
            phase = "commit"
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if phase == "open":
            raise UsageError(f"--submission {path}: not writable ({reason})") from None
        if phase == "commit":
            raise OutputError(f"--submission {path}: could not be written ({reason})") from None
        raise  # the caller's own failure, inside the block
