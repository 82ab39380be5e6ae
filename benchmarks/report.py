"""report.json, with every number, and report.md beside it, written atomically into the
report folder; the "side by side" headline numbers are picked here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.fileio import atomic_write_json, atomic_write_text

from .markdown import to_markdown

FORMAT = "fmnist-edge-bench/1"  # bump when report.json's meaning changes
# The keys every row of report.json's ``results`` has (more may follow them).
ROW_KEYS = (
    "format",
    "runtime",
    "threads",
    "accuracy",
    "drop_pp",
    "agreement",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "images_per_s",
    "size_bytes",
)


def _threads(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def side_by_side(rows: list[dict[str, Any]], tool: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The headline numbers of one run: Keras predict at batch 1, float32 on 1 thread, each
    quantized format at every thread count, LiteRT's tool on int8; each with how many times
    faster it is than Keras predict and than float32 on 1 thread of the same runtime."""
    keras = next((r for r in rows if r["runtime"] == "keras"), None)
    f32 = {r["runtime"]: r for r in rows if r["format"] == "float32" and r["threads"] == 1}
    present = {r["runtime"] for r in rows}
    main = next(
        (rt for rt in ("ai-edge-litert", "tflite-runtime", "tf.lite") if rt in present), None
    )
    items: list[dict[str, Any]] = []

    def add(what: str, p50: float, rt: str | None) -> None:
        base = f32.get(rt) if rt else None
        items.append(
            {
                "what": what,
                "p50_ms": p50,
                "vs_keras": keras["p50_ms"] / p50 if keras and rt else None,
                "vs_float32": base["p50_ms"] / p50 if base else None,
            }
        )

    if keras:
        add(f"Keras model.predict, batch 1 ({_threads(keras['threads'])})", keras["p50_ms"], None)
    for rt, r in f32.items():
        add(f"float32 on {rt}, 1 thread", r["p50_ms"], rt)
    for r in rows:
        if r["runtime"] == main and r["format"] not in ("keras", "float32"):
            add(f"{r['format']} on {main}, {_threads(r['threads'])}", r["p50_ms"], main)
    for t in tool:
        if t["format"].startswith("int8") and t.get("median_ms"):
            what = f"{t['format']} via LiteRT's tool (median), {_threads(t['threads'])}"
            add(what, t["median_ms"], "ai-edge-litert")
    return items


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays made plain, and NaN/inf made None (JSON has none)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write report.json and report.md into ``out_dir`` (each atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    report = jsonable(report)
    atomic_write_json(json_path, report)
    atomic_write_text(md_path, to_markdown(report))
    return json_path, md_path


def check_paths(parser: Any, args: Any) -> None:
    """The checks every standalone benchmark makes before measuring: ``--model`` (where it has
    one) names a file, ``--out``'s folder exists. argparse's own error: one line, exit 2."""
    if getattr(args, "model", None) and not Path(args.model).is_file():
        parser.error(f"--model {args.model}: no such file")
    if args.out and not Path(args.out).resolve().parent.is_dir():
        parser.error(f"--out {args.out}: its directory does not exist")


def print_and_save(text: str, report: Any, out: str | None) -> None:
    """How a standalone benchmark (``python -m fmnist_edge.benchmarks.NAME``) ends: its table
    on stdout, and with ``--out`` every number as JSON, written atomically."""
    print(text)
    if out:
        atomic_write_json(out, report)
