"""Run a model over the evaluation images once, timed: the predictions that the accuracy
numbers come from, and the throughput over the whole (or --quick) test set.

Keras runs batched ``predict`` (one image at a time would take half an hour for the notebook's
model); a .tflite runs through edge_runtime's Classifier.predict_proba, exactly as on a Pi.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.labels import CLASS_NAMES

from .accuracy import Evaluation

CHUNK = 500  # images per call: the progress bar's step
Tick = Callable[[int], None]  # progress: called with the number of images done


def evaluate_keras(
    model: Any,
    images: np.ndarray,
    labels: np.ndarray,
    batch: int = 256,
    tick: Tick | None = None,
    class_names: tuple[str, ...] = CLASS_NAMES,
) -> Evaluation:
    """The Keras float reference: (N, H, W[, C]) uint8 -> pixel / 255 -> batched predict."""
    preds = np.empty(len(images), dtype=np.int64)
    t0 = time.perf_counter()
    for start in range(0, len(images), 2 * CHUNK):
        x = np.asarray(images[start : start + 2 * CHUNK]).astype(np.float32) / 255.0
        x = x[..., None] if x.ndim == 3 else x  # (n, H, W) gray: its channel axis
        proba = model.predict(x, batch_size=batch, verbose=0)  # (n, 10) softmax
        preds[start : start + len(x)] = np.argmax(proba, axis=1)
        if tick is not None:
            tick(start + len(x))
    seconds = time.perf_counter() - t0
    how = f"keras predict, batch {batch}"
    return Evaluation("keras", preds, labels, seconds, how, None, class_names)


def evaluate_tflite(
    path: Path,
    label: str,
    images: np.ndarray,
    labels: np.ndarray,
    threads: int,
    runtime: str | None = None,
    tick: Tick | None = None,
) -> Evaluation:
    """A .tflite through Classifier.predict_proba on ``threads`` cores, laid out as fmnist-infer
    lays them out (edge_runtime.threads: by default that many interpreters of one thread, each
    given chunks by its own worker thread), on ``runtime`` (None: the first that works). The
    timing covers the predictions only, not loading the model."""
    from fmnist_edge.edge_runtime.threads import InterpreterPool, ordered_map, plan_threads

    plan = plan_threads(threads, source="--max-threads")
    pool = InterpreterPool.for_plan(plan, str(path), runtime=runtime)

    def argmax(start: int) -> tuple[int, np.ndarray]:
        with pool.borrow() as clf:
            proba = clf.predict_proba(images[start : start + CHUNK])  # (n, 10) float32
        return start, np.argmax(proba, axis=1)

    preds = np.empty(len(images), dtype=np.int64)
    t0 = time.perf_counter()
    starts = pool.feeding(range(0, len(images), CHUNK))
    for start, top in ordered_map(argmax, starts, plan.workers):
        preds[start : start + len(top)] = top
        if tick is not None:
            tick(start + len(top))
    seconds = time.perf_counter() - t0
    how = f"{pool.first.runtime}, {plan}, edge_runtime Classifier"
    return Evaluation(label, preds, labels, seconds, how, threads, pool.first.class_names)
