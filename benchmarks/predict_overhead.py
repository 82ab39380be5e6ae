"""What Classifier.predict adds over a bare interpreter call (goal: at most 10%).

    python -m fmnist_edge.benchmarks.predict_overhead [--model M.tflite] [--windows 30] \
        [--calls 100]

Both sides classify the same official test image with one thread: the bare side does only
set_tensor + invoke + get_tensor on an input it prepared once; predict does everything a user
gets (input checks, quantization, dequantization, ranking). Windows of calls alternate
between the two so that background load hits both alike; the fastest window of each counts.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def measure(model: str | None, windows: int, calls: int) -> dict[str, float]:
    from fmnist_edge.dataset.files import load_split
    from fmnist_edge.edge_runtime.classifier import Classifier

    image = load_split("test").images[0]  # (28, 28) uint8
    clf = Classifier(model, threads=1)
    interp = clf._runtime.interpreter_class(model_content=clf.model._content, num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    x = clf._input(image[None]).reshape(inp["shape"])  # prepared once, outside the timing

    def bare() -> None:
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        interp.get_tensor(out["index"])

    def predict() -> None:
        clf.predict(image, mode="raw", top_k=3)

    timings: dict[str, list[float]] = {"bare": [], "predict": []}
    for fn in (bare, predict):  # warm-up
        for _ in range(calls):
            fn()
    for _ in range(windows):
        for name, fn in (("bare", bare), ("predict", predict)):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            timings[name].append((time.perf_counter() - t0) / calls * 1e6)
    bare_us, predict_us = min(timings["bare"]), min(timings["predict"])
    return {
        "runtime": clf.runtime,
        "bare_us": bare_us,
        "predict_us": predict_us,
        "overhead_pct": 100.0 * (predict_us / bare_us - 1.0),
        "bare_median_us": float(np.median(timings["bare"])),
        "predict_median_us": float(np.median(timings["predict"])),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a .tflite (default: the bundled model)")
    parser.add_argument("--windows", type=int, default=30)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args(argv)
    r = measure(args.model, args.windows, args.calls)
    print(
        f"bare invoke {r['bare_us']:.1f} us, Classifier.predict {r['predict_us']:.1f} us: "
        f"+{r['overhead_pct']:.1f}% (medians {r['bare_median_us']:.1f} / "
        f"{r['predict_median_us']:.1f} us; {r['runtime']}, 1 thread, fastest window)"
    )


if __name__ == "__main__":
    main()
