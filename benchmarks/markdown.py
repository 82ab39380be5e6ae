"""report.md: the numbers of report.json laid out to read, and the summary table printed on
the terminal (Markdown tables read as plain text too)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _f(x: Any, spec: str = ".2f", none: str = "-") -> str:
    return none if x is None else format(x, spec)


def _pct(x: float | None) -> str:
    return _f(None if x is None else 100 * x, ".2f") + ("" if x is None else "%")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def _times(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with aligned columns (it reads as plain text on a terminal too)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per (format, runtime, threads): accuracy, drop, agreement, latency, size."""
    headers = [
        "format",
        "runtime",
        "threads",
        "accuracy",
        "drop pp",
        "agree",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "img/s",
        "size",
        "vs Keras",
    ]
    body = [
        [
            r["format"],
            r["runtime"],
            str(r["threads"]),
            _pct(r["accuracy"]),
            _f(r["drop_pp"], "+.2f"),
            _pct(r["agreement"]),
            _f(r["p50_ms"], ".3f"),
            _f(r["p90_ms"], ".3f"),
            _f(r["p99_ms"], ".3f"),
            _f(r["images_per_s"], ".0f"),
            _size(r["size_bytes"]),
            _times(r.get("speedup_vs_keras")),
        ]
        for r in rows
    ]
    return table(headers, body)


def _headline(report: dict[str, Any]) -> list[str]:
    items = report.get("side_by_side") or []
    if not items:
        return []
    body = [
        [i["what"], _f(i["p50_ms"], ".3f"), _times(i.get("vs_keras")), _times(i.get("vs_float32"))]
        for i in items
    ]
    return [
        "## Side by side",
        "",
        "Batch-1 p50 latency from this one run; ratios are how many times faster than Keras'"
        " `model.predict` and than float32 on the same runtime with 1 thread.",
        "",
        table(["what", "p50 ms", "vs Keras predict", "vs float32 1 thread"], body),
        "",
    ]


def _accuracy_sections(report: dict[str, Any]) -> list[str]:
    acc = report.get("accuracy") or {}
    if not acc:
        return []
    fmts = list(acc)
    out = ["## Accuracy per class", ""]
    ref = next((a.get("reference") for a in acc.values() if a.get("reference")), None)
    if ref:
        out += [f"Drops and agreement are against `{ref}`. Per-class accuracy (recall), in %:", ""]
    rows = []
    for name in next(iter(acc.values()))["per_class"]:  # the model's classes, in order
        cells = [name]
        for f in fmts:
            cell = _pct(acc[f]["per_class"][name])
            drop = (acc[f].get("per_class_drop_pp") or {}).get(name)
            if drop is not None and f != ref:
                cell += f" ({drop:+.2f})"
            cells.append(cell)
        rows.append(cells)
    out += [table(["class", *fmts], rows), ""]
    changed = [(f, a) for f, a in acc.items() if a.get("changed_count") is not None and f != ref]
    if changed:
        out += ["## Predictions that changed", ""]
        body = [
            [
                f,
                str(a["changed_count"]),
                str(a["images"]),
                _pct(a.get("agreement")),
                a.get("changed_plot") or "-",
            ]
            for f, a in changed
        ]
        out += [
            table(["format", "changed", "of images", "agreement", "sample grid"], body),
            "",
            "Every changed image (test-set index, true label, reference prediction, this"
            " prediction) is listed in report.json under `accuracy.<format>.changed`.",
            "",
        ]
    out += ["## Throughput over the test set", ""]
    body = [
        [f, a["runtime"], str(a["images"]), _f(a["seconds"], ".2f"), _f(a["images_per_s"], ".0f")]
        for f, a in acc.items()
    ]
    out += [table(["format", "how", "images", "seconds", "images/s"], body), ""]
    return out


def _models(report: dict[str, Any]) -> list[str]:
    body = [
        [
            m["format"],
            m["file"],
            _size(m["size_bytes"]),
            _count(m.get("params")),
            _count(m.get("macs")),
            m.get("input_dtype") or "-",
        ]
        for m in report.get("models", [])
    ]
    if not body:
        return []
    head = ["format", "file", "size", "params", "MACs", "input"]
    return ["## Models", "", table(head, body), ""]


def _tool(report: dict[str, Any]) -> list[str]:
    items = report.get("litert_tool") or []
    if not items:
        return []
    body = []
    for t in items:
        if t.get("error"):
            body.append([t["format"], str(t["threads"]), "-", "-", "-", "-", "-", t["error"]])
            continue
        body.append(
            [
                t["format"],
                str(t["threads"]),
                _f(t.get("median_ms"), ".3f"),
                _f(t.get("avg_ms"), ".3f"),
                _f(t.get("p95_ms"), ".3f"),
                _f(t.get("ours_p50_ms"), ".3f"),
                _f(t.get("ours_mean_ms"), ".3f"),
                _f(t.get("ratio_median"), ".2f"),
            ]
        )
    head = [
        "format",
        "threads",
        "tool median",
        "tool mean",
        "tool p95",
        "our p50",
        "our mean",
        "ours / tool",
    ]
    return [
        "## Cross-check: LiteRT's benchmark tool",
        "",
        "`python -m ai_edge_litert.tools.benchmark_litert_model` runs the model through LiteRT's"
        " CompiledModel API on random input; our rows time the classic Interpreter"
        " (set input, invoke, read output) on a real test image. Times in ms.",
        "",
        table(head, body),
        "",
    ]


def _cold(report: dict[str, Any]) -> list[str]:
    cold = report.get("cold_start") or {}
    items = cold.get("runs") or []
    if not items and not cold.get("skipped"):
        return []
    out = ["## Cold start of `fmnist-infer one.png`", ""]
    if cold.get("skipped"):
        return out + [f"Skipped: {cold['skipped']}", ""]
    body = [
        [
            c["format"],
            _f(c.get("seconds_median"), ".3f"),
            _f(c.get("max_rss_mib_median"), ".1f"),
            str(c["reps"]),
            c.get("error") or "ok",
        ]
        for c in items
    ]
    base = cold.get("python_baseline") or {}
    if base:
        body.append(
            [
                "(empty python)",
                _f(base.get("seconds_median"), ".3f"),
                _f(base.get("max_rss_mib_median"), ".1f"),
                str(base["reps"]),
                "ok",
            ]
        )
    out += [
        "A whole new process per call, wall time and peak RSS, median of the repetitions.",
        "",
        table(["model", "seconds", "peak RSS MiB", "reps", "status"], body),
        "",
    ]
    return out


def _load_line(m: dict[str, Any]) -> list[str]:
    loads = [x for x in (m.get("load_average_at_start"), m.get("load_average")) if x]
    if not loads:
        return []
    peak = max(x[0] for x in loads)
    line = f"- Load average (1 min) at start and end: {', '.join(str(x[0]) for x in loads)}"
    if peak > 0.5 * (m.get("usable_cores") or 1):
        line += " (**a busy machine: other processes inflated these latencies**)"
    return [line]


def _runtimes(report: dict[str, Any]) -> list[str]:
    from .runtime_table import to_markdown as runtime_markdown

    t = report.get("runtime_table") or {}
    if not t.get("rows"):
        return []
    intro = (
        "Each runtime's batch-1 latency and batch-256 images/s, interleaved rounds (min / "
        "median / max over rounds; ratios taken within a round), and the median images/s as a "
        "fraction of this CPU's measured multiply-accumulate limit (benchmarks/silicon.py)."
    )
    hint = [f"**{line}**" for line in (t.get("hint") or "").splitlines()]
    hint += [""] if hint else []
    return [
        "## Runtimes against the silicon",
        "",
        intro,
        "",
        *hint,
        runtime_markdown(t["rows"], t["limits"], t["macs"]),
        "",
    ]


def to_markdown(report: dict[str, Any]) -> str:
    """report.md: the summary first, details after."""
    m, data = report["machine"], report["data"]
    rts = ", ".join(
        f"{r['name']} {r['version']}" if r["available"] else f"{r['name']}: {r['reason']}"
        for r in report["runtimes"]
    )
    out = [
        "# fmnist-bench report",
        "",
        f"- Models: {report['source']}",
        f"- Mode: {report['mode']}",
        f"- Test images: {data['images']} ({data['subset']}) from {data['source']}",
        f"- Machine: {m['cpu']}, {m['usable_cores']} of {m['cores']} cores, {m['os']},"
        f" Python {m['python']}",
        f"- Runtimes: {rts}",
        f"- Created: {report['created']}",
        *_load_line(m),
        "",
        "## Summary",
        "",
        "Latency is per image at batch 1 after a warm-up; images/s = 1 / mean latency (a stream"
        " of single images). Accuracy, drop (percentage points) and agreement are against"
        f" `{report.get('reference') or 'no float reference'}`.",
        "",
        summary_table(report["results"]),
        "",
    ]
    out += _headline(report) + _models(report) + _accuracy_sections(report)
    out += _runtimes(report) + _tool(report) + _cold(report)
    if report.get("plots"):
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in report["plots"]] + [""]
    if report.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(out)
