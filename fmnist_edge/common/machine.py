"""The machine a command runs on: a human name for its CPU and the cores this process may use.

Training records them, benchmarks report them, the emulated-Pi probe checks them.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

_CPUINFO = Path("/proc/cpuinfo")
_DT_MODEL = Path("/proc/device-tree/model")  # "Raspberry Pi 4 Model B Rev 1.4" on a Pi


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
    """A human name for the CPU: x86's "model name" with its family, model and widest vector
    instructions (a cloud's "AMD EPYC" alone hides a Zen 3 from a Zen 5, 8x apart on int8),
    else the board (a Pi's device tree) and ARM's implementer/part, else what ``platform``
    knows."""
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
    if name and "cpu family" in info:
        return f"{name} (family {info['cpu family']} model {info.get('model', '?')}{_isa(info)})"
    if name:
        return name
    if "CPU part" in info:
        return f"ARM implementer {info.get('CPU implementer', '?')} part {info['CPU part']}"
    return platform.processor() or platform.machine() or "unknown"


def _isa(info: dict[str, str]) -> str:
    """The widest x86 vector instructions the flags list, the ones our kernels pick by."""
    flags = set(info.get("flags", "").split())
    for flag, isa in (("avx512_vnni", "AVX-512 VNNI"), ("avx512f", "AVX-512"), ("avx2", "AVX2")):
        if flag in flags:
            return f", {isa}"
    return ""


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask on Linux, else all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def prefer_onednn() -> None:
    """Ask TensorFlow for its oneDNN CPU kernels, unless the user set TF_ENABLE_ONEDNN_OPTS.

    TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI, BF16, AMX and the like;
    on the others (AVX2: laptops, EPYCs before Zen 4) they train our ResNets 2-3x faster than its
    default Eigen kernels (docs/training.md). TensorFlow reads the variable once, when it is
    imported: call this first.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
