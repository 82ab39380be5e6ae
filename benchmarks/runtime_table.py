"""Each .tflite on each edge runtime (LiteRT, OpenVINO), interleaved: batch-1 latency, batched
images/s, accuracy and agreement with LiteRT, and the fraction of this CPU's measured limit
(silicon.py) that the batched images/s reach.

For every (format, threads) the runtimes take turns, round after round, the order alternating,
so that a change in the machine's load falls on all of them; a round times ``batch1_runs``
batch-1 calls (set the input, run, read the output) and ``batches`` batches of 256. Each round
gives every runtime's ratio to LiteRT; the median and range over rounds are reported. LiteRT's
batch of 256 is one invoke of a bare interpreter resized to 256 (as infer_folder's bound);
OpenVINO's is the engine fmnist-infer uses for folders (THROUGHPUT hint, the batch split over
its streams' infer requests).
"""

from __future__ import annotations

import datetime
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.edge_runtime.classifier import Classifier, open_model, read_model_bytes
from fmnist_edge.edge_runtime.hints import RuntimeHint, machine_key, model_sha256
from fmnist_edge.edge_runtime.interpreter import load_runtime

from .inputs import ModelFile
from .markdown import table
from .runtimes import BatchInterpreter

BATCH = 256
BASE = "ai-edge-litert"


def count_macs(path: Path) -> int | None:
    """Multiply-accumulates of one image, counted on OpenVINO's graph of the .tflite: every
    (Group)Convolution and MatMul; None without openvino."""
    try:
        import openvino as ov
    except ImportError:
        return None
    model = ov.Core().read_model(str(path))
    model.reshape({model.inputs[0]: [1, *list(model.inputs[0].get_partial_shape())[1:]]})
    macs = 0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in ("Convolution", "GroupConvolution", "MatMul"):
            out = int(np.prod(list(op.get_output_shape(0))))
            weights = list(op.get_input_shape(1))
            if kind == "Convolution":  # [O, I, kh, kw]: each output sums I * kh * kw products
                per = int(np.prod(weights[1:]))
            elif kind == "GroupConvolution":  # [G, O/G, I/G, kh, kw]
                per = int(np.prod(weights[2:]))
            else:
                per = int(op.get_input_shape(0)[-1])
            macs += out * per
    return macs


class _Engine:
    """One runtime's batch-1 call and batch-256 call on a .tflite with ``threads`` threads."""

    def __init__(self, runtime: str, model: ModelFile, threads: int, x: np.ndarray):
        content, name = read_model_bytes(model.path)
        rt = load_runtime(runtime)
        self.one = open_model(content, name, rt, threads, "latency")
        if runtime == "openvino":
            self.many = open_model(content, name, rt, threads, "throughput")
        else:  # TFLiteModel.run splits at 64: a bare interpreter takes the 256 in one invoke
            self.many = BatchInterpreter(runtime, model.path, threads, BATCH)
        self.x = x  # (N, H, W[, C]) already in the input dtype

    def batch1(self, i: int) -> None:
        self.one.run(self.x[i : i + 1])

    def batched(self, i: int) -> None:
        self.many.run(self.x[i * BATCH : (i + 1) * BATCH])


def _round(engine: _Engine, batch1_runs: int, batches: int) -> tuple[np.ndarray, float]:
    """(batch-1 call times in ms, batch-256 images/s) of one round."""
    times = np.empty(batch1_runs)
    for i in range(batch1_runs):
        t0 = time.perf_counter()
        engine.batch1(i)
        times[i] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(batches):
        engine.batched(i)
    return 1000.0 * times, batches * BATCH / (time.perf_counter() - t0)


def _span(values: list[float]) -> list[float]:
    return [min(values), statistics.median(values), max(values)]


def measure(
    models: list[ModelFile],
    labels: list[str],
    images: np.ndarray,
    truth: np.ndarray,
    litert_preds: dict[str, np.ndarray],
    reference_preds: np.ndarray | None,
    runtimes: list[str],
    threads: tuple[int, ...],
    limits: dict[str, Any],
    macs: int | None,
    rounds: int = 3,
    batch1_runs: int = 200,
    batches: int = 10,
) -> list[dict[str, Any]]:
    """The table's rows: one per (format, runtime, threads). ``litert_preds``: each format's
    LiteRT predictions (the bench's accuracy pass); ``reference_preds``: the float reference's
    (Keras or float32), for the agreement that the bench's own rows report."""
    need = max(batches * BATCH, batch1_runs)
    pixels = np.resize(images, (need, *images.shape[1:]))  # the test images, again if too few
    rows = []
    for m, label in zip(models, labels, strict=True):
        precision = "int8" if m.format.startswith("int8") else "float32"
        accuracy = {}
        for rt in runtimes:  # each runtime's own predictions, through the Classifier
            clf = Classifier(m.path, runtime=rt, workload="throughput")
            preds = clf.predict_proba(images).argmax(axis=1)
            ref = None if reference_preds is None else float(np.mean(preds == reference_preds))
            accuracy[rt] = (
                float(np.mean(preds == truth)),
                float(np.mean(preds == litert_preds[label])),
                ref,
            )
        x = clf.input_tensor(pixels)  # the input tensor's values, as every runtime takes them
        for t in threads:
            engines = {rt: _Engine(rt, m, t, x) for rt in runtimes}
            for e in engines.values():  # warm-up
                _round(e, 10, 1)
            got: dict[str, list[tuple[float, float]]] = {rt: [] for rt in runtimes}
            for r in range(rounds):
                for rt in runtimes if r % 2 == 0 else runtimes[::-1]:
                    got[rt].append(_round(engines[rt], batch1_runs, batches))
            base = [(float(np.median(g[0])), g[1]) for g in got.get(BASE, [])]
            for rt in runtimes:
                mine = [(float(np.median(g[0])), g[1]) for g in got[rt]]
                ips = [g[1] for g in mine]
                times = np.concatenate([g[0] for g in got[rt]])
                limit = limits.get(precision, {}).get(str(t))
                median_ips = statistics.median(ips)
                pairs = list(zip(mine, base or mine, strict=True))
                rows.append(
                    {
                        "format": label,
                        "runtime": rt,
                        "threads": t,
                        "accuracy": accuracy[rt][0],
                        "agreement_with_litert": accuracy[rt][1],
                        "agreement": accuracy[rt][2],  # with the float reference
                        **{f"p{q}_ms": float(np.percentile(times, q)) for q in (50, 90, 99)},
                        "mean_ms": float(times.mean()),
                        "runs": int(times.size),
                        "batch1_p50_ms": _span([g[0] for g in mine]),
                        "batch1_p50_ratio": _span([a[0] / b[0] for a, b in pairs]),
                        "batch_images_per_s": _span(ips),
                        "batch_ratio": _span([a[1] / b[1] for a, b in pairs]),
                        "precision": precision,
                        "limit_macs_per_s": limit,
                        "fraction_of_limit": median_ips * macs / limit if macs and limit else None,
                    }
                )
    return rows


def runtime_hint(rows: list[dict[str, Any]], label: str, content: bytes) -> RuntimeHint:
    """What fmnist-infer --verbose says for the file of ``label`` (bytes ``content``) here: the
    runtime with the most batched images/s at the most threads measured, when it beats LiteRT
    by more than 10% (runtime None otherwise)."""
    mine = [r for r in rows if r["format"] == label]
    top = max(r["threads"] for r in mine)
    best = max((r for r in mine if r["threads"] == top), key=lambda r: r["batch_ratio"][1])
    ratio = best["batch_ratio"][1]
    faster = best["runtime"] != BASE and ratio > 1.1
    how = f"{label}, {top} thread{'s' * (top > 1)}, batches of {BATCH}"
    line = (
        f"{best['runtime']}: {ratio:.1f}x the images/s of {BASE} here ({how}), "
        f"{best['agreement_with_litert']:.2%} the same top-1; use --runtime {best['runtime']}"
        if faster
        else f"{BASE} was the fastest runtime measured here ({how})"
    )
    return RuntimeHint(
        model_sha256=model_sha256(content),
        machine=machine_key(),
        runtime=best["runtime"] if faster else None,
        ratio=round(ratio, 3),
        agreement=best["agreement_with_litert"],
        line=line,
        measured=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )


def to_markdown(rows: list[dict[str, Any]], limits: dict[str, Any], macs: int | None) -> str:
    """The runtime table, with the limits it is a fraction of."""

    def span(v: list[float], spec: str) -> str:
        return " / ".join(format(x, spec) for x in v)

    body = [
        [
            r["format"],
            r["runtime"],
            str(r["threads"]),
            f"{100 * r['accuracy']:.2f}%",
            f"{100 * r['agreement_with_litert']:.2f}%",
            span(r["batch1_p50_ms"], ".3f"),
            span(r["batch1_p50_ratio"], ".2f"),
            span(r["batch_images_per_s"], ",.0f"),
            span(r["batch_ratio"], ".2f"),
            "-" if r["fraction_of_limit"] is None else f"{100 * r['fraction_of_limit']:.0f}%",
        ]
        for r in rows
    ]
    head = [
        "format",
        "runtime",
        "threads",
        "accuracy",
        "same top-1 as LiteRT",
        "batch-1 p50 ms (min / median / max)",
        "p50 x LiteRT's",
        f"batch {BATCH} img/s",
        "img/s x LiteRT's",
        "of the limit",
    ]
    lims = "; ".join(
        f"{p} {t} thread{'s' * (int(t) > 1)} {rate / 1e9:,.1f} GMAC/s"
        for p in ("int8", "float32")
        for t, rate in sorted(limits.get(p, {}).items(), key=lambda kv: int(kv[0]))
    )
    count = f"{macs / 1e6:,.1f}M MACs an image" if macs else "MACs unknown: no fraction"
    return f"{table(head, body)}\n\nLimits (benchmarks/silicon.py): {lims or 'none'}; {count}."
