"""The machine a benchmark ran on: CPU, cores, OS, Python and runtime versions.

Latency means nothing without it. Nothing here imports TensorFlow: versions come from the
installed distributions' metadata.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from .runtimes import dist_version

_CPUINFO = Path("/proc/cpuinfo")
_DT_MODEL = Path("/proc/device-tree/model")  # "Raspberry Pi 4 Model B Rev 1.4" on a Pi

# what report.json lists under machine.versions
_VERSIONED = {
    "numpy": ("numpy",),
    "ai-edge-litert": ("ai-edge-litert",),
    "tflite-runtime": ("tflite-runtime",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tf-nightly", "tensorflow-macos"),
    "keras": ("keras",),
    "pillow": ("pillow",),
    "matplotlib": ("matplotlib",),
}


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first value of each key in /proc/cpuinfo text (x86 and ARM spell things apart)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if sep and key and value and key not in out:
            out[key] = value
    return out


def cpu_model(cpuinfo: str | None = None, board: str | None = None) -> str:
    """A human name for the CPU: x86's "model name", else the board (a Pi's device tree) and
    ARM's implementer/part, else what ``platform`` knows."""
    if cpuinfo is None:
        try:
            cpuinfo = _CPUINFO.read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    if board is None:
        try:
            board = _DT_MODEL.read_text(errors="replace").strip("\x00\n ")
        except OSError:
            board = ""
    info = parse_cpuinfo(cpuinfo)
    board = board or info.get("Model", "")  # a Pi's cpuinfo names the board too
    name = info.get("model name") or info.get("Processor") or info.get("cpu model") or ""
    if board:
        # a Pi: the board says more than "ARMv7 Processor rev 3 (v7l)"
        return f"{board} ({name})" if name else board
    if name:
        return name
    if "CPU part" in info:
        return f"ARM implementer {info.get('CPU implementer', '?')} part {info['CPU part']}"
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages: a busy machine inflates every latency."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict[str, Any]:
    """The ``machine`` object of report.json."""
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average": load_average(),  # at the end of the run
        "versions": {name: dist_version(*dists) for name, dists in _VERSIONED.items()},
    }
