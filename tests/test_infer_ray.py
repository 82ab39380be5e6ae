"""fmnist-infer --engine ray on a real local Ray instance (one for the module, 2 CPUs): the local
engine's labels and scores on 2,000 official test images as PNGs, in the same order, and a bad
image mid-folder gets its one line while the rest are classified. Slow (Ray starts in seconds):
tests/conftest.py marks the module."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner
from PIL import Image

from fmnist_edge.common.errors import ModelError
from fmnist_edge.edge_runtime.batch import classify_inputs
from fmnist_edge.edge_runtime.cli import main
from fmnist_edge.edge_runtime.threads import InterpreterPool, plan_threads

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
BAD = "01000a-truncated.png"


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module: the engine uses it as it finds it."""
    ray.init(
        address="local",  # never a cluster this machine happens to know of
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, fmnist_test):
    out = tmp_path_factory.mktemp("ray_folder")
    for i, pixels in enumerate(fmnist_test.images[:2000]):
        Image.fromarray(pixels).save(out / f"{i:05d}.png")
    good = (out / "01000.png").read_bytes()
    (out / BAD).write_bytes(good[: len(good) // 2])
    return out


def test_ray_gives_the_local_engines_outcomes(local_ray, folder):
    from fmnist_edge.edge_runtime.ray_engine import classify_on_ray

    local = list(classify_inputs(InterpreterPool.for_plan(plan_threads()), [folder], top_k=3))
    on_ray = list(classify_on_ray([folder], top_k=3))
    assert len(on_ray) == 2001 and sum(o.ok for o in on_ray) == 2000
    assert on_ray == local  # paths, order, labels, top-3 scores to the last bit, the error
    (bad,) = [o for o in on_ray if not o.ok]
    assert bad.error.startswith(f"{folder / BAD}: corrupt or truncated") and "\n" not in bad.error


def test_the_command_on_ray_prints_what_the_local_engine_prints(local_ray, folder, tmp_path):
    subs = tmp_path / "local.csv", tmp_path / "ray.csv"
    args = [str(folder / "019*.png"), str(folder / BAD), "--top-k", "2"]  # a glob and a file
    local = CliRunner().invoke(main, [*args, "--submission", str(subs[0])])
    on_ray = CliRunner().invoke(main, [*args, "--submission", str(subs[1]), "--engine", "ray"])
    assert (local.exit_code, on_ray.exit_code) == (1, 1)
    assert on_ray.stdout == local.stdout and len(on_ray.stdout.splitlines()) == 100
    assert on_ray.stderr == local.stderr
    assert local.stderr.startswith(f"error: {folder / BAD}: ") and local.stderr.count("\n") == 1
    assert subs[1].read_text() == subs[0].read_text()


def test_a_model_the_actors_cannot_read_stops_the_run_in_one_line(local_ray, folder, tmp_path):
    """The driver checks --model first; a node that cannot read it (no shared file system)
    fails in its actor, and that failure comes back as one ModelError naming the file."""
    from fmnist_edge.edge_runtime.ray_engine import classify_on_ray

    missing = tmp_path / "only-on-the-driver.tflite"
    with pytest.raises(ModelError) as info:
        list(classify_on_ray([folder / "00000.png"], model=str(missing)))
    assert str(info.value) == f"Ray: {missing}: model file not found"
