"""--runtime openvino: the same .tflite in OpenVINO, with the model's contract applied as with
LiteRT (the engine is real: these tests skip where openvino is not installed, except the ones
about a missing OpenVINO and the extras)."""

from __future__ import annotations

import configparser
import importlib.util
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fmnist_edge.common.errors import RuntimeUnavailable
from fmnist_edge.edge_runtime.classifier import Classifier
from fmnist_edge.edge_runtime.cli import main
from fmnist_edge.edge_runtime.interpreter import load_runtime
from fmnist_edge.edge_runtime.threads import InterpreterPool, plan_threads

REPO = Path(__file__).resolve().parents[1]
N = 500  # test images compared per model
# Tolerances against LiteRT. Float models: the same float32 arithmetic in another order.
# int8: oneDNN and XNNPACK round the requantization differently; on the bundled model the int8
# logits of the 10,000 test images differ by up to 11 LSB (LiteRT's own reference kernels differ
# from XNNPACK by as much), so a probability near a tie can move by up to 0.15, and 19 of 10,000
# top-1 labels differ.
FLOAT_ATOL = 1e-4
INT8_LSB = 16
INT8_AGREE = 0.99
INT8_MEAN_ABS = 0.005


def _pair(model: str | None) -> tuple[Classifier, Classifier]:
    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    return Classifier(model, runtime="ai-edge-litert"), Classifier(model, runtime="openvino")


def test_bundled_int8_model_matches_litert(fmnist_test):
    litert, ov = _pair(None)
    assert ov.runtime.startswith("openvino ") and ov.input_dtype == "int8" == litert.input_dtype
    x, y = fmnist_test.images[:N], fmnist_test.labels[:N]
    out_l, out_o = litert.output_tensor(x), ov.output_tensor(x)
    assert out_o.dtype == out_l.dtype == np.int8  # the compiled model takes the file's tensors
    assert np.abs(out_o.astype(int) - out_l.astype(int)).max() <= INT8_LSB
    p_l, p_o = litert.predict_proba(x), ov.predict_proba(x)
    assert p_o.dtype == np.float32 and np.allclose(p_o.sum(axis=1), 1, atol=1e-5)
    assert np.mean(p_o.argmax(1) == p_l.argmax(1)) >= INT8_AGREE
    assert np.abs(p_o - p_l).mean() <= INT8_MEAN_ABS
    acc_l, acc_o = np.mean(p_l.argmax(1) == y), np.mean(p_o.argmax(1) == y)
    assert acc_o > 0.9 and abs(acc_o - acc_l) <= 0.01
    assert ov.predict(x[0]).label == litert.predict(x[0]).label


@pytest.mark.parametrize("kind", ["float32", "float16"])
def test_float_models_match_litert(tiny_tflite, fmnist_test, kind):
    litert, ov = _pair(str(tiny_tflite[kind]))
    assert ov.input_dtype == "float32"
    x = fmnist_test.images[:N]
    p_l, p_o = litert.predict_proba(x), ov.predict_proba(x)
    np.testing.assert_allclose(p_o, p_l, atol=FLOAT_ATOL)
    assert np.array_equal(p_o.argmax(1), p_l.argmax(1))


def test_one_classifier_serves_threads_at_once(fmnist_test):
    """An OpenVINO Classifier compiled for throughput splits a batch over its streams' infer
    requests, and may be shared: each call borrows its own requests, so concurrent batches
    give what one thread gives."""
    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    clf = Classifier(runtime="openvino", threads=2, workload="throughput")
    assert clf.model.requests >= 1 and "THROUGHPUT hint" in clf.model.describe()
    x = fmnist_test.images[:256]
    want = np.concatenate([clf.output_tensor(x[s : s + 8]) for s in range(0, 256, 8)])
    assert np.array_equal(clf.output_tensor(x), want)  # split over requests or not: the same
    pool = InterpreterPool.for_plan(plan_threads(2, layout="threads"), runtime="openvino")
    pool.reserve(2)
    with pool.borrow() as one, pool.borrow() as two:  # the folder pool lends it to every worker
        assert one is two is pool.first and one.model.workload == "throughput"
    # a worker per core, and one more per infer request: they decode while the requests run
    runs = one.model.parallel_runs
    assert pool.size == 2 + runs and runs == one.model.requests
    got: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        got[i] = np.concatenate([clf.output_tensor(x[s : s + 64]) for s in range(0, 256, 64)])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(got) == [0, 1, 2, 3]
    for out in got.values():
        assert np.array_equal(out, want)


def test_a_latency_model_gives_single_images_the_batch_models_logits(fmnist_test):
    """Compiled for latency (the server's), an image at a time runs on a model compiled for
    a batch of one, and gets exactly the logits the model for any batch gives it."""
    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    clf = Classifier(runtime="openvino", threads=1)
    assert "LATENCY hint" in clf.model.describe()
    assert "compiled for one image" in clf.model.describe()
    x = fmnist_test.images[:64]
    batch = clf.output_tensor(x)
    singles = np.concatenate([clf.output_tensor(x[i : i + 1]) for i in range(len(x))])
    assert np.array_equal(singles, batch)
    throughput = Classifier(runtime="openvino", threads=1, workload="throughput")
    assert "compiled for one image" not in throughput.model.describe()


def test_fmnist_infer_runtime_openvino(tmp_path, fmnist_test):
    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    for i in range(5):
        Image.fromarray(fmnist_test.images[i]).save(tmp_path / f"{i}.png")
    runner = CliRunner()
    ov = runner.invoke(main, ["--runtime", "openvino", "--threads", "2", "-v", str(tmp_path)])
    assert ov.exit_code == 0, ov.output
    assert "runtime openvino " in ov.stderr and "THROUGHPUT hint" in ov.stderr
    litert = runner.invoke(main, [str(tmp_path)])
    labels = [line.split(": ")[1].split(" (")[0] for line in ov.stdout.splitlines()]
    assert labels == [line.split(": ")[1].split(" (")[0] for line in litert.stdout.splitlines()]


def _no_openvino(monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "openvino" or m.startswith("openvino.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "openvino", None)


def test_missing_openvino_is_one_line(monkeypatch, tmp_path):
    _no_openvino(monkeypatch)
    with pytest.raises(
        RuntimeUnavailable,
        match=r"^openvino is not installed \(.*\): "
        r"pip install openvino$",
    ):
        load_runtime("openvino")
    (tmp_path / "x.png").write_bytes(b"")
    result = CliRunner().invoke(main, ["--runtime", "openvino", str(tmp_path / "x.png")])
    assert result.exit_code == 2  # as a missing LiteRT: RuntimeUnavailable
    assert result.output.startswith("error: openvino is not installed (")
    assert result.output.count("\n") == 1


def test_auto_never_picks_openvino():
    assert load_runtime("auto").name != "openvino"
    assert load_runtime(None).name != "openvino"


def test_the_edge_extra_does_not_pull_openvino():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    extras = cfg["options.extras_require"]  # %(edge)s expanded, as setuptools does
    for name in ("edge", "serve", "ray"):
        assert "openvino" not in extras[name]
    assert "openvino>=2026.0" in extras["openvino"].split()
    assert "ai-edge-litert" in extras["openvino"].split()  # it reads the contract with LiteRT
    (line,) = [r for r in extras["all"].splitlines() if r.startswith("openvino")]
    assert 'platform_machine == "x86_64"' in line and 'platform_machine == "aarch64"' in line


# --- the runtime table and the hint it leaves for fmnist-infer --verbose ----------------------


def _bundled() -> Path:
    return REPO / "edge_runtime" / "models" / "default.tflite"


def test_verbose_says_what_fmnist_bench_measured_here(tmp_path, fmnist_test):
    from fmnist_edge.edge_runtime.hints import RuntimeHint, machine_key, model_sha256, save_hint

    Image.fromarray(fmnist_test.images[0]).save(tmp_path / "x.png")
    line = "openvino: 2.5x the images/s of ai-edge-litert here (...); use --runtime openvino"
    sha = model_sha256(_bundled().read_bytes())
    other = RuntimeHint(sha, "another CPU, 64 cores", "openvino", 3.0, 0.99, "elsewhere", "t")
    save_hint(other)  # another machine's measurement is never shown here
    runner = CliRunner()
    shown = runner.invoke(main, ["-v", str(tmp_path / "x.png")])
    assert "elsewhere" not in shown.stderr
    save_hint(RuntimeHint(sha, machine_key(), "openvino", 2.5, 0.9981, line, "2026-12-06"))
    shown = runner.invoke(main, ["-v", str(tmp_path / "x.png")])
    assert shown.exit_code == 0 and f"hint: {line} (fmnist-bench, 2026-12-06)" in shown.stderr
    quiet = runner.invoke(main, [str(tmp_path / "x.png")])  # without -v: not a word
    assert quiet.exit_code == 0 and "hint" not in quiet.stderr
    if importlib.util.find_spec("openvino"):  # already on the faster runtime: nothing to say
        same = runner.invoke(main, ["-v", "--runtime", "openvino", str(tmp_path / "x.png")])
        assert same.exit_code == 0 and f"hint: {line}" not in same.stderr


@pytest.mark.slow
def test_fmnist_bench_measures_the_runtime_table(tmp_path):
    """The wiring on the bundled model (the numbers themselves are docs/benchmarks.md's)."""
    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    from fmnist_edge.benchmarks.config import BenchConfig
    from fmnist_edge.benchmarks.runner import run_benchmark
    from fmnist_edge.edge_runtime.hints import find_hint

    cfg = BenchConfig.quick_defaults(
        tflite_paths=(_bundled(),),
        out_dir=tmp_path / "bench",
        quick_samples=300,
        runs=8,
        warmup=1,
        cold_start_reps=0,
        threads=(1, 2),
        litert_tool=False,
        plots=False,
        runtimes=("ai-edge-litert", "openvino"),
        calibration_seconds=0.1,
    )
    rep = run_benchmark(cfg)
    table = rep.data["runtime_table"]
    assert table["limits"]["int8"]["1"] > 1e9 and table["limits"]["float32"]["2"] > 1e9
    assert 20e6 < table["macs"] < 40e6  # ResNet-20 on 28x28: 31.0M MACs an image
    got = {(r["runtime"], r["threads"]) for r in table["rows"]}
    assert got == {(rt, t) for rt in ("ai-edge-litert", "openvino") for t in (1, 2)}
    for r in table["rows"]:
        assert r["precision"] == "int8" and 0 < r["fraction_of_limit"] < 5
        assert r["agreement_with_litert"] >= 0.99 and r["accuracy"] > 0.9
        assert min(r["batch_images_per_s"]) > 0
    ov = [r for r in rep.data["results"] if r["runtime"] == "openvino"]
    assert [r["threads"] for r in ov] == [1, 2] and all(r["p50_ms"] > 0 for r in ov)
    assert "## Runtimes against the silicon" in rep.md_path.read_text()
    hint = find_hint(_bundled().read_bytes())  # whatever it measured, it was recorded
    assert hint is not None and hint.line in (table["hint"] or hint.line)
    assert (hint.runtime is None) == (table["hint"] is None)
