"""docs/results.md: one table over several fmnist-bench reports, one row per model and format.

    fmnist-bench edge-m=runs/edge-m-v1 miniresnet=runs/mini --results docs/results.md
    python -m fmnist_edge.benchmarks.results edge-m=runs/edge-m-v1/bench \
        miniresnet=runs/mini/bench \
        --out docs/results.md            # the same table from reports already written
    python -m fmnist_edge.benchmarks.results edge-m=runs/edge-m-v1/bench \
        --format keras --format int8 --out README.md     # a short one for the README

Each report is one fmnist-bench run of one model; this module only lays their report.json
numbers side by side (accuracy, int8 drop, size, MACs, latency p50 at 1 and 2 threads on
ai-edge-litert, cold start), so the published table never holds a hand-copied number. A new
(or empty) --out file gets the table between the markers below; in an existing one only the
text between them is replaced, so the prose around the table stays as written. A file that
holds text but not both markers is refused, untouched: nothing a user wrote is overwritten.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from fmnist_edge.common.cli import debug_option, handle_errors
from fmnist_edge.common.errors import FmnistError, UsageError
from fmnist_edge.common.fileio import atomic_write_text

from .markdown import _count, _f, _pct, _size, table

RUNTIME = "ai-edge-litert"  # the Pi's runtime: its latency is the one published
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def load_report(path: Path) -> dict[str, Any]:
    """report.json of a report folder (or the file itself)."""
    file = path / "report.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise FmnistError(f"{file}: no such report (run fmnist-bench first)") from None
    except (OSError, ValueError) as exc:
        raise FmnistError(f"{file}: not a readable fmnist-bench report ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise FmnistError(f"{file}: not an fmnist-bench report (no 'results' list)")
    return data


def _p50(rows: list[dict], fmt: str, runtime: str, threads: int) -> float | None:
    for r in rows:
        if (r["format"], r["runtime"], r["threads"]) == (fmt, runtime, threads):
            return r["p50_ms"]
    return None


def report_formats(data: dict[str, Any]) -> list[str]:
    """The formats a report measured, in its order (Keras first, then each .tflite)."""
    return list(dict.fromkeys(r["format"] for r in data["results"]))


def model_rows(
    name: str, data: dict[str, Any], only: Sequence[str] | None = None
) -> list[list[str]]:
    """One table row per format of one report (only those in ``only``, when given)."""
    rows = data["results"]
    formats = [f for f in report_formats(data) if only is None or f in only]
    cold = {c["format"]: c for c in data.get("cold_start", {}).get("runs", [])}
    out = []
    for fmt in formats:
        first = next(r for r in rows if r["format"] == fmt)
        runtime = "keras" if fmt == "keras" else RUNTIME
        c = cold.get(fmt, {})
        out.append(
            [
                name,
                "Keras float32" if fmt == "keras" else fmt,
                _pct(first["accuracy"]),
                "-" if fmt == "keras" else _f(first["drop_pp"], "+.2f"),
                _size(first["size_bytes"]),
                _count(first.get("macs")),
                _f(_p50(rows, fmt, runtime, 1), ".3f"),
                _f(_p50(rows, fmt, runtime, 2), ".3f"),
                _f(c.get("seconds_median"), ".2f"),
                _f(c.get("max_rss_mib_median"), ".0f"),
            ]
        )
    return out


HEADERS = [
    "model",
    "format",
    "test acc.",
    "drop pp",
    "size",
    "MACs",
    "p50 ms, 1 thread",
    "p50 ms, 2 threads",
    "cold start s",
    "peak RSS MiB",
]


def results_markdown(
    reports: Sequence[tuple[str, dict[str, Any]]], only: Sequence[str] | None = None
) -> str:
    """The results table, then per report the machine and the source it measured."""
    body = [row for name, data in reports for row in model_rows(name, data, only)]
    lines = [table(HEADERS, body), ""]
    for name, data in reports:
        m = data.get("machine", {})
        lines.append(
            f"- {name}: {data.get('source')}, {data.get('data', {}).get('subset')}; "
            f"{m.get('cpu_model', m.get('cpu', '?'))}, {m.get('cores', '?')} cores, "
            f"load {m.get('load_average_at_start', '?')} at start; {data.get('created')}"
        )
    return "\n".join(lines) + "\n"


def splice(document: str, table_md: str) -> str:
    """``document`` with the text between BEGIN and END replaced by ``table_md``. ValueError
    when it lacks either marker (or has them the wrong way round)."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {BEGIN} ... {END} markers")
    return f"{document[: start + len(BEGIN)]}\n{table_md}{document[end:]}"


def results_document(out: Path, option: str = "--results") -> str:
    """The text the table will be spliced into: ``out``'s own, or just the markers for a new or
    empty file. UsageError, before anything is measured or written, for a file that holds text
    but not both markers: it is someone's prose, and never replaced."""
    if out.is_dir():
        raise UsageError(f"{option} {out}: is a directory")
    if not out.parent.is_dir():
        raise UsageError(f"{option} {out}: its folder does not exist")
    try:
        document = out.read_text() if out.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{option} {out}: cannot read ({exc})") from None
    if not document.strip():
        return f"{BEGIN}\n{END}\n"
    try:
        splice(document, "")
    except ValueError:
        raise UsageError(
            f"{option} {out}: has text but not the {BEGIN} and {END} markers (both, in this "
            "order); put them where the table belongs (the file was left unchanged)"
        ) from None
    return document


def write_results(
    out: Path,
    reports: Sequence[tuple[str, dict[str, Any]]],
    option: str = "--results",
    only: Sequence[str] | None = None,
) -> None:
    """Splice the table of ``reports`` (the rows of the formats in ``only``, when given)
    between the markers of ``out`` (a new file: the markers and the table), atomically; see
    ``results_document`` for what is refused."""
    document = results_document(out, option)
    atomic_write_text(out, splice(document, results_markdown(reports, only)))


def parse_spec(spec: str, what: str = "REPORT_DIR", plain_ok: bool = False) -> tuple[str, Path]:
    """``NAME=PATH`` -> (name, path). With ``plain_ok`` a bare PATH is accepted too, named after
    its folder (and an existing folder whose name holds "=" is still a folder)."""
    name, sep, path = spec.partition("=")
    if plain_ok and (not sep or Path(spec).exists()):
        return Path(spec).resolve().name or spec, Path(spec)
    if not sep or not name or not path:
        either = f"{what} or " if plain_ok else ""
        raise UsageError(f"{spec!r}: expected {either}NAME={what} (e.g. edge-m=runs/edge-m)")
    return name, Path(path)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("reports", nargs=-1, required=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the table between the results markers of this Markdown file (a new file: "
    "created with them); a file with text but no markers is refused (default: print it).",
)
@click.option(
    "--format",
    "formats",
    multiple=True,
    metavar="FORMAT",
    help="Only the rows of this format (repeatable: keras, float32, float16, int8, dynamic), "
    "e.g. a short table for a README (default: every format).",
)
@debug_option
@handle_errors
def main(
    reports: tuple[str, ...], out: Path | None, formats: tuple[str, ...], debug: bool
) -> None:
    """Lay out fmnist-bench reports, NAME=REPORT_DIR each, as one results table."""
    if out is not None:
        results_document(out, "--out")  # a file of prose is refused before reading reports
    loaded = [(name, load_report(path)) for name, path in map(parse_spec, reports)]
    measured = {f for _, data in loaded for f in report_formats(data)}
    for fmt in formats:
        if fmt not in measured:
            raise UsageError(
                f"--format {fmt}: no report has it (they have: {', '.join(sorted(measured))})"
            )
    only = formats or None
    if out is None:
        sys.stdout.write(results_markdown(loaded, only))
    else:
        write_results(out, loaded, "--out", only)
        click.echo(f"wrote {out}")


if __name__ == "__main__":
    main(prog_name="python -m fmnist_edge.benchmarks.results")
