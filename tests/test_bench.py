"""benchmarks: the math on tiny arrays, then whole reports for the tiny model (``--quick``)."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fmnist_edge.benchmarks import (
    accuracy,
    coldstart,
    latency,
    litert_tool,
    machine,
    markdown,
    report,
)
from fmnist_edge.benchmarks.config import RUNTIMES, BenchConfig
from fmnist_edge.benchmarks.progress import Bar
from fmnist_edge.benchmarks.runner import run_benchmark
from fmnist_edge.common.errors import ModelError, UsageError

REPO = Path(__file__).resolve().parent.parent

# --- accuracy -----------------------------------------------------------------------------------


def _eval(fmt: str, preds, labels) -> accuracy.Evaluation:
    return accuracy.Evaluation(fmt, np.array(preds), np.array(labels), 0.5, "test", 1)


def test_accuracy_confusion_and_per_class():
    ev = _eval("float32", [0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 0])
    assert ev.accuracy == pytest.approx(4 / 6)
    cm = ev.confusion
    assert cm.shape == (10, 10) and cm.sum() == 6
    assert cm[2, 1] == 1 and cm[0, 2] == 1 and cm[2, 2] == 2  # rows true, columns predicted
    per_class = ev.per_class
    assert per_class[0] == 0.5 and per_class[1] == 1.0 and per_class[2] == pytest.approx(2 / 3)
    assert np.isnan(per_class[5])  # a class with no images
    assert ev.images_per_s == 12.0


def test_compare_drop_agreement_and_changed():
    labels = [0, 1, 2, 3]
    ref = _eval("keras", [0, 1, 2, 0], labels)  # 75%
    q = _eval("int8", [0, 1, 1, 3], labels)  # 75%, two predictions changed
    cmp = accuracy.compare(ref, q)
    assert cmp.drop_pp == pytest.approx(0.0)
    assert cmp.agreement == pytest.approx(0.5)
    assert cmp.changed.tolist() == [2, 3] and cmp.changed_from.tolist() == [2, 0]
    assert cmp.per_class_drop_pp[2] == pytest.approx(100.0)
    assert cmp.per_class_drop_pp[3] == pytest.approx(-100.0)
    assert cmp.confusion_diff.sum() == 0 and cmp.confusion_diff[2, 1] == 1
    record = accuracy.to_dict(q, cmp, image_ids=np.array([10, 11, 12, 13]))
    assert record["changed"] == [[12, 2, 2, 1], [13, 3, 0, 3]]  # test index, true, ref, new
    assert record["per_class"]["Sandal"] is None  # NaN is not JSON
    json.dumps(record)
    with pytest.raises(ValueError):
        accuracy.compare(ref, _eval("int8", [0, 1, 2], [0, 1, 2]))


# --- latency ------------------------------------------------------------------------------------


def test_time_calls_warms_up_then_times_each_call():
    calls = []
    lat = latency.time_calls(lambda: calls.append(1), runs=25, warmup=5)
    assert len(calls) == 30 and lat.runs == 25 and lat.warmup == 5
    assert 0 <= lat.times_ms.min() and lat.p50 <= lat.p90 <= lat.p99 <= lat.times_ms.max()
    assert lat.images_per_s == pytest.approx(1000 / lat.mean)
    assert set(lat.summary()) >= {"p50_ms", "p90_ms", "p99_ms", "mean_ms", "runs", "warmup"}


def test_percentiles_of_known_times():
    lat = latency.Latency(times_ms=np.arange(1, 101, dtype=float), warmup=0)
    assert lat.p50 == pytest.approx(50.5) and lat.p99 == pytest.approx(99.01)


# --- LiteRT's tool, the machine, the small pieces ---------------------------------------------

TOOL_OUTPUT = """
========================================
 BENCHMARK RESULTS
========================================
Model initialization:  1.81 ms
Warmup (first):        0.40 ms
Inference (avg):       2.43 ms (50 runs)
Inference (median):    2.41 ms
Inference (p5):        2.30 ms
Inference (p95):       2.71 ms
"""


def test_parse_litert_tool_output():
    assert litert_tool.parse_output(TOOL_OUTPUT) == {
        "init_ms": 1.81,
        "avg_ms": 2.43,
        "median_ms": 2.41,
        "p5_ms": 2.30,
        "p95_ms": 2.71,
    }


def test_cpu_model_on_x86_and_on_a_pi():
    from fmnist_edge.common import machine as common_machine

    assert machine.cpu_model is common_machine.cpu_model  # one function, reported by both
    x86 = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\ncpu cores\t: 2\n"
    assert machine.cpu_model(x86, board="") == "Intel(R) Xeon(R) Processor"
    zen3 = "processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n"
    zen3 += "flags\t\t: fpu sse2 avx avx2 fma\n"
    assert machine.cpu_model(zen3, board="") == "AMD EPYC (family 25 model 1, AVX2)"
    zen4 = zen3.replace(": 1\n", ": 17\n").replace("avx2", "avx2 avx512f avx512_vnni")
    assert machine.cpu_model(zen4, board="") == "AMD EPYC (family 25 model 17, AVX-512 VNNI)"
    pi = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n"
    assert machine.cpu_model(pi, board="Raspberry Pi 4 Model B Rev 1.4").startswith("Raspberry")
    assert "0xd08" in machine.cpu_model(pi, board="")
    pi_os = pi + "Revision\t: c03115\nModel\t\t: Raspberry Pi 4 Model B Rev 1.5\n"
    assert machine.cpu_model(pi_os, board="") == "Raspberry Pi 4 Model B Rev 1.5"
    info = machine.machine_info()
    assert {"cpu", "cores", "os", "python", "versions"} <= set(info)
    assert set(info["versions"]) >= {"numpy", "ai-edge-litert", "tflite-runtime"}


def test_config_rejects_nonsense():
    with pytest.raises(UsageError):
        BenchConfig()
    with pytest.raises(UsageError):
        BenchConfig(run_dir=Path("r"), threads=(0,))
    with pytest.raises(UsageError):
        BenchConfig(run_dir=Path("r"), runtimes=("onnx",))
    cfg = BenchConfig.quick_defaults(run_dir=Path("r"))
    assert cfg.quick and cfg.keras_runs <= 20
    json.dumps(cfg.to_dict())


def test_jsonable_and_table():
    assert report.jsonable({"a": np.float32(0.5), "b": [np.int64(3), math.nan]}) == {
        "a": 0.5,
        "b": [3, None],
    }
    text = markdown.table(["a", "bb"], [["1", "2"], ["333", "4"]])
    assert text.splitlines()[0] == "| a   | bb |"


def test_progress_bar_writes_one_line_when_not_a_tty():
    out = io.StringIO()
    with Bar("step", 10, stream=out) as bar:
        bar.update(5)
    assert out.getvalue().count("\n") == 1 and "10/10" in out.getvalue()


def test_cold_start_measures_the_child_not_the_parent():
    res = coldstart.cold_start([sys.executable, "-c", "pass"], reps=2)
    assert res["returncodes"] == [0, 0] and res["seconds_median"] > 0
    # this test process holds TensorFlow (hundreds of MiB): a fork would report that much
    assert res["max_rss_mib_median"] < 100
    failed = coldstart.cold_start([sys.executable, "-c", "import sys; sys.exit(3)"], reps=1)
    assert failed["returncodes"] == [3] and failed["seconds_median"] is None


# --- whole reports ------------------------------------------------------------------------------


def _quick(tmp_path: Path, **kw) -> BenchConfig:
    settings = dict(
        out_dir=tmp_path / "bench",
        quick_samples=300,
        runs=8,
        warmup=2,
        keras_runs=3,
        cold_start_reps=1,
        threads=(1, 2),
    )
    return BenchConfig.quick_defaults(**{**settings, **kw})


def _check_sane(data: dict) -> None:
    assert data["results"], "no rows"
    for row in data["results"]:
        assert set(report.ROW_KEYS) <= set(row), row
        assert row["runtime"] in RUNTIMES and row["threads"] >= 1
        assert 0.0 <= row["accuracy"] <= 1.0
        assert 0.0 <= row["agreement"] <= 1.0
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["images_per_s"] > 0 and row["size_bytes"] > 0
    assert {"cpu", "cores", "os", "python", "versions"} <= set(data["machine"])
    tflite_runtime = next(r for r in data["runtimes"] if r["name"] == "tflite-runtime")
    assert tflite_runtime["available"] is False and tflite_runtime["reason"]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, tiny_keras):
    """A run directory holding only model.keras, benchmarked once with --quick: fmnist-bench
    exports float32/float16/int8 into it first, then measures everything. (run dir, Report)"""
    tmp = tmp_path_factory.mktemp("bench")
    run = tmp / "run"
    run.mkdir()
    shutil.copy(tiny_keras, run / "model.keras")
    steps = _Steps()
    return run, run_benchmark(_quick(tmp, run_dir=run), progress=steps), steps


class _Steps:
    """A progress factory with the Bar's face that records what each step said."""

    def __init__(self):
        self.steps: list[dict] = []

    def __call__(self, label: str, total: int, **_):
        self.steps.append({"label": label, "total": total, "updates": []})
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def update(self, done: int, note: str | None = None) -> None:
        self.steps[-1]["updates"].append((done, note))


@pytest.fixture(scope="module")
def tflites(bench_run) -> dict[str, Path]:
    """format -> the .tflite that bench_run exported."""
    data = bench_run[1].data
    return {m["format"]: Path(m["file"]) for m in data["models"] if m["format"] != "keras"}


@pytest.mark.slow
def test_report_for_a_run_directory(bench_run):
    run, rep, _ = bench_run
    data = json.loads(rep.json_path.read_text())
    _check_sane(data)
    assert len(list(run.glob("*.tflite"))) == 3  # exported first: the run had none
    assert any("exported" in n for n in data["notes"])
    assert data["reference"] == "keras" and data["data"]["images"] == 300
    got = {(r["format"], r["runtime"], r["threads"]) for r in data["results"]}
    assert ("keras", "keras", data["results"][0]["threads"]) in got
    for fmt in ("float32", "float16", "int8"):
        for rt in ("ai-edge-litert", "tf.lite"):
            assert {(fmt, rt, 1), (fmt, rt, 2)} <= got
    assert data["results"][0]["params"] > 0 and data["results"][0]["macs"] > 0
    int8 = data["accuracy"]["int8"]
    assert len(int8["confusion_diff"]) == 10 and int8["changed_count"] == len(int8["changed"])
    assert set(int8["per_class_drop_pp"]) == set(int8["per_class"])
    assert data["accuracy"]["keras"]["drop_pp"] == 0.0
    assert any("Keras" in s["what"] for s in data["side_by_side"])


@pytest.mark.slow
def test_report_cross_checks_cold_start_and_plots(bench_run):
    _, rep, _ = bench_run
    data = rep.data
    tool = [t for t in data["litert_tool"] if t["format"] == "int8"]
    assert len(tool) == 2 and all(t.get("median_ms") is not None for t in tool), tool
    cold = data["cold_start"]
    assert {c["format"] for c in cold["runs"]} == {"float32", "float16", "int8"}
    assert all(c["returncodes"] == [0] for c in cold["runs"]), cold
    assert all(0 < c["max_rss_mib_median"] < 1000 for c in cold["runs"])
    for name in ("pareto.png", "latency.png", "confusion_diff_int8.png", "changed_int8.png"):
        assert (rep.json_path.parent / name).stat().st_size > 0
        assert name in data["plots"]
    md = rep.md_path.read_text()
    assert "## Summary" in md and "tflite-runtime" in md and "LiteRT's benchmark tool" in md
    assert rep.summary().splitlines()[0].startswith("| format")
    assert not list(rep.json_path.parent.glob(".*.tmp"))  # atomic writes left nothing behind


@pytest.mark.parametrize("fmt", ["float32", "float16", "int8"])
def test_time_tflite_on_a_bare_interpreter(tflites, fmnist_test, fmt):
    image = fmnist_test.images[0]
    lat = latency.time_tflite("ai-edge-litert", tflites[fmt], 1, image, runs=5, warmup=1)
    assert lat.runs == 5 and 0 < lat.p50 <= lat.p99


def test_litert_tool_runs(tflites):
    res = litert_tool.run_tool(tflites["int8"], threads=1, runs=5, warmup=1)
    assert "error" not in res, res
    assert res["avg_ms"] >= 0 and res["threads"] == 1


def test_no_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="no model found"):
        run_benchmark(_quick(tmp_path, run_dir=tmp_path))
    with pytest.raises(ModelError, match="no such run directory"):
        run_benchmark(_quick(tmp_path, run_dir=tmp_path / "missing"))
    (tmp_path / "model.keras").write_bytes(b"never loaded")
    with pytest.raises(ModelError, match="device mode cannot export"):
        run_benchmark(_quick(tmp_path, run_dir=tmp_path, device=True))


@pytest.mark.slow
def test_device_mode_never_imports_tensorflow(tmp_path, tflites):
    """A Pi: TensorFlow blocked, the Keras model present but skipped, TFLite rows only."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"not needed")
    for fmt in ("float32", "int8"):
        shutil.copy(tflites[fmt], run / f"tiny-{fmt}.tflite")
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        sys.modules["tensorflow"] = None
        sys.modules["keras"] = None
        from fmnist_edge.benchmarks.config import BenchConfig
        from fmnist_edge.benchmarks.runner import run_benchmark
        cfg = BenchConfig.quick_defaults(
            run_dir=Path({str(run)!r}), out_dir=Path({str(tmp_path / "bench")!r}),
            quick_samples=200, runs=5, warmup=1, cold_start_reps=0, threads=(1,),
            litert_tool=False, plots=False,
        )
        rep = run_benchmark(cfg)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")
                        and sys.modules[m] is not None)
        print(json.dumps({{"loaded": loaded, "mode": rep.data["mode"]}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [] and out["mode"].startswith("device")
    data = json.loads((tmp_path / "bench" / "report.json").read_text())
    _check_sane(data)
    # openvino's rows come from the runtime table, where it is installed
    assert {r["runtime"] for r in data["results"]} - {"openvino"} == {"ai-edge-litert"}
    assert data["reference"] == "float32" and "keras" not in data["accuracy"]
    assert any("device mode" in n for n in data["notes"])


def test_results_table_lays_out_the_reports(bench_run, tmp_path):
    """docs/results.md's generator: one row per format, numbers taken from report.json."""
    from click.testing import CliRunner

    from fmnist_edge.benchmarks import results

    _, rep, _ = bench_run
    data = rep.data
    md = results.results_markdown([("tiny", data), ("tiny again", data)])
    lines = [ln for ln in md.splitlines() if ln.startswith("| tiny")]
    assert len(lines) == 2 * 4  # Keras, float32, float16, int8 for each report
    int8 = next(r for r in data["results"] if r["format"] == "int8" and r["threads"] == 1)
    row = next(ln for ln in lines if "| int8" in ln)
    assert f"{100 * int8['accuracy']:.2f}%" in row and f"{int8['p50_ms']:.3f}" in row

    out = tmp_path / "results.md"
    cli = CliRunner().invoke(results.main, [f"tiny={rep.json_path.parent}", "--out", str(out)])
    assert cli.exit_code == 0 and out.read_text().count("| tiny") == 4
    bad = CliRunner().invoke(results.main, ["tiny"])
    assert bad.exit_code == 2 and "NAME=REPORT_DIR" in bad.output
    missing = CliRunner().invoke(results.main, [f"x={tmp_path / 'nowhere'}"])
    assert missing.exit_code == 1 and "no such report" in missing.output


def test_results_splice_keeps_the_prose_around_the_markers():
    from fmnist_edge.benchmarks.results import BEGIN, END, splice

    doc = f"# Results\nintro\n{BEGIN}\nold table\n{END}\noutro\n"
    new = splice(doc, "| new |\n")
    assert new == f"# Results\nintro\n{BEGIN}\n| new |\n{END}\noutro\n"
    with pytest.raises(ValueError, match="markers"):
        splice("no markers here", "| t |\n")


# --- --results never overwrites what a user wrote (issue 15, item 1) -------------------------

REPORT = {
    "results": [
        {"format": "int8", "runtime": "ai-edge-litert", "threads": 1, "accuracy": 0.9,
         "drop_pp": 0.1, "size_bytes": 1000, "macs": 5, "p50_ms": 0.25},
    ],
    "machine": {}, "source": "runs/x", "data": {"subset": "all"}, "created": "today",
}


def test_results_file_is_created_with_markers_then_only_between_them(tmp_path):
    from fmnist_edge.benchmarks.results import BEGIN, END, write_results

    doc = tmp_path / "results.md"
    write_results(doc, [("first", REPORT)])
    text = doc.read_text()
    assert text.startswith(f"{BEGIN}\n") and text.endswith(f"{END}\n") and "| first " in text
    doc.write_text(f"# Mine\n\n{text}\nwritten after\n")  # the user adds prose around it
    write_results(doc, [("second", REPORT)])
    text = doc.read_text()
    assert text.startswith(f"# Mine\n\n{BEGIN}\n") and text.endswith(f"{END}\n\nwritten after\n")
    assert "| second " in text and "| first " not in text
    (tmp_path / "empty.md").write_text("\n")  # nothing written in it: filled like a new file
    write_results(tmp_path / "empty.md", [("x", REPORT)])
    assert BEGIN in (tmp_path / "empty.md").read_text()


def test_results_format_keeps_only_those_rows(tmp_path):
    """--format: the README's short table (Keras and int8 rows) from the same reports."""
    from click.testing import CliRunner

    from fmnist_edge.benchmarks import results

    two = {**REPORT, "results": [
        {**REPORT["results"][0], "format": "keras", "runtime": "keras", "drop_pp": None},
        {**REPORT["results"][0], "format": "float16", "accuracy": 0.8},
        *REPORT["results"],
    ]}
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "report.json").write_text(json.dumps(two))
    doc = tmp_path / "README.md"
    doc.write_text(f"# Readme\n{results.BEGIN}\n{results.END}\nrest\n")
    args = [f"m={tmp_path / 'rep'}", "--out", str(doc), "--format", "keras", "--format", "int8"]
    ok = CliRunner().invoke(results.main, args)
    assert ok.exit_code == 0, ok.output
    rows = [ln for ln in doc.read_text().splitlines() if ln.startswith("| m ")]
    assert [r.split("|")[2].strip() for r in rows] == ["Keras float32", "int8"]
    assert doc.read_text().startswith("# Readme\n") and doc.read_text().endswith("rest\n")
    before = doc.read_text()
    bad = CliRunner().invoke(results.main, [*args[:3], "--format", "int4"])
    assert bad.exit_code == 2 and "--format int4: no report has it" in bad.output
    assert "float16, int8, keras" in bad.output and doc.read_text() == before


@pytest.mark.parametrize(
    "prose",
    ["# My notes\n\nwritten by hand\n", "<!-- results:begin -->\nonly one marker\n",
     "<!-- results:end -->\nreversed\n<!-- results:begin -->\n"],
)
def test_results_refuses_a_file_without_both_markers(tmp_path, prose):
    from click.testing import CliRunner

    from fmnist_edge.benchmarks import results

    doc = tmp_path / "mynotes.md"
    doc.write_text(prose)
    with pytest.raises(UsageError, match="markers") as info:
        results.write_results(doc, [("x", REPORT)])
    assert str(doc) in str(info.value) and "\n" not in str(info.value)
    assert doc.read_text() == prose and [p.name for p in tmp_path.iterdir()] == ["mynotes.md"]
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "report.json").write_text(json.dumps(REPORT))
    cli = CliRunner().invoke(results.main, [f"x={tmp_path / 'rep'}", "--out", str(doc)])
    assert cli.exit_code == 2 and cli.output.count("\n") == 1 and "--out" in cli.output
    assert doc.read_text() == prose


# --- long steps say what they are doing (issue 15, item 6) -----------------------------------


def test_the_export_step_counts_formats_and_names_each(bench_run):
    """fmnist-bench's export of a run without .tflite: a step per format, not 0/1 for a minute."""
    steps = bench_run[2].steps
    (export,) = [s for s in steps if "export" in s["label"]]
    assert export["total"] == 3
    done = [d for d, _ in export["updates"]]
    assert done == sorted(done) and done[-1] == 3 and {1, 2, 3} <= set(done)
    notes = " ".join(n or "" for _, n in export["updates"])
    for fmt in ("float32", "float16", "int8"):
        assert fmt in notes, export["updates"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_on_a_terminal_shows_the_note_and_keeps_its_clock_running():
    import time

    out = _Terminal()
    with Bar("exporting", 3, stream=out, tick=0.02) as bar:
        bar.update(1, note="converting float16")
        deadline = time.monotonic() + 10  # bounded: the clock redraws every 0.02 s
        while out.getvalue().count("converting float16") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert out.getvalue().count("converting float16") >= 3  # redrawn without an update
    last = out.getvalue().rsplit("\r", 1)[1]
    assert "3/3" in last and last.endswith("\n")  # finished: the clock stopped


def test_bar_in_a_log_writes_a_line_per_note():
    out = io.StringIO()
    with Bar("exporting", 3, stream=out) as bar:
        bar.update(1, note="float32 written")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "1/3" in lines[0] and "float32 written" in lines[0]
    assert "3/3" in lines[1]


def test_bar_keeps_the_note_within_a_terminal_line():
    bar = Bar("exporting float32, float16, int8", 3, stream=io.StringIO())
    bar.update(1, note="float32 written, now float16")
    line = bar._line(79)  # an 80-column terminal: the drawn bar goes, the note stays whole
    assert len(line) <= 79 and line.endswith(": float32 written, now float16")
    assert "1/3" in line and "[" not in line
    assert "[" in bar._line(200) and bar._line(200).endswith("now float16")


def test_tta_benchmark_reports_both_and_what_flip_changed(tiny_tflite, fmnist_test):
    from fmnist_edge.benchmarks.tta import measure, render
    from fmnist_edge.edge_runtime.classifier import Classifier

    r = measure(str(tiny_tflite["int8"]), threads=1, repeats=5, limit=300)
    none, flip = r["rows"]
    assert (none["tta"], flip["tta"], r["images"]) == ("none", "flip", 300)
    proba = Classifier(tiny_tflite["int8"]).predict_proba(fmnist_test.images[:300])
    assert none["accuracy"] == np.mean(np.argmax(proba, axis=1) == fmnist_test.labels[:300])
    assert round(300 * (flip["accuracy"] - none["accuracy"])) == r["fixed"] - r["broken"]
    assert r["fixed"] + r["broken"] > 0 and none["p50_ms"] > 0 and flip["p50_ms"] > 0
    assert "| flip |" in render(r)


@pytest.mark.parametrize("key", ["int8", "uint8", "float32"])
def test_bare_interpreter_agrees_with_the_classifier(tiny_tflite, key):
    from fmnist_edge.benchmarks.bare_accuracy import measure

    r = measure(str(tiny_tflite[key]), limit=500)
    assert r["images"] == 500 and r["differ"] == 0
    assert r["bare_accuracy"] == r["classifier_accuracy"] > 0.5


@pytest.mark.parametrize("module", ["tta", "bare_accuracy"])
def test_accuracy_scripts_say_a_bad_model_in_one_line(tmp_path, capsys, module):
    import importlib

    main = importlib.import_module(f"fmnist_edge.benchmarks.{module}").main
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(tmp_path / "nope.tflite")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope.tflite'}: model file not found\n"


def test_a_run_that_kept_only_last_keras_is_benchmarked_as_fmnist_export_reads_it(tmp_path):
    """The bundled model's run keeps last.keras alone (no validation split: the same model as
    model.keras): fmnist-bench takes it as the Keras reference, as fmnist-export does; a
    last.keras that is not the selected model is refused with the reason, unless the run has
    .tflite files to measure without a reference."""
    from fmnist_edge.benchmarks.inputs import find_models

    run = tmp_path / "run"
    run.mkdir()
    (run / "last.keras").write_bytes(b"PK")
    (run / "state.json").write_text(json.dumps({"config": {"val_fraction": 0}, "epoch": 3}))
    assert find_models(BenchConfig(run_dir=run)) == (run / "last.keras", [])
    (run / "state.json").write_text(json.dumps({"config": {"val_fraction": 0.2}, "epoch": 3}))
    with pytest.raises(ModelError, match="best epoch on the validation split"):
        find_models(BenchConfig(run_dir=run))
    (run / "m-int8.tflite").write_bytes(b"x")
    assert find_models(BenchConfig(run_dir=run)) == (None, [run / "m-int8.tflite"])
