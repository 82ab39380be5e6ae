"""Test-time flip averaging (``--tta flip``) beside the plain model: accuracy on the official
test images and what it costs in latency. Reported on its own, never in the headline numbers.

    python -m fmnist_edge.benchmarks.tta [--model M.tflite] [--threads 1] [--json tta.json]

Each image is classified by the edge runtime's Classifier as fmnist-infer does; latency is one
image per call (a camera's case), the median of --repeats calls after a warm-up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fmnist_edge.common.errors import FmnistError

CHUNK = 500  # images per predict_proba call for the accuracy pass


def _latency_ms(clf, image: np.ndarray, repeats: int) -> float:
    for _ in range(10):
        clf.predict_proba(image)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        clf.predict_proba(image)
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def measure(
    model: str | None,
    threads: int,
    repeats: int,
    limit: int | None = None,
    data_dir: str | None = None,
) -> dict:
    """Accuracy, agreement and one-image latency with tta "none" and "flip"."""
    from fmnist_edge.common.machine import cpu_model
    from fmnist_edge.dataset import load_split
    from fmnist_edge.edge_runtime.classifier import Classifier

    test = load_split("test", data_dir)
    images, labels = test.images[:limit], test.labels[:limit]
    rows, preds = [], {}
    for tta in ("none", "flip"):
        clf = Classifier(model, threads=threads, tta=tta)
        t0 = time.perf_counter()
        proba = np.concatenate(
            [clf.predict_proba(images[i : i + CHUNK]) for i in range(0, len(images), CHUNK)]
        )
        seconds = time.perf_counter() - t0
        preds[tta] = np.argmax(proba, axis=1)
        rows.append(
            {
                "tta": tta,
                "accuracy": float(np.mean(preds[tta] == labels)),
                "p50_ms": _latency_ms(clf, images[:1], repeats),
                "images_per_s": len(images) / seconds,
            }
        )
    plain, flip = (preds["none"] == labels), (preds["flip"] == labels)
    return {
        "model": clf.name,
        "runtime": clf.runtime,
        "threads": threads,
        "cpu": cpu_model(),
        "images": len(labels),
        "rows": rows,
        "fixed": int(np.sum(flip & ~plain)),  # wrong without flip, right with it
        "broken": int(np.sum(plain & ~flip)),  # right without flip, wrong with it
    }


def render(r: dict) -> str:
    lines = [
        f"{r['model']} on {r['images']:,} test images; {r['runtime']}, {r['threads']} thread(s), "
        f"{r['cpu']}",
        "",
        "| tta | accuracy | p50 ms, one image | images/s, batches of 500 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['tta']} | {100 * row['accuracy']:.2f}% | {row['p50_ms']:.3f} "
            f"| {row['images_per_s']:,.0f} |"
        )
    lines += ["", f"flip fixed {r['fixed']} predictions and broke {r['broken']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a .tflite (default: the bundled model)")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads")
    parser.add_argument("--repeats", type=int, default=300, help="one-image calls timed")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX files")
    parser.add_argument("--json", default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    try:
        report = measure(args.model, args.threads, args.repeats, args.limit, args.data_dir)
    except FmnistError as exc:  # a missing or broken model, no dataset: one line
        parser.exit(exc.exit_code, f"error: {exc}\n")
    print(render(report))
    if args.json:
        from fmnist_edge.common.fileio import atomic_write_json

        atomic_write_json(args.json, report)


if __name__ == "__main__":
    main()
