"""Training throughput per architecture: images/s of fit() on real data, after a warm-up.

    python -m fmnist_edge.benchmarks.train_speed --arch edge-s --arch miniresnet --steps 30

Prints one line per arch and writes JSON with --json. Uses whatever backend and device Keras
would use for fmnist-train (KERAS_BACKEND=jax on the GPU machine).
"""

from __future__ import annotations

import argparse
import time


def measure(arch: str, steps: int, batch_size: int, warmup: int = 3) -> dict:
    import keras

    from fmnist_edge.common.pixels import to_model_input
    from fmnist_edge.dataset import load_split
    from fmnist_edge.train.device import detect
    from fmnist_edge.train.models import build_model, describe

    train = load_split("train")
    n = (steps + warmup) * batch_size
    x = to_model_input(train.images[:n])
    y = train.labels[:n]
    model = build_model(arch)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(x[: warmup * batch_size], y[: warmup * batch_size], batch_size=batch_size, verbose=0)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.fit(x[warmup * batch_size :], y[warmup * batch_size :], batch_size=batch_size, verbose=0)
    seconds = time.perf_counter() - t0
    return {
        "arch": arch,
        **describe(model),
        "device": detect().describe(),
        "backend": keras.config.backend(),
        "batch_size": batch_size,
        "steps": steps,
        "images_per_s": steps * batch_size / seconds,
        "warmup_seconds": compile_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args(argv)
    from fmnist_edge.common.machine import prefer_onednn

    prefer_onednn()  # as fmnist-train does, before TensorFlow's import
    rows = []
    for arch in args.arch:
        row = measure(arch, args.steps, args.batch_size)
        rows.append(row)
        print(
            f"{arch:12} {row['macs'] / 1e6:7.1f}M MACs {row['params']:>11,} params "
            f"{row['images_per_s']:8.1f} img/s  ({row['device']})",
            flush=True,
        )
    if args.json:
        from fmnist_edge.common.fileio import atomic_write_json

        atomic_write_json(args.json, rows)


if __name__ == "__main__":
    main()
