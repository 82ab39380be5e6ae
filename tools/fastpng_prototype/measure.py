"""Measure the C decode prototype (fastpng.c) against fmnist-infer's defaults: whole processes
on a folder of 10,000 Fashion-MNIST test PNGs, alternating, each against the bare interpreter
bound measured on both sides of it (as benchmarks/infer_folder.py does).

    python -m tools.fastpng_prototype.measure [--rounds 6]

It compiles fastpng.c with gcc (Python's headers and zlib's needed) into a temporary folder;
the prototype's fmnist-infer is the usual one with batch._classify_chunk replaced, files the C
code does not take going through the runtime's own to_array.
"""

from __future__ import annotations

import argparse
import filecmp
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from importlib import resources
from pathlib import Path

from fmnist_edge.benchmarks.coldstart import infer_argv, run_process
from fmnist_edge.benchmarks.infer_folder import bound, bracketed, write_folders
from fmnist_edge.common.machine import usable_cores
from fmnist_edge.dataset.files import load_split
from fmnist_edge.edge_runtime.classifier import BUNDLED_MODEL

HERE = Path(__file__).resolve().parent
PATCHED = """
import sys
sys.path.insert(0, {build!r})
import numpy as np
import fastpng
from fmnist_edge.common.errors import ImageError
from fmnist_edge.edge_runtime import batch as B

def chunk(pool, items, mode, top_k, limits=None):
    (h, w), color = pool.first.image_size, pool.first.color
    paths = [it.path for it in items if it.ok]
    x = np.empty((len(items), *pool.first.image_shape), np.uint8)
    status = fastpng.decode_into(paths, x, h, w) if paths and color == "grayscale" else b""
    out, n, k = [], 0, 0
    for it in items:
        if it.ok:
            if k < len(status) and status[k] == 0:
                x[n] = x[k]
                n += 1
            else:
                try:
                    B.to_array(it.path, mode, (h, w), color, limits=limits, out=x[n])
                    n += 1
                except ImageError as exc:
                    it = B.Outcome(it.path, error=str(exc))
            k += 1
        out.append(it)
    if not n:
        return out
    with pool.borrow() as clf:
        preds = iter(clf.predict_batch(x[:n], mode="raw", top_k=top_k))
    return [B.Outcome(o.path, prediction=next(preds)) if o.ok else o for o in out]

B._classify_chunk = chunk
from fmnist_edge.edge_runtime.cli import main
sys.argv[0] = "fmnist-infer"
main()
"""


def build(out: Path) -> None:
    """fastpng.c -> out/fastpng<EXT_SUFFIX>, with gcc."""
    target = out / f"fastpng{sysconfig.get_config_var('EXT_SUFFIX')}"
    cmd = ["gcc", "-O2", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}"]
    subprocess.run([*cmd, str(HERE / "fastpng.c"), "-lz", "-o", str(target)], check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args(argv)
    test = load_split("test").images
    model = Path(str(resources.files("fmnist_edge.edge_runtime") / BUNDLED_MODEL))
    with tempfile.TemporaryDirectory(prefix="fastpng-") as tmp:
        root = Path(tmp)
        build(root)
        folder = write_folders(test, [args.images], root)[args.images]
        cmds = {
            "defaults": infer_argv(folder, "--submission", root / "defaults.csv"),
            "C decode": [
                sys.executable,
                "-c",
                PATCHED.format(build=str(root)),
                str(folder),
                "--submission",
                str(root / "c.csv"),
            ],
        }
        pyc = root / "pycache"
        for cmd in cmds.values():  # compile the modules once, as an install has them
            run_process(cmd, bytecode=pyc)
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cmds}
        before = bound(model, test, usable_cores())
        for r in range(args.rounds):
            for name in list(cmds)[:: 1 if r % 2 == 0 else -1]:
                proc = run_process(cmds[name], bytecode=pyc)
                if proc.returncode != 0:
                    raise SystemExit(f"{name} failed: {proc.stderr}")
                after = bound(model, test, usable_cores())
                best = bracketed(before, after)
                before = after
                cpu = (proc.cpu_seconds or 0.0) * 1000 / args.images
                results[name].append((args.images / proc.seconds / best, proc.seconds, cpu))
        same = filecmp.cmp(root / "defaults.csv", root / "c.csv", shallow=False)
    for name, runs in results.items():
        ratios = " ".join(f"{r[0]:.3f}" for r in runs)
        print(
            f"{name}: ratio to the bound {statistics.median(r[0] for r in runs):.3f} on the "
            f"median ({ratios}); {statistics.median(r[1] for r in runs):.2f} s; "
            f"{statistics.median(r[2] for r in runs):.3f} CPU ms per image"
        )
    print(f"the same submission: {same}")


if __name__ == "__main__":
    main()
