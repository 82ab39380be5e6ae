"""Batch-1 latency: warm up, then many timed calls with ``time.perf_counter``; median and tail.

The timed call is what an app does per image (set the input, invoke, read the output), so the
numbers of different runtimes compare like for like. The garbage collector is paused while
timing, as ``timeit`` does, so a collection does not land in one runtime's tail by chance.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.pixels import PIXEL_SCALE

from . import runtimes

Tick = Callable[[int], None]  # progress: called with the number of calls done so far


@dataclass(frozen=True)
class Latency:
    """The timed calls of one (format, runtime, threads): milliseconds, in call order."""

    times_ms: np.ndarray  # (runs,) float64
    warmup: int  # untimed calls before them

    @property
    def runs(self) -> int:
        return int(self.times_ms.size)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.times_ms, q))

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p90(self) -> float:
        return self.percentile(90)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def mean(self) -> float:
        return float(self.times_ms.mean())

    @property
    def images_per_s(self) -> float:
        """A stream of single images, back to back: 1 / mean latency."""
        return 1000.0 / self.mean if self.mean > 0 else float("inf")

    def summary(self) -> dict[str, Any]:
        """The row fields: p50/p90/p99/mean/min/max in ms, runs and warm-up."""
        return {
            "p50_ms": self.p50,
            "p90_ms": self.p90,
            "p99_ms": self.p99,
            "mean_ms": self.mean,
            "min_ms": float(self.times_ms.min()),
            "max_ms": float(self.times_ms.max()),
            "runs": self.runs,
            "warmup": self.warmup,
        }


def time_calls(
    fn: Callable[[], Any], runs: int, warmup: int = 10, tick: Tick | None = None
) -> Latency:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times, timing each call alone."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    for _ in range(warmup):
        fn()
    times = np.empty(runs, dtype=np.float64)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        clock = time.perf_counter
        for i in range(runs):
            t0 = clock()
            fn()
            times[i] = clock() - t0
            if tick is not None and (i + 1) % 10 == 0:
                tick(i + 1)
    finally:
        if gc_was_enabled:
            gc.enable()
    if tick is not None:
        tick(runs)
    return Latency(times_ms=times * 1000.0, warmup=warmup)


def time_tflite(
    runtime: str,
    model_path: Path,
    threads: int,
    image: np.ndarray,
    *,
    runs: int,
    warmup: int,
    scale: float = PIXEL_SCALE,
    offset: float = 0.0,
    tick: Tick | None = None,
) -> Latency:
    """Batch-1 latency of a .tflite on a bare interpreter of ``runtime`` with ``threads``.

    ``image`` is one (28, 28) uint8 test image; ``scale`` and ``offset`` are the model's
    normalization (from its metadata)."""
    interp = runtimes.interpreter(runtime, model_path, threads)
    call = runtimes.interpreter_call(interp, image, scale, offset)
    return time_calls(call, runs=runs, warmup=warmup, tick=tick)


def time_keras(
    model: Any, image: np.ndarray, *, runs: int, warmup: int, tick: Tick | None = None
) -> Latency:
    """Batch-1 latency of ``model.predict``, the notebook's way to classify one image."""
    return time_calls(runtimes.keras_call(model, image), runs=runs, warmup=warmup, tick=tick)
