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
import json, sys, time
from fmnist_edge.dataset.prepare import DataSpec, prepare
t = time.perf_counter()
data = prepare(DataSpec(sys.argv[1], image_size=int(sys.argv[2]), color=sys.argv[3]))
seconds = time.perf_counter() - t
n = len(data.train) + len(data.val)
print(json.dumps({"images": n, "seconds": round(seconds, 1), "images_per_s": round(n / seconds)}))
"""


def _status(pid: int) -> dict[str, int]:
    """RssAnon and RssFile (KiB) of a live process, from /proc (empty when it has gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {
        k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in lines) if k.startswith("Rss")
    }


def _run(cmd: list[str], env: dict[str, str], work: Path) -> dict:
    """Run ``cmd``; its stdout, wall seconds and peak memory in MiB: ``peak_rss_mib`` (wait4's
    maximum resident set) and, sampled every 0.1 s, the peak of its anonymous pages (heap,
    arrays: what it holds) and of its file-backed pages (the memory-mapped cache and libraries:
    the kernel's to drop under pressure)."""
    with open(work / "out.txt", "w+") as out, open(work / "err.txt", "w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        anon = file = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = _status(proc.pid)
            anon, file = max(anon, now.get("RssAnon", 0)), max(file, now.get("RssFile", 0))
            time.sleep(0.1)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            tail = err.read()[-2000:]
            raise SystemExit(f"{' '.join(cmd[:4])} ...: exit {proc.returncode}\n{tail}")
        return {
            "stdout": out.read(),
            "wall_s": round(wall, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024),
            "peak_anon_mib": round(anon / 1024),
            "peak_file_mib": round(file / 1024),
        }


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
    folder = work / f"images-{a.images}-{a.size}-{a.color}"
    try:
        t = time.perf_counter()
        if not folder.is_dir():  # --work keeps the files for a rerun
            write_folder(folder, a.images, a.size, color)
        written = time.perf_counter() - t
        for old in ("cache", "train_folder", "train_idx"):  # an earlier run's, with --work
            shutil.rmtree(work / old, ignore_errors=True)
        files_mib = sum(f.stat().st_size for f in folder.rglob("*.png")) / 2**20
        prepare = [sys.executable, "-c", _PREPARE, str(folder), str(a.size), color]
        rows = {}
        for step in ("decode", "cached"):
            run = _run(prepare, env, work)
            rows[step] = {**json.loads(run.pop("stdout")), **run}
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
                run = _run([*train, *extra, "--out", str(out_dir)], env, work)
                run.pop("stdout")
                result[name] = {**run, "fit_images_per_s": round(_fit_speed(out_dir))}
        print(json.dumps(result, indent=2))
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
