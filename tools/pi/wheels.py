"""What the emulated Pi installs: aarch64 wheels downloaded by pip on the host (cached), and
fmnist-edge's own wheel built from this checkout. Also the scan that proves no TensorFlow got in.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from fmnist_edge.common.errors import UsageError

from .rootfs import EmulationError, run_process, safe_rmtree

REPO = Path(__file__).resolve().parents[2]
TFLITE_RUNTIME = "2.14.0"  # its last release: aarch64 wheels up to cp311, built for numpy 1
# Bookworm's glibc is 2.36; pip 23 only accepts the manylinux tags it is given.
PLATFORMS = [f"manylinux_2_{m}_aarch64" for m in range(36, 16, -1)] + ["manylinux2014_aarch64"]


def host_versions() -> dict[str, str]:
    try:
        return {n: metadata.version(n) for n in ("ai-edge-litert", "numpy", "pillow", "click")}
    except metadata.PackageNotFoundError as exc:
        raise UsageError(f"the host reference needs {exc.name}: pip install '.[edge]'") from None


SERVE_PACKAGES = ("starlette", "uvicorn", "python-multipart", "httptools")  # the [serve] extra


def serve_requirements() -> list[str]:
    """fmnist-serve's packages, at the host's versions where it has them (httptools: an aarch64
    cp311 wheel, the others pure Python)."""
    reqs = []
    for name in SERVE_PACKAGES:
        try:
            reqs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


def requirements(runtime: str, versions: dict[str, str]) -> list[str]:
    """What a Pi user installs for ``runtime``, pinned to the host's versions where they
    matter (the same interpreter for the bit-exact run, the same Pillow for JPEG decoding)."""
    common = [f"pillow=={versions['pillow']}", f"click=={versions['click']}"]
    if runtime == "ai-edge-litert":
        return [
            f"ai-edge-litert=={versions['ai-edge-litert']}",
            f"numpy=={versions['numpy']}",
            *common,
        ]
    return [f"tflite-runtime=={TFLITE_RUNTIME}", "numpy<2", *common]


def download_wheels(cache: Path, name: str, reqs: list[str], log: Path, arm64: bool = True) -> Path:
    """Wheels for ``reqs`` and their dependencies, cached by requirement set: aarch64 cp311
    ones for the emulated Pi, or (``arm64`` False) the host's own."""
    target_args = [
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        "--abi",
        "abi3",
        "--abi",
        "none",
    ]
    for tag in PLATFORMS:
        target_args += ["--platform", tag]
    if not arm64:
        target_args = []
    key = hashlib.sha256(json.dumps([reqs, target_args]).encode()).hexdigest()[:10]
    target = cache / "wheels" / f"{name}-{key}"
    if (target / ".complete").is_file():
        return target
    part = target.with_name(target.name + ".part")
    safe_rmtree(part)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--only-binary=:all:",
        *target_args,
        "-d",
        str(part),
        *reqs,
    ]
    with open(log, "ab") as out:
        proc = run_process(cmd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise EmulationError(f"pip download for {name} failed, see {log}")
    (part / ".complete").write_text("\n".join(sorted(p.name for p in part.glob("*.whl"))) + "\n")
    safe_rmtree(target)
    part.rename(target)
    return target


def host_venv(venv: Path, wheels: Path, reqs: list[str], log: Path) -> Path:
    """A host venv with ``reqs`` from ``wheels`` only (--isolated: no pip.conf constraint may
    turn numpy<2 away); returns its python. The host reference for tflite-runtime."""
    run_process([sys.executable, "-m", "venv", str(venv)], stdout=subprocess.DEVNULL)
    python = venv / "bin" / "python"
    with open(log, "ab") as out:
        proc = run_process(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--isolated",
                "-q",
                "--disable-pip-version-check",
                "--no-index",
                "--find-links",
                str(wheels),
                *reqs,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if proc.returncode:
        raise EmulationError(f"installing {' '.join(reqs)} into a host venv failed, see {log}")
    return python


def build_project_wheel(work: Path, log: Path, pure: bool = True) -> Path:
    """fmnist-edge's wheel from this checkout (tracked and untracked, not ignored, files; not
    a virtualenv made inside it, `python3 -m venv V`), built in a copy so the checkout gets no
    build/ or egg-info. ``pure``: without the C decode (setup.py's FMNIST_EDGE_PURE), a wheel
    for any machine, as the emulated Pi needs; else with it, built for this one."""
    src = work / "src"
    listing = run_process(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO)
    if listing.returncode or not listing.stdout:
        raise UsageError(f"{REPO}: not a git checkout, cannot list the project's files")
    names = [name for name in listing.stdout.decode().split("\0") if name]
    venvs = tuple(name[: -len("pyvenv.cfg")] for name in names if name.endswith("/pyvenv.cfg"))
    for name in names:
        if (REPO / name).is_file() and not (venvs and name.startswith(venvs)):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    (src / "README.md").touch()  # setup.cfg reads it as the long description
    dist = work / "dist"
    with open(log, "ab") as out:
        proc = run_process(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "-w",
                str(dist),
                str(src),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "FMNIST_EDGE_PURE": "1" if pure else "0"},
        )
    wheels = list(dist.glob("fmnist_edge-*.whl"))
    if proc.returncode or len(wheels) != 1:
        raise EmulationError(f"building the fmnist-edge wheel failed, see {log}")
    return wheels[0]


def installed_tensorflow(lib_dirs: list[Path]) -> list[str]:
    """TensorFlow or Keras packages in any ``LIB/python3*/{site,dist}-packages``."""
    found = []
    for lib in lib_dirs:
        for packages in lib.glob("python3*/*-packages"):
            found += [
                str(p)
                for p in packages.iterdir()
                if p.name.lower().startswith(("tensorflow", "tf_keras", "keras"))
            ]
    return found
