"""The distribution as a user gets it: a wheel built from this checkout owns one import name,
ships the bundled model and none of the repository's tools, and classifies images from a
fresh virtual environment in which TensorFlow cannot be imported. Offline: the venv installs
only the wheel and borrows numpy, Pillow and LiteRT from the environment the tests run in (the
user's venv, not the base Python behind it, which --system-site-packages would give)."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tools/ runs from a checkout and is never installed
from tools.pi.wheels import build_project_wheel  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel the emulated Pi installs, built the same way (tools/pi/wheels.py)."""
    work = tmp_path_factory.mktemp("wheel")
    return build_project_wheel(work, work / "build.log")


def test_wheel_owns_one_import_name_and_no_tools(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"fmnist_edge"}
    assert "fmnist_edge/edge_runtime/models/default.tflite" in names
    assert "fmnist_edge/edge_runtime/serve/static/index.html" in names  # fmnist-serve's page
    assert "fmnist_edge/benchmarks/pi_probe.py" in names  # what the emulated Pi runs
    assert not [n for n in names if "tools/" in n or "arm64" in n or "/tests/" in n]
    for part in ("common", "dataset", "edge_runtime", "train", "export", "benchmarks"):
        assert f"fmnist_edge/{part}/__init__.py" in names


def _site_dirs() -> list[str]:
    """The package folders this interpreter imports from: the user's venv's site-packages, and
    those it borrows (the base Python's, where it was made with --system-site-packages)."""
    return [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]


def test_wheel_classifies_without_tensorflow(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    (site,) = (env_dir / "lib").glob("python3*/site-packages")
    (site / "borrowed.pth").write_text("\n".join(_site_dirs()) + "\n")  # after the wheel's own
    pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps"]
    proc = subprocess.run([*pip, "--no-index", str(wheel)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    blocker = tmp_path / "no-tf"  # first on sys.path: `import tensorflow` fails, as on a Pi
    blocker.mkdir()
    for name in ("tensorflow", "keras"):
        (blocker / f"{name}.py").write_text(f"raise ImportError('no {name} on this device')\n")
    env = {"PYTHONPATH": str(blocker), "PATH": f"{env_dir / 'bin'}:/usr/bin:/bin"}
    examples = REPO / "docs" / "examples"
    proc = subprocess.run(
        [str(env_dir / "bin" / "fmnist-infer"), "--json", str(examples)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # not the checkout: nothing of it may be imported
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 10 and sum(r["label"] == "Ankle boot" for r in rows) == 1
    where = subprocess.run(
        [str(py), "-c", "import fmnist_edge, tools; print(fmnist_edge.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert "No module named 'tools'" in where.stderr  # the emulated-Pi machinery is not there
    probe = [str(py), "-c", "import fmnist_edge; print(fmnist_edge.__file__)"]
    out = subprocess.run(probe, capture_output=True, text=True, env=env, cwd=tmp_path).stdout
    assert out.startswith(str(env_dir))
    # the runtime packages are the ones the suite runs with, wherever the user installed them
    import ai_edge_litert
    import numpy
    import PIL

    code = "import PIL, numpy, ai_edge_litert as a; print(PIL.__file__, numpy.__file__, a.__file__)"
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env).stdout
    assert out.split() == [PIL.__file__, numpy.__file__, ai_edge_litert.__file__]
