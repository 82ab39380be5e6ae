"""A cross-check against LiteRT's own benchmark tool,
``python -m ai_edge_litert.tools.benchmark_litert_model``.

The tool runs the model through LiteRT's CompiledModel API (not the classic Interpreter we time)
on random input, and reports the mean, median, p5 and p95 of ``--num_runs`` calls after
``--warmup_runs``. We read its ``--result_json`` and fall back to parsing its printed table.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MODULE = "ai_edge_litert.tools.benchmark_litert_model"
_TIMEOUT_S = 600.0
# "Inference (median):    2.41 ms" in the printed table
_LINE = re.compile(r"^(Inference|Model initialization)\s*(?:\((\w+)\))?:\s*([\d.]+)\s*ms", re.M)


def available() -> bool:
    try:
        return importlib.util.find_spec(MODULE) is not None
    except (ImportError, ValueError):
        return False


def parse_output(text: str) -> dict[str, float]:
    """``{"avg_ms": .., "median_ms": .., "p5_ms": .., "p95_ms": .., "init_ms": ..}`` from the
    tool's printed table (the fallback when its JSON is missing)."""
    out: dict[str, float] = {}
    for what, stat, value in _LINE.findall(text):
        key = "init_ms" if what == "Model initialization" else f"{stat}_ms"
        out.setdefault(key, float(value))
    return out


def run_tool(model: Path, threads: int, runs: int, warmup: int) -> dict[str, Any]:
    """Run the tool once; its latency figures in ms, or ``error`` saying why there are none."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [
            sys.executable,
            "-m",
            MODULE,
            f"--model={model}",
            f"--num_threads={threads}",
            f"--num_runs={runs}",
            f"--warmup_runs={warmup}",
            f"--result_json={result}",
        ]
        record: dict[str, Any] = {
            "command": " ".join(["python"] + cmd[1:-1]),
            "threads": threads,
            "runs": runs,
            "warmup": warmup,
        }
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {**record, "error": f"timed out after {_TIMEOUT_S:.0f} s"}
        figures: dict[str, Any] = {}
        if result.is_file():
            try:
                figures = json.loads(result.read_text()).get("latency", {})
            except (OSError, json.JSONDecodeError):
                figures = {}
        if not figures:
            figures = parse_output(proc.stdout)
        if proc.returncode != 0 or "avg_ms" not in figures:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            return {**record, "error": f"exit {proc.returncode}: {tail[0]}"}
    keep = ("avg_ms", "median_ms", "p5_ms", "p95_ms", "min_ms", "max_ms", "std_ms", "init_ms")
    return {**record, **{k: float(figures[k]) for k in keep if k in figures}}
