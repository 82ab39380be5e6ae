"""Cold start: ``fmnist-infer one.png`` as a whole new process, timed wall to wall, with its
peak resident memory. That is what a cron job or a shell script on the Pi pays per call.

Each child is reaped with ``os.wait4``, which returns that child's own rusage (the
RUSAGE_CHILDREN total would carry the largest earlier child forward), by a small wrapper process
(see ``_WRAPPER`` for why).
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.fileio import atomic_open

_TIMEOUT_S = 120.0
_REPO_ROOT = Path(__file__).resolve().parent.parent  # where edge_runtime/ lives


@dataclass(frozen=True)
class Process:
    seconds: float  # wall time from spawn to exit
    max_rss_mib: float | None  # peak resident set size (None where the OS won't say)
    returncode: int
    stderr: str  # its last lines, to explain a failure
    cpu_seconds: float | None = None  # user + system CPU time, all its threads


def write_png(image: np.ndarray, path: Path) -> Path:
    """Save one (H, W[, C]) uint8 image as a gray or RGB PNG (the cold start's input)."""
    from PIL import Image

    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    with atomic_open(path, "wb") as fh:
        Image.fromarray(pixels).save(fh, format="PNG")
    return path


def _env(bytecode: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # the child must import the same edge_runtime as we do, installed or not
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if bytecode is not None:
        # compiled modules kept under ``bytecode`` and reused by the next child, as an install
        # has them (pip compiles at install); where PYTHONDONTWRITEBYTECODE is set, each child
        # of a checkout would compile the package anew: 30-50 ms a start on the 2-core EPYC
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(bytecode)
    return env


# Runs in a small Python process of its own and reports on its child as JSON. The child must
# not be forked from the benchmark itself: Linux carries the forking process's peak RSS into
# the child's ru_maxrss at exec, so a child of a process holding TensorFlow would "use" 800 MiB.
_WRAPPER = r"""
import json, os, subprocess, sys, time
cmd = json.loads(sys.argv[1])
t0 = time.perf_counter()
proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
seconds = time.perf_counter() - t0
rss = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)  # macOS: bytes
tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
print(json.dumps({"seconds": seconds, "max_rss_mib": rss,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "returncode": os.waitstatus_to_exitcode(status), "stderr": "\n".join(tail)}))
"""


def run_process(
    cmd: list[str], timeout: float = _TIMEOUT_S, bytecode: Path | None = None
) -> Process:
    """Run ``cmd`` once, from a small wrapper process; its wall time, peak RSS, exit status.
    With ``bytecode`` (a folder), Python modules are compiled there once and reused."""
    env = _env(bytecode)
    if not hasattr(os, "wait4"):  # pragma: no cover - Windows: wall time only
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env)
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        return Process(time.perf_counter() - t0, None, proc.returncode, "\n".join(tail))
    wrapper = [sys.executable, "-c", _WRAPPER, json.dumps(cmd)]
    try:
        proc = subprocess.run(wrapper, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return Process(timeout, None, -1, f"timed out after {timeout:.0f} s")
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return Process(0.0, None, -1, f"measuring wrapper failed: {proc.stderr.strip()[-200:]}")
    return Process(
        out["seconds"], out["max_rss_mib"], out["returncode"], out["stderr"], out["cpu_seconds"]
    )


def infer_argv(*args: str | os.PathLike, native: bool = True) -> list[str]:
    """``fmnist-infer ARGS...``, as its console script runs it, by this interpreter (whether or
    not the package is installed). ``native=False``: with the C decode off
    (``classify_inputs(native=False)``), as an install without it runs."""
    script = (
        "import sys; from fmnist_edge.edge_runtime.cli import main; "
        "sys.argv[0] = 'fmnist-infer'; main()"
    )
    if not native:
        script = (
            "import functools; from fmnist_edge.edge_runtime import batch; "
            "batch.classify_inputs = functools.partial(batch.classify_inputs, native=False); "
            + script
        )
    return [sys.executable, "-c", script, *map(str, args)]


def infer_command(model: Path, png: Path) -> list[str]:
    """``fmnist-infer PNG --model MODEL``: the cold start's command."""
    return infer_argv(png, "--model", model)


def fmnist_infer_available() -> bool:
    try:
        return importlib.util.find_spec("fmnist_edge.edge_runtime.cli") is not None
    except (ImportError, ValueError):
        return False


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def cold_start(cmd: list[str], reps: int, shown: str | None = None) -> dict[str, Any]:
    """Start ``cmd`` ``reps`` times; median wall time and peak RSS, and every run's numbers.

    The first start also warms the OS page cache, as it would on a device in use; the median
    is over all of them."""
    procs = [run_process(cmd) for _ in range(reps)]
    failed = [p for p in procs if p.returncode != 0]
    return {
        "command": shown or " ".join([Path(cmd[0]).name, *cmd[1:]]),
        "reps": reps,
        "seconds_median": _median([p.seconds for p in procs if p.returncode == 0]),
        "max_rss_mib_median": _median([p.max_rss_mib for p in procs if p.returncode == 0]),
        "seconds": [p.seconds for p in procs],
        "max_rss_mib": [p.max_rss_mib for p in procs],
        "returncodes": [p.returncode for p in procs],
        "error": (failed[0].stderr or f"exit {failed[0].returncode}") if failed else None,
    }


def python_baseline(reps: int) -> dict[str, Any]:
    """An empty Python process: the part of any cold start that no model can remove."""
    return cold_start([sys.executable, "-c", "pass"], reps, shown="python -c pass")
