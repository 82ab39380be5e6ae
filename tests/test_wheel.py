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


def _installed(wheel: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A fresh venv with ``wheel`` installed and tensorflow and keras made unimportable: its
    folder, and the environment to run it in."""
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
    return env_dir, {"PYTHONPATH": str(blocker), "PATH": f"{env_dir / 'bin'}:/usr/bin:/bin"}


def _classify_examples(
    env_dir: Path, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(env_dir / "bin" / "fmnist-infer"), "-v", "--json", str(REPO / "docs" / "examples")],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,  # not the checkout: nothing of it may be imported
        timeout=120,
    )


def test_wheel_classifies_without_tensorflow(wheel, tmp_path):
    assert wheel.name.endswith("-py3-none-any.whl")  # any machine's, the emulated Pi's
    env_dir, env = _installed(wheel, tmp_path)
    py = env_dir / "bin" / "python"
    proc = _classify_examples(env_dir, env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "decode: Pillow (the C decode is not built)" in proc.stderr
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


def test_a_wheel_built_here_carries_the_c_decode_and_gives_the_same_results(
    wheel, tmp_path_factory
):
    """A wheel built without FMNIST_EDGE_PURE: the C decode where this machine built it for the
    editable install too (a compiler, Python's headers and zlib's), and the pure wheel's
    results."""
    from fmnist_edge.edge_runtime import fastpng

    work = tmp_path_factory.mktemp("native-wheel")
    native = build_project_wheel(work, work / "build.log", pure=False)
    built = [n for n in zipfile.ZipFile(native).namelist() if "/_fastpng." in n]
    assert bool(built) == fastpng.AVAILABLE, built
    if not built:
        pytest.skip("no C compiler, Python headers or zlib headers here: the pure wheel only")
    results = {}
    for name, which in (("pure", wheel), ("native", native)):
        env_dir, env = _installed(which, work / name)
        proc = _classify_examples(env_dir, env, work)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[name] = proc.stdout
        if name == "native":
            assert "decode: C for plain gray PNGs of the model's size" in proc.stderr
    assert results["native"] == results["pure"]
