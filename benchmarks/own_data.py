"""Own data at scale: decode speed, cache size, training speed and peak memory of a run on a
folder of image files, against the IDX path on the same images.

    python -m fmnist_edge.benchmarks.own_data --images 100000 --size 64 --color rgb
    python -m fmnist_edge.benchmarks.own_data --write-only photos --images 2000

It writes Fashion-MNIST's training images (cycled when more are asked for, each copy shifted a
pixel so no two files are alike) as PNGs into class folders under the class names' slugs,
upscaled to --size and, for rgb, tinted per class; then, each in a fresh process so its peak RSS
is its own: (1) prepare() with an empty decode cache (decode), (2) prepare() again (the cache),
(3) --epochs of --arch on the folder (`fmnist-train --data`; the median epoch is timed),
and (4) the same on the IDX files at 28x28 (no --data). JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fmnist_edge.common.labels import CLASS_NAMES
from fmnist_edge.common.machine import cpu_model, usable_cores

_TINTS = np.array(  # a colour per class, so an RGB set has colour worth learning
    [
        [1.0, 0.6, 0.6],
        [0.6, 1.0, 0.6],
        [0.6, 0.6, 1.0],
        [1.0, 1.0, 0.5],
        [0.5, 1.0, 1.0],
        [1.0, 0.5, 1.0],
        [0.8, 0.8, 0.8],
        [1.0, 0.8, 0.5],
        [0.5, 0.8, 1.0],
        [0.9, 0.6, 0.9],
    ]
)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_folder(root: Path, n: int, size: int, color: str, data_dir: str | None = None) -> Path:
    """``n`` Fashion-MNIST training images as PNGs in ``root/<class>/``."""
    from PIL import Image

    from fmnist_edge.dataset.files import load_split

    train = load_split("train", data_dir)
    for name in CLASS_NAMES:
        (root / slug(name)).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        k = i % len(train.labels)
        image = np.roll(train.images[k], i // len(train.labels), axis=1)  # copies differ
        label = int(train.labels[k])
        img = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR)
        if color == "rgb":
            tinted = np.asarray(img, np.float32)[..., None] * _TINTS[label]
            img = Image.fromarray(np.clip(tinted, 0, 255).astype(np.uint8))
        img.save(root / slug(CLASS_NAMES[label]) / f"{i:06d}.png", compress_level=1)
    return root


_PREPARE = """
import json, resource, sys, time
from fmnist_edge.dataset.prepare import DataSpec, prepare
t = time.perf_counter()
data = prepare(DataSpec(sys.argv[1], image_size=int(sys.argv[2]), color=sys.argv[3]))
seconds = time.perf_counter() - t
n = len(data.train) + len(data.val)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"images": n, "seconds": seconds, "images_per_s": n / seconds,
                  "peak_rss_mib": rss}))
"""


def _run(cmd: list[str], env: dict[str, str], work: Path) -> tuple[str, float, float]:
    """stdout, wall seconds, and this child's own peak RSS in MiB (from wait4)."""
    with open(work / "out.txt", "w+") as out, open(work / "err.txt", "w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise SystemExit(
                f"{' '.join(cmd[:4])} ...: exit {proc.returncode}\n{err.read()[-2000:]}"
            )
        return out.read(), wall, usage.ru_maxrss / 1024


def _fit_speed(out_dir: Path) -> float:
    metrics = json.loads((out_dir / "metrics.json").read_text())
    return float(metrics["images_per_s"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--color", choices=["gray", "rgb"], default="rgb")
    p.add_argument("--arch", default="tiny")
    p.add_argument("--epochs", type=int, default=3, help="of each training run (median timed)")
    p.add_argument("--work", type=Path, default=None, help="where files go (default: a temp dir)")
    p.add_argument("--write-only", type=Path, default=None, help="only write the folder here")
    p.add_argument("--no-train", action="store_true", help="decode and cache only")
    a = p.parse_args(argv)
    color = "grayscale" if a.color == "gray" else "rgb"
    if a.write_only is not None:
        if a.write_only.exists():
            raise SystemExit(f"error: {a.write_only}: already exists")
        write_folder(a.write_only, a.images, a.size, color)
        print(f"{a.write_only}: {a.images:,} {a.size}x{a.size} {a.color} PNGs in 10 class folders")
        return
    work = Path(a.work or tempfile.mkdtemp(prefix="own-data-bench-"))
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    folder = work / "images"
    try:
        t = time.perf_counter()
        write_folder(folder, a.images, a.size, color)
        written = time.perf_counter() - t
        files_mib = sum(f.stat().st_size for f in folder.rglob("*.png")) / 2**20
        prepare = [sys.executable, "-c", _PREPARE, str(folder), str(a.size), color]
        rows = {}
        for step in ("decode", "cached"):
            out, wall, _ = _run(prepare, env, work)
            rows[step] = {**json.loads(out), "wall_s": round(wall, 1)}
        cache_mib = sum(f.stat().st_size for f in (work / "cache").rglob("*")) / 2**20
        result = {
            "cpu": cpu_model(),
            "cores": usable_cores(),
            "images": a.images,
            "size": a.size,
            "color": a.color,
            "files_mib": round(files_mib, 1),
            "write_s": round(written, 1),
            "cache_mib": round(cache_mib, 1),
            **rows,
        }
        if not a.no_train:
            train = [
                sys.executable,
                "-m",
                "fmnist_edge.train.cli",
                "--arch",
                a.arch,
                "--epochs",
                str(a.epochs),
            ]
            for name, extra in (
                (
                    "train_folder",
                    ["--data", str(folder), "--image-size", str(a.size), "--color", a.color],
                ),
                ("train_idx", []),
            ):
                out_dir = work / name
                _, wall, rss = _run([*train, *extra, "--out", str(out_dir)], env, work)
                result[name] = {
                    "wall_s": round(wall, 1),
                    "fit_images_per_s": round(_fit_speed(out_dir)),
                    "peak_rss_mib": round(rss),
                }
        print(json.dumps(result, indent=2))
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
