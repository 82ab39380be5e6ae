"""The machine a benchmark ran on: CPU, cores, OS, Python and runtime versions.

Latency means nothing without it. Nothing here imports TensorFlow: versions come from the
installed distributions' metadata.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from fmnist_edge.common.machine import cpu_model, usable_cores

from .runtimes import dist_version

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
