"""fmnist-infer on a folder of PNGs, as a whole process, against the bare batched interpreter
with every core: how much of this machine's interpreter speed a user gets.

    python -m fmnist_edge.benchmarks.infer_folder [--images 1000,10000,100000] [--reps 3] \
        [--model M.tflite] [--ray] [--runtime openvino] [--pillow] [--out infer_folder.json]

The folders hold the official test images as 28x28 PNGs (beyond 10,000, the same files again
as hard links), in a temporary folder removed at the end. Each rep measures, one after the
other on the same machine: the bound (a bare interpreter on the decoded images, batches of 256,
as one interpreter of N threads and as N interpreters of one thread), then for each folder
``fmnist-infer DIR --submission S`` with its defaults, the bound again, and ``--threads 1``
(wall time and peak RSS of the whole process; their Python modules compiled once, as an
install has them), then the folder pipeline in this process laid out both ways
(edge_runtime.threads: the measurement behind its default). A folder's ratios are to the bound
either side of its defaults run: each layout's mean of the two, the faster layout taken. The
median over reps is reported. ``--ray`` adds ``--engine ray`` on the
smallest folder, against the local engine. ``--runtime R`` adds ``fmnist-infer DIR --runtime R``
on every folder, next to the defaults (which of the two goes first alternates with the rep),
with the ratio of its images/s to the defaults', its labels' agreement with theirs and both
accuracies (from the submission files), and R's own bare bound (batches of 256, every core).
``--pillow`` adds fmnist-infer with the C decode off (fastpng: every image decoded by Pillow,
as an install without the extension runs), next to the defaults in the same way, against the
same bound. The in-process pipeline is measured that way in every rep.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import statistics
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.machine import cpu_model, usable_cores
from fmnist_edge.edge_runtime import fastpng
from fmnist_edge.edge_runtime.batch import classify_inputs
from fmnist_edge.edge_runtime.classifier import BUNDLED_MODEL
from fmnist_edge.edge_runtime.interpreter import ALL_RUNTIMES
from fmnist_edge.edge_runtime.threads import LAYOUTS, InterpreterPool, plan_threads

from .coldstart import infer_argv, run_process
from .machine import load_average
from .report import check_paths, print_and_save
from .runtimes import BatchInterpreter, dist_version

BATCH = 256  # the bound's batch
GOAL = {"images": 10_000, "ratio": 0.80}  # of the all-core bound, with the defaults


def write_folders(test: np.ndarray, sizes: list[int], root: Path) -> dict[int, Path]:
    """A folder of ``n`` PNGs for each size: the test images in order, then again (hard links
    to the first copies, or symlinks where the file system has none)."""
    from PIL import Image

    base = root / "png"
    base.mkdir()
    originals = []
    for i, pixels in enumerate(test[: max(sizes)]):
        originals.append(base / f"{i:05d}.png")
        Image.fromarray(pixels, mode="L").save(originals[-1])
    folders = {}
    for n in sizes:
        folders[n] = root / f"img{n}"
        folders[n].mkdir()
        for i in range(n):
            src, dst = originals[i % len(originals)], folders[n] / f"{i:06d}.png"
            try:
                os.link(src, dst)
            except OSError:
                os.symlink(src.resolve(), dst)
    return folders


def bound(model: Path, test: np.ndarray, cores: int) -> dict[str, float]:
    """Images/s of bare ai-edge-litert interpreters on ``test`` (decoded pixels), batches of
    256, every core: one interpreter of ``cores`` threads, and ``cores`` interpreters of one
    thread in as many Python threads (invoke releases the GIL); and the CPU milliseconds per
    image of each ("<layout>_cpu_ms")."""
    from fmnist_edge.edge_runtime.classifier import Classifier

    x = Classifier(str(model), threads=1).input_tensor(test)  # the input tensor's values
    batches = [x[s : s + BATCH] for s in range(0, len(x) - BATCH + 1, BATCH)]
    out = {}
    for layout in LAYOUTS:
        plan = plan_threads(cores, layout, source="cores")
        interps = [
            BatchInterpreter("ai-edge-litert", model, plan.threads, BATCH)
            for _ in range(plan.interpreters)
        ]
        for it in interps:
            it.run(batches[0])  # warm-up
        threads = [
            threading.Thread(target=_run, args=(it, batches[k :: len(interps)]))
            for k, it in enumerate(interps)
        ]
        start, cpu = time.perf_counter(), time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        n = len(batches) * BATCH
        out[layout] = n / (time.perf_counter() - start)
        out[f"{layout}_cpu_ms"] = (time.process_time() - cpu) * 1000.0 / n
    return out


def bracketed(before: dict[str, float], after: dict[str, float]) -> float:
    """The bound for a run measured between two bounds: each layout's mean of the two, the
    faster layout taken (this machine's speed drifts by 10-20% within a minute)."""
    return max((before[k] + after[k]) / 2 for k in LAYOUTS)


def _run(interp: BatchInterpreter, batches: list[np.ndarray]) -> None:
    for batch in batches:
        interp.run(batch)


def runtime_bound(runtime: str, model: Path, test: np.ndarray, cores: int) -> float:
    """Images/s of ``runtime``'s bare engine on ``test`` (decoded, in the input dtype), batches
    of 256 on every core, laid out as fmnist-infer lays it out (for openvino: one model compiled
    for throughput with every core's threads, shared by a thread per core)."""
    from fmnist_edge.edge_runtime.classifier import Classifier

    layout = "threads" if runtime == "openvino" else "interpreters"
    plan = plan_threads(cores, layout, source="cores")
    pool = InterpreterPool.for_plan(plan, str(model), runtime=runtime)
    pool.reserve(pool.size)
    clf: Classifier = pool.first
    x = clf.input_tensor(test)
    batches = [x[s : s + BATCH] for s in range(0, len(x) - BATCH + 1, BATCH)]
    clf.model.run(batches[0])  # warm-up

    def work(part: list[np.ndarray]) -> None:
        with pool.borrow() as mine:
            for batch in part:
                mine.model.run(batch)

    threads = [
        threading.Thread(target=work, args=(batches[k :: pool.size],)) for k in range(pool.size)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(batches) * BATCH / (time.perf_counter() - start)


def _labels(submission: Path) -> np.ndarray:
    """The class indices of a submission file (id,label rows, in file order)."""
    rows = submission.read_text().splitlines()[1:]
    return np.array([int(row.rsplit(",", 1)[1]) for row in rows])


def infer_process(
    folder: Path, n: int, sub: Path, model: Path | None, *extra: str, native: bool = True
) -> dict:
    """``fmnist-infer FOLDER --submission SUB [EXTRA]`` as a new process: wall, peak RSS. Its
    modules are compiled once, beside the folders (``_bytecode``), as an install has them.
    ``native=False``: the C decode off (coldstart.infer_argv)."""
    model_args = ["--model", model] if model else []
    argv = infer_argv(folder, "--submission", sub, *extra, *model_args, native=native)
    proc = run_process(argv, timeout=max(120.0, n / 50.0), bytecode=_bytecode(folder))
    if proc.returncode != 0:
        raise RuntimeError(f"fmnist-infer {' '.join(extra)} failed: {proc.stderr}")
    return {
        "seconds": proc.seconds,
        "images_per_s": n / proc.seconds,
        "rss_mib": proc.max_rss_mib,
        "cpu_ms": proc.cpu_seconds * 1000.0 / n,  # per image, start-up included
    }


def _bytecode(folder: Path) -> Path:
    """Where the children keep their compiled modules: in the temporary folder (removed with
    it), not in the checkout or site-packages."""
    return folder.parent / "pycache"


def layouts(folder: Path, n: int, model: Path | None, rep: int) -> dict[str, float]:
    """Images/s of the folder pipeline in this process (classify_inputs), each layout, and the
    default layout with every image decoded in Python ("pillow": without the C decode, as an
    install without a compiler runs); their order alternates with ``rep``, so that a load
    that rises or falls favours none."""
    runs = [(layout, layout, True) for layout in LAYOUTS]
    runs.append(("pillow", plan_threads().layout, False))
    out = {}
    for name, layout, native in runs[:: -1 if rep % 2 else 1]:
        pool = InterpreterPool.for_plan(plan_threads(usable_cores(), layout), model)
        start = time.perf_counter()
        outcomes = classify_inputs(pool, [folder], mode="auto", native=native)
        done = sum(1 for o in outcomes if o.ok)
        if done != n:
            raise RuntimeError(f"{n - done} images of {folder} failed")
        out[name] = n / (time.perf_counter() - start)
    return out


def measure(args: argparse.Namespace) -> dict:
    from fmnist_edge.dataset.files import load_split

    model = Path(args.model) if args.model else None
    model_file = model or Path(str(resources.files("fmnist_edge.edge_runtime") / BUNDLED_MODEL))
    split = load_split("test", args.data_dir)
    test, labels = split.images, split.labels
    cores = usable_cores()
    report: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": cores,
        "load_average_before": load_average(),
        "model": str(model_file),
        "ai_edge_litert": dist_version("ai-edge-litert"),
        "default_plan": plan_threads().to_dict(),
        "decode": fastpng.describe(),
        "runtime": args.runtime,
        "runtime_version": dist_version(args.runtime) if args.runtime else None,
        "images": args.images,
        "reps": [],
    }
    with tempfile.TemporaryDirectory(prefix="fmnist-infer-folder-") as tmp:
        root = Path(tmp)
        folders = write_folders(test, args.images, root)
        # a first run of each command compiles the modules its timed runs then load
        first = folders[min(folders)] / "000000.png"
        infer_process(first, 1, root / "warm-up.csv", model)
        if args.runtime:
            infer_process(first, 1, root / "warm-up.csv", model, "--runtime", args.runtime)
        for _ in range(args.reps):
            rep: dict[str, Any] = {"load_average": load_average()}
            before = bound(model_file, test[: args.bound_images], cores)
            rep["bounds"] = [before]
            if args.runtime:
                rep["runtime_bound"] = runtime_bound(
                    args.runtime, model_file, test[: args.bound_images], cores
                )
            for n, folder in folders.items():
                subs = root / f"default{n}.csv", root / f"one{n}.csv"
                other_sub = root / f"runtime{n}.csv"
                if args.runtime and len(report["reps"]) % 2:  # it goes first in odd reps
                    other = infer_process(folder, n, other_sub, model, "--runtime", args.runtime)
                if args.pillow and len(report["reps"]) % 2:  # the C decode off: first in odd reps
                    pillow = infer_process(folder, n, root / f"pillow{n}.csv", model, native=False)
                default = infer_process(folder, n, subs[0], model)
                if args.runtime and not len(report["reps"]) % 2:
                    other = infer_process(folder, n, other_sub, model, "--runtime", args.runtime)
                if args.pillow and not len(report["reps"]) % 2:
                    pillow = infer_process(folder, n, root / f"pillow{n}.csv", model, native=False)
                after = bound(model_file, test[: args.bound_images], cores)
                rep["bounds"].append(after)
                best = bracketed(before, after)
                before = after
                one = infer_process(folder, n, subs[1], model, "--threads", "1")
                same = filecmp.cmp(*subs, shallow=False)
                rep[str(n)] = {
                    "bound": best,
                    "defaults": {**default, "ratio": default["images_per_s"] / best},
                    "threads_1": {**one, "ratio": one["images_per_s"] / best},
                    "same_submission": same,
                }
                if args.pillow:
                    rep[str(n)]["pillow"] = {
                        **pillow,
                        "ratio": pillow["images_per_s"] / best,
                        "same_submission": filecmp.cmp(
                            subs[0], root / f"pillow{n}.csv", shallow=False
                        ),
                    }
                if args.runtime:
                    ours, theirs = _labels(subs[0]), _labels(other_sub)
                    truth = labels[np.arange(n) % len(labels)]
                    rep[str(n)]["runtime"] = {
                        **other,
                        "ratio_to_defaults": other["images_per_s"] / default["images_per_s"],
                        "ratio_to_its_bound": other["images_per_s"] / rep["runtime_bound"],
                        "agreement": float(np.mean(ours == theirs)),
                        "accuracy": float(np.mean(theirs == truth)),
                        "defaults_accuracy": float(np.mean(ours == truth)),
                    }
            rep["bound"] = {k: statistics.mean(b[k] for b in rep["bounds"]) for k in before}
            n0 = min(folders)
            if args.ray:
                ray = infer_process(folders[n0], n0, root / "ray.csv", model, "--engine", "ray")
                same = filecmp.cmp(root / f"default{n0}.csv", root / "ray.csv", shallow=False)
                rep["ray"] = {"images": n0, **ray, "same_submission": same}
            n1 = max([n for n in folders if n <= 10_000] or [n0])  # in-process: 10,000 at most
            rep["layouts"] = layouts(folders[n1], n1, model, len(report["reps"]))
            report["reps"].append(rep)
            print(f"rep {len(report['reps'])} of {args.reps} done", flush=True)
    report["load_average_after"] = load_average()
    report["summary"] = summarize(report)
    return report


def summarize(report: dict) -> dict:
    """Medians over the reps."""
    reps = report["reps"]
    out: dict[str, Any] = {
        "bound": {k: statistics.median([r["bound"][k] for r in reps]) for k in reps[0]["bound"]},
        "layouts": {
            k: statistics.median([r["layouts"][k] for r in reps]) for k in reps[0]["layouts"]
        },
    }
    for n in report["images"]:
        out[str(n)] = {
            how: {
                key: statistics.median([r[str(n)][how][key] for r in reps])
                for key in ("seconds", "images_per_s", "rss_mib", "ratio", "cpu_ms")
            }
            for how in ("defaults", "threads_1")
        }
        out[str(n)]["same_submission"] = all(r[str(n)]["same_submission"] for r in reps)
        if "pillow" in reps[0][str(n)]:
            runs = [r[str(n)]["pillow"] for r in reps]
            keys = ("seconds", "images_per_s", "rss_mib", "ratio", "cpu_ms")
            out[str(n)]["pillow"] = {k: statistics.median(r[k] for r in runs) for k in keys}
            out[str(n)]["pillow"]["same_submission"] = all(r["same_submission"] for r in runs)
    if report.get("runtime"):
        out["runtime_bound"] = statistics.median(r["runtime_bound"] for r in reps)
        for n in report["images"]:
            runs = [r[str(n)]["runtime"] for r in reps]
            keys = ("seconds", "images_per_s", "cpu_ms", "rss_mib", "ratio_to_its_bound")
            out[str(n)]["runtime"] = {k: statistics.median(r[k] for r in runs) for k in keys}
            ratios = [r["ratio_to_defaults"] for r in runs]
            out[str(n)]["runtime"]["ratio_to_defaults"] = [
                min(ratios),
                statistics.median(ratios),
                max(ratios),
            ]
            for k in ("agreement", "accuracy", "defaults_accuracy"):
                out[str(n)]["runtime"][k] = runs[0][k]  # the same files every rep
    if "ray" in reps[0]:
        ray = [r["ray"] for r in reps]
        out["ray"] = {k: statistics.median([r[k] for r in ray]) for k in ("seconds", "rss_mib")}
        out["ray"]["same_submission"] = all(r["ray"]["same_submission"] for r in reps)
    goal = out.get(str(GOAL["images"]))
    out["goal"] = {**GOAL, "met": bool(goal and goal["defaults"]["ratio"] >= GOAL["ratio"])}
    return out


def render(report: dict) -> str:
    s = report["summary"]
    b, lay = s["bound"], s["layouts"]
    lines = [
        f"CPU {report['cpu']}, {report['cores']} usable cores; load average "
        f"{report['load_average_before']} before, {report['load_average_after']} after; "
        f"ai-edge-litert {report['ai_edge_litert']}; {len(report['reps'])} reps, medians",
        f"bound, bare interpreter, batch {BATCH}, all {report['cores']} cores: "
        f"1 x {report['cores']} threads {b['threads']:,.0f} img/s ({b['threads_cpu_ms']:.3f} CPU "
        f"ms/img), {report['cores']} x 1 thread {b['interpreters']:,.0f} img/s "
        f"({b['interpreters_cpu_ms']:.3f} CPU ms/img); a folder's bound is the faster, "
        "each layout's mean of the runs either side of its defaults run",
        f"folder pipeline in-process: {report['cores']} interpreters x 1 thread "
        f"{lay['interpreters']:,.0f} img/s, 1 interpreter x {report['cores']} threads "
        f"{lay['threads']:,.0f} img/s (the default: {report['default_plan']['text']})"
        + (
            f"; every image decoded by Pillow {lay['pillow']:,.0f} img/s" if "pillow" in lay else ""
        ),
        f"decode: {report.get('decode', 'Pillow')}",
        "",
        "| images | defaults s | img/s | ratio to bound | CPU ms/img | peak RSS MiB "
        "| --threads 1 s | img/s | ratio | CPU ms/img | peak RSS MiB | same submission |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for n in report["images"]:
        d, o = s[str(n)]["defaults"], s[str(n)]["threads_1"]
        cells = [f"{n:,}"]
        for r in (d, o):
            cells += [
                f"{r['seconds']:.2f}",
                f"{r['images_per_s']:,.0f}",
                f"{r['ratio']:.2f}",
                f"{r['cpu_ms']:.3f}",
                f"{r['rss_mib']:.1f}",
            ]
        lines.append(f"| {' | '.join(cells)} | {s[str(n)]['same_submission']} |")
    for n in report["images"]:
        p = s[str(n)].get("pillow")
        if p:
            lines.append(
                f"\nthe C decode off (every image decoded by Pillow), {n:,} images, alternating "
                f"with the defaults: {p['seconds']:.2f} s, {p['images_per_s']:,.0f} img/s, ratio "
                f"to bound {p['ratio']:.2f}, {p['cpu_ms']:.3f} CPU ms/img, {p['rss_mib']:.1f} MiB; "
                f"same submission: {p['same_submission']}"
            )
    if "ray" in s:
        n0 = min(report["images"])
        lines.append(
            f"\n--engine ray on {n0:,} images: {s['ray']['seconds']:.1f} s (local engine "
            f"{s[str(n0)]['defaults']['seconds']:.2f} s), same submission: "
            f"{s['ray']['same_submission']}"
        )
    if report.get("runtime"):
        rt = report["runtime"]
        lines += [
            "",
            f"--runtime {rt} ({report['runtime_version']}); its bare bound, batch {BATCH}, "
            f"every core: {s['runtime_bound']:,.0f} img/s",
            "",
            f"| images | --runtime {rt} s | img/s | x defaults (min / median / max) | of its bound "
            "| CPU ms/img | peak RSS MiB | labels as defaults' | accuracy | defaults' accuracy |",
            "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for n in report["images"]:
            o = s[str(n)]["runtime"]
            lines.append(
                f"| {n:,} | {o['seconds']:.2f} | {o['images_per_s']:,.0f} | "
                f"{' / '.join(f'{v:.2f}' for v in o['ratio_to_defaults'])} | "
                f"{o['ratio_to_its_bound']:.2f} | {o['cpu_ms']:.3f} | {o['rss_mib']:.1f} | "
                f"{o['agreement']:.2%} | {o['accuracy']:.2%} | {o['defaults_accuracy']:.2%} |"
            )
    goal = s["goal"]
    key = str(goal["images"])
    per_rep = [rep[key]["defaults"]["ratio"] for rep in report["reps"] if key in rep]
    lines.append(
        f"\ngoal (defaults >= {goal['ratio']:.2f} of the bound on {goal['images']:,} PNGs): "
        + ("met" if goal["met"] else "not met" if key in s else "not measured")
        + (f" (the median of {', '.join(f'{r:.3f}' for r in per_rep)})" if per_rep else "")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="1000,10000,100000", help="folder sizes")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (medians reported)")
    parser.add_argument("--model", default=None, help="a .tflite (default: the bundled model)")
    parser.add_argument("--bound-images", type=int, default=10_000, help="test images timed bare")
    parser.add_argument("--ray", action="store_true", help="also --engine ray, smallest folder")
    parser.add_argument(
        "--runtime", choices=ALL_RUNTIMES, default=None, help="also fmnist-infer --runtime R"
    )
    parser.add_argument(
        "--pillow",
        action="store_true",
        help="also fmnist-infer with the C decode off, right after each defaults run",
    )
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX files")
    parser.add_argument("--out", default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    try:
        args.images = sorted({int(n) for n in args.images.split(",")})
    except ValueError:
        parser.error(f"--images {args.images!r}: comma-separated image counts, e.g. 1000,10000")
    if min(args.images) < 1 or args.reps < 1 or args.bound_images < BATCH:
        parser.error(f"--images and --reps must be >= 1, --bound-images >= {BATCH}")
    check_paths(parser, args)
    report = measure(args)
    print_and_save(render(report), report, args.out)


if __name__ == "__main__":
    main()
