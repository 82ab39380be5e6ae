"""``run_benchmark(cfg) -> Report``: find the models, score them on the test set, time them on
every runtime and thread count, cross-check with LiteRT's tool, start fmnist-infer cold, plot,
and write report.md + report.json.

Device mode (no TensorFlow, e.g. a Raspberry Pi) skips the Keras reference and tf.lite and
never imports TensorFlow: everything it touches is numpy, edge_runtime and a TFLite runtime.
"""

from __future__ import annotations

import datetime
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.errors import ModelError, RuntimeUnavailable
from fmnist_edge.edge_runtime.hints import save_hint

from . import (
    accuracy,
    coldstart,
    latency,
    litert_tool,
    machine,
    markdown,
    report,
    runtime_table,
    runtimes,
    silicon,
)
from .config import RUNTIMES, BenchConfig
from .evaluate import evaluate_keras, evaluate_tflite
from .inputs import (
    EXPORT_FORMATS,
    ModelFile,
    describe_keras,
    describe_tflite,
    evaluation_set,
    export_missing,
    find_models,
    format_order,
    input_dtype,
    unique_labels,
)
from .inputs import model_size as count_model
from .plots import slug, write_plots  # matplotlib is imported only inside the plots
from .progress import Silent

ProgressFactory = Callable[..., Any]  # Bar(label, total) -> a context manager with .update(n)


@dataclass(frozen=True)
class Report:
    data: dict[str, Any]  # what report.json holds
    json_path: Path
    md_path: Path

    def summary(self) -> str:
        """The terminal's table, and the line saying when another runtime is faster here."""
        hint = (self.data.get("runtime_table") or {}).get("hint")
        table = markdown.summary_table(self.data["results"])
        return f"{table}\n\n{hint}" if hint else table


# --- helpers ------------------------------------------------------------------------------------


def _subset(n: int, cfg: BenchConfig) -> np.ndarray:
    """Indices into the test set: all, or a seeded random --quick subset (sorted)."""
    if not cfg.quick or cfg.quick_samples >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(cfg.seed).choice(n, cfg.quick_samples, replace=False))


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _keras_threads(usable: int) -> int:
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads() or usable


# --- the benchmark ------------------------------------------------------------------------------


@dataclass
class _Models:
    keras: ModelFile | None  # the float reference (None in device mode or when absent)
    tflite: list[ModelFile]
    labels: list[str]  # each .tflite's format, unique


def _resolve(cfg: BenchConfig, device: bool, notes: list[str], progress) -> _Models:
    """The models to measure; exports float32/float16/int8 first when a run has no .tflite."""
    keras_path, tflite_paths = find_models(cfg)
    if keras_path is not None and device and not tflite_paths:
        raise ModelError(
            f"{cfg.run_dir or keras_path}: no .tflite to measure, and device mode cannot export "
            f"{keras_path.name} (that needs TensorFlow: run fmnist-export where it is installed)"
        )
    if keras_path is not None and device:
        notes.append(f"device mode: Keras reference {keras_path} not run (no TensorFlow)")
        keras_path = None
    if not tflite_paths and keras_path is not None and cfg.export_missing:
        target = Path(cfg.run_dir if cfg.run_dir is not None else cfg.out_dir / "models")
        target.mkdir(parents=True, exist_ok=True)
        # a minute for a large model: a step per format, and a note saying which one is on
        with progress(f"exporting {', '.join(EXPORT_FORMATS)}", len(EXPORT_FORMATS)) as bar:
            bar.update(0, f"loading {keras_path.name}, then {EXPORT_FORMATS[0]}")
            tflite_paths = export_missing(cfg, keras_path, target, tick=bar.update)
        notes.append(f"no .tflite found: exported {', '.join(p.name for p in tflite_paths)}")
    if keras_path is None and not tflite_paths:
        where = cfg.run_dir if cfg.run_dir is not None else "the given paths"
        raise ModelError(f"{where}: no model found (model.keras or *.tflite)")
    models = sorted((describe_tflite(Path(p)) for p in tflite_paths), key=format_order)
    keras = describe_keras(keras_path) if keras_path is not None else None
    return _Models(keras, models, unique_labels(models))


@dataclass(frozen=True)
class _Timed:
    format: str
    model: ModelFile
    runtime: str
    threads: int
    latency: latency.Latency


def _time_all(cfg, ms: _Models, keras_model, image, use, notes, progress) -> list[_Timed]:
    """Batch-1 latency of every (format, runtime, threads): Keras predict first."""
    timed: list[_Timed] = []
    if keras_model is not None and "keras" in use:
        threads = _keras_threads(machine.usable_cores())
        warmup = max(2, min(cfg.warmup, 5))  # the first predict traces the graph: seconds
        with progress("keras predict, batch 1", cfg.keras_runs) as bar:
            lat = latency.time_keras(
                keras_model, image, runs=cfg.keras_runs, warmup=warmup, tick=bar.update
            )
        timed.append(_Timed("keras", ms.keras, "keras", threads, lat))
        notes.append(
            f"Keras predict runs on TensorFlow's own thread pool ({threads} threads), "
            f"{cfg.keras_runs} timed calls"
        )
    for m, label in zip(ms.tflite, ms.labels, strict=True):
        for rt in (n for n in use if n not in ("keras", "openvino")):  # openvino: the table
            for t in cfg.threads:
                with progress(f"{label} on {rt}, {t} thread{'s' * (t > 1)}", cfg.runs) as bar:
                    lat = latency.time_tflite(
                        rt,
                        m.path,
                        t,
                        image,
                        runs=cfg.runs,
                        warmup=cfg.warmup,
                        scale=m.scale,
                        offset=m.offset,
                        tick=bar.update,
                    )
                timed.append(_Timed(label, m, rt, t, lat))
    return timed


def _rows(timed: list[_Timed], evals, comparisons, size, infos) -> list[dict[str, Any]]:
    """report.json's flat rows: one per timing, with its format's accuracy numbers."""
    keras_p50 = next((t.latency.p50 for t in timed if t.runtime == "keras"), None)
    rows = []
    for t in timed:
        cmp, ev, stats = comparisons.get(t.format), evals.get(t.format), t.latency.summary()
        rows.append(
            {
                "format": t.format,
                "runtime": t.runtime,
                "threads": t.threads,
                "accuracy": None if ev is None else ev.accuracy,
                "drop_pp": None if cmp is None else cmp.drop_pp,
                "agreement": None if cmp is None else cmp.agreement,
                "p50_ms": stats["p50_ms"],
                "p90_ms": stats["p90_ms"],
                "p99_ms": stats["p99_ms"],
                "images_per_s": t.latency.images_per_s,
                "size_bytes": t.model.size_bytes,
                "runtime_version": infos[t.runtime].version,
                "batch": 1,
                **{k: stats[k] for k in ("mean_ms", "min_ms", "max_ms", "runs", "warmup")},
                "speedup_vs_keras": keras_p50 / stats["p50_ms"] if keras_p50 else None,
                "params": size["params"],
                "macs": size["macs"],
                "file": str(t.model.path),
            }
        )
    return rows


def _tool_rows(cfg, ms: _Models, rows, notes, progress) -> list[dict[str, Any]]:
    """LiteRT's benchmark tool on every .tflite and thread count, beside our ai-edge-litert
    numbers for the same file and threads."""
    if not cfg.litert_tool or not ms.tflite:
        return []
    if not litert_tool.available():
        notes.append("LiteRT's benchmark tool not found: cross-check skipped")
        return []
    out = []
    for m, label in zip(ms.tflite, ms.labels, strict=True):
        with progress(f"{label}: LiteRT benchmark tool", len(cfg.threads)) as bar:
            for i, t in enumerate(cfg.threads):
                res = {"format": label, **litert_tool.run_tool(m.path, t, cfg.runs, cfg.warmup)}
                ours = [
                    r
                    for r in rows
                    if (r["format"], r["runtime"], r["threads"]) == (label, "ai-edge-litert", t)
                ]
                if ours:
                    res["ours_p50_ms"], res["ours_mean_ms"] = ours[0]["p50_ms"], ours[0]["mean_ms"]
                    if res.get("median_ms"):
                        res["ratio_median"] = ours[0]["p50_ms"] / res["median_ms"]
                out.append(res)
                bar.update(i + 1)
    return out


def _cold_start(cfg, ms: _Models, image, out_dir: Path, progress) -> dict[str, Any]:
    """fmnist-infer one.png, a new process each time, for every .tflite; and an empty Python."""
    if not cfg.cold_start_reps or not ms.tflite:
        return {}
    if not coldstart.fmnist_infer_available():
        return {"skipped": "fmnist_edge.edge_runtime.cli (fmnist-infer) is not installed"}
    if not _module_available("PIL"):
        return {"skipped": "pillow is not installed (needed to write one.png)"}
    png = coldstart.write_png(image, out_dir / "one.png")
    reps = cfg.cold_start_reps
    out: dict[str, Any] = {"image": png.name, "runs": []}
    with progress("cold start of fmnist-infer", reps * (len(ms.tflite) + 1)) as bar:
        out["python_baseline"] = coldstart.python_baseline(reps)
        for i, (m, label) in enumerate(zip(ms.tflite, ms.labels, strict=True)):
            cmd = coldstart.infer_command(m.path, png)
            res = coldstart.cold_start(cmd, reps, f"fmnist-infer {png.name} --model {m.path}")
            out["runs"].append({"format": label, **res})
            bar.update((i + 2) * reps)
    return out


def _runtime_table(cfg, ms: _Models, evals, reference, images, labels, use, size, notes, progress):
    """The CPU's limits, then each .tflite on LiteRT and OpenVINO, interleaved (runtime_table)."""
    edge = [n for n in (runtime_table.BASE, "openvino") if n in use]
    if not cfg.runtime_rounds or not ms.tflite or runtime_table.BASE not in edge:
        return {}
    with progress("this CPU's int8 and float32 limits (a large convolution, numpy's sgemm)", 1):
        limits = silicon.calibrate(cfg.calibration_seconds)
    macs = size["macs"] or runtime_table.count_macs(ms.tflite[0].path)
    with progress(f"runtime table: {', '.join(edge)}", 1):
        rows = runtime_table.measure(
            ms.tflite,
            ms.labels,
            images,
            labels,
            {lbl: evals[lbl].preds for lbl in ms.labels},
            evals[reference].preds if reference else None,
            edge,
            cfg.threads,
            limits,
            macs,
            rounds=cfg.runtime_rounds,
            batch1_runs=cfg.runs,
            batches=2 if cfg.quick else 10,  # of 256 images, per runtime and round
        )
    out = {"rows": rows, "limits": limits, "macs": macs}
    hints = [
        runtime_table.runtime_hint(rows, lbl, m.path.read_bytes())
        for m, lbl in zip(ms.tflite, ms.labels, strict=True)
    ]
    try:  # for fmnist-infer --verbose, which never measures (edge_runtime/hints.py)
        out["hints_file"] = str([save_hint(h) for h in hints][-1])
    except OSError as exc:
        notes.append(f"runtime hints not saved for fmnist-infer --verbose: {exc}")
    faster = [h.line for h in hints if h.runtime]
    out["hint"] = "\n".join(faster) if faster else None
    return out


def _openvino_rows(table_rows, ms: _Models, evals, reference, infos) -> list[dict[str, Any]]:
    """The runtime table's OpenVINO rows as rows of the summary (batch 1, as the others)."""
    ref = evals.get(reference)
    size = {lbl: m.size_bytes for m, lbl in zip(ms.tflite, ms.labels, strict=True)}
    return [
        {
            "format": r["format"],
            "runtime": r["runtime"],
            "threads": r["threads"],
            "accuracy": r["accuracy"],
            "drop_pp": None if ref is None else 100 * (ref.accuracy - r["accuracy"]),
            "agreement": r["agreement"],
            **{k: r[k] for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "runs")},
            "images_per_s": 1000.0 / r["mean_ms"],
            "size_bytes": size[r["format"]],
            "runtime_version": infos[r["runtime"]].version,
            "batch": 1,
            "batch_images_per_s": r["batch_images_per_s"][1],
        }
        for r in table_rows
        if r["runtime"] == "openvino"
    ]


def run_benchmark(cfg: BenchConfig, progress: ProgressFactory = Silent) -> Report:
    """Measure every model of ``cfg`` and write the report folder; returns what was written."""
    device = cfg.device if cfg.device is not None else not runtimes.tensorflow_available()
    infos = {name: runtimes.probe(name, device) for name in RUNTIMES}
    use = [n for n in RUNTIMES if n in cfg.runtimes and infos[n].available]
    notes = [f"{n} not measured: {infos[n].reason}" for n in cfg.runtimes if n not in use]
    ms = _resolve(cfg, device, notes, progress)
    edge = [n for n in use if n in runtimes.EDGE_RUNTIMES]
    if ms.tflite and not edge:
        raise RuntimeUnavailable(
            "no TF-free TFLite runtime to score the .tflite files: pip install ai-edge-litert"
        )
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    load_at_start = machine.load_average()

    evalset = evaluation_set(cfg, ms.tflite)
    ids = _subset(len(evalset.labels), cfg)
    images, labels = evalset.images[ids], evalset.labels[ids]
    names = evalset.class_names
    image = images[0]  # the batch-1 latency input: a real test image

    # accuracy: the Keras reference (batched predict), then each .tflite through edge_runtime
    evals: dict[str, accuracy.Evaluation] = {}
    keras_model = None
    if ms.keras is not None:
        from fmnist_edge.common.kerasfile import load_keras  # imports keras: never in device mode

        with progress(f"loading {ms.keras.path.name}", 1):
            keras_model = load_keras(ms.keras.path)
        with progress("keras accuracy (batched predict)", len(images)) as bar:
            evals["keras"] = evaluate_keras(
                keras_model, images, labels, cfg.keras_batch, bar.update, names
            )
    for m, label in zip(ms.tflite, ms.labels, strict=True):
        with progress(f"{label} accuracy", len(images)) as bar:
            evals[label] = evaluate_tflite(
                m.path, label, images, labels, max(cfg.threads), edge[0], bar.update
            )
    size = count_model(cfg.run_dir, keras_model)
    f32 = [lbl for m, lbl in zip(ms.tflite, ms.labels, strict=True) if m.format == "float32"]
    reference = "keras" if "keras" in evals else (f32[0] if f32 else None)
    comparisons = {}
    if reference is None:
        notes.append("no float reference (Keras or float32 .tflite): no drop or agreement")
    else:
        comparisons = {lbl: accuracy.compare(evals[reference], ev) for lbl, ev in evals.items()}

    timed = _time_all(cfg, ms, keras_model, image, use, notes, progress)
    rows = _rows(timed, evals, comparisons, size, infos)
    samples = {f"{t.format} | {t.runtime} | {t.threads}t": t.latency.times_ms for t in timed}
    table = _runtime_table(cfg, ms, evals, reference, images, labels, use, size, notes, progress)
    rows += _openvino_rows(table.get("rows", []), ms, evals, reference, infos)
    tool = _tool_rows(cfg, ms, rows, notes, progress)
    cold = _cold_start(cfg, ms, image, out_dir, progress)
    plots: list[str] = []
    if cfg.plots and not _module_available("matplotlib"):
        notes.append("matplotlib is not installed: no plots")
    elif cfg.plots:
        with progress("plots", 1):
            plots = write_plots(out_dir, rows, samples, evals, comparisons, reference, images, cfg)

    acc_json = {}
    for lbl, ev in evals.items():
        acc_json[lbl] = accuracy.to_dict(ev, comparisons.get(lbl), ids)
        if f"changed_{slug(lbl)}.png" in plots:
            acc_json[lbl]["changed_plot"] = f"changed_{slug(lbl)}.png"
    all_models = ([ms.keras] if ms.keras else []) + ms.tflite
    all_labels = (["keras"] if ms.keras else []) + ms.labels
    subset = (
        evalset.split
        if len(ids) == len(evalset.labels)
        else f"--quick: {len(ids)} random images of {evalset.split}, seed {cfg.seed}"
    )
    data = {
        "format": report.FORMAT,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source": str(cfg.run_dir or ", ".join(str(m.path) for m in all_models)),
        "mode": "device (no TensorFlow: TFLite runtimes only)" if device else "full",
        "reference": reference,
        "machine": {**machine.machine_info(), "load_average_at_start": load_at_start},
        "runtimes": [
            {"name": i.name, "available": i.available, "version": i.version, "reason": i.reason}
            for i in infos.values()
        ],
        "data": {
            "source": evalset.source,
            "sha256": evalset.sha256,
            "images": int(len(ids)),
            "subset": subset,
            "class_names": list(names),
        },
        "models": [
            {
                "format": lbl,
                "file": str(m.path),
                "size_bytes": m.size_bytes,
                **size,
                "input_dtype": input_dtype(m),
            }
            for m, lbl in zip(all_models, all_labels, strict=True)
        ],
        "results": rows,
        "side_by_side": report.side_by_side(rows, tool),
        "accuracy": acc_json,
        "litert_tool": tool,
        "runtime_table": table,
        "cold_start": cold,
        "plots": plots,
        "notes": notes,
        "config": cfg.to_dict(),
    }
    json_path, md_path = report.write_report(data, out_dir)
    return Report(data=report.jsonable(data), json_path=json_path, md_path=md_path)
