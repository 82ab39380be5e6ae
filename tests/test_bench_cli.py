"""fmnist-bench's wiring: options reach the settings, errors become one line and exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from fmnist_edge.benchmarks.cli import main


def test_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "--quick" in result.output


def test_missing_run_dir_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(main, [str(tmp_path / "nope"), "--quick"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "no such run directory" in result.output


def test_no_model_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(main, [str(tmp_path), "--quick"])
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert "no model found" in result.output


def test_no_input_at_all_is_a_usage_error():
    result = CliRunner().invoke(main, ["--quick"])
    assert result.exit_code == 2 and "RUN_DIR" in result.output


def test_quick_run_keras_only(tmp_path, tiny_keras):
    out = tmp_path / "report"
    args = [
        "--keras",
        str(tiny_keras),
        "--quick",
        "--out",
        str(out),
        "--no-export",
        "--runtime",
        "keras",
        "--keras-runs",
        "2",
        "--warmup",
        "1",
        "--cold-start-reps",
        "0",
        "--no-litert-tool",
        "--no-plots",
        "--max-threads",
        "1",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "| keras" in result.output and "report:" in result.output
    data = json.loads((out / "report.json").read_text())
    assert data["config"]["keras_runs"] == 2 and data["config"]["threads"] == [1]
    assert data["config"]["quick"] is True and data["data"]["images"] == 1000
    assert [(r["format"], r["runtime"]) for r in data["results"]] == [("keras", "keras")]
    assert data["results"][0]["runs"] == 2
    assert "plot" not in result.output  # --no-plots: none written, none announced


FAST = ["--quick", "--no-export", "--runtime", "keras", "--keras-runs", "2", "--warmup", "1",
        "--cold-start-reps", "0", "--no-litert-tool", "--no-plots", "--max-threads", "1"]


def test_several_runs_in_one_call_fill_the_results_table(tmp_path, tiny_keras):
    """One fmnist-bench call over two run directories: a report in each, and one table spliced
    between the markers of --results, named NAME= or after the folder."""
    import shutil

    from fmnist_edge.benchmarks.results import BEGIN, END

    runs = []
    for name in ("run-a", "run-b"):
        (tmp_path / name).mkdir()
        shutil.copy(tiny_keras, tmp_path / name / "model.keras")
        runs.append(tmp_path / name)
    doc = tmp_path / "results.md"
    doc.write_text(f"# Results\nprose\n{BEGIN}\nold\n{END}\nmore prose\n")
    args = [f"first={runs[0]}", str(runs[1]), "--results", str(doc), *FAST]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("report:") == 2
    for run in runs:
        assert (run / "bench" / "report.json").is_file()
    text = doc.read_text()
    assert text.startswith("# Results\nprose\n") and text.endswith(f"{END}\nmore prose\n")
    assert "\nold\n" not in text
    assert "| first " in text and "| run-b " in text


def test_several_runs_refuse_single_run_options(tmp_path, tiny_keras):
    result = CliRunner().invoke(main, [str(tmp_path), str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "single RUN_DIR" in result.output
    result = CliRunner().invoke(main, ["=nothing", "--quick"])
    assert result.exit_code == 2 and "NAME=RUN_DIR" in result.output


# --- issue 15: what a new user hit ------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
DEVICE = ["--device", "--quick", "--runtime", "ai-edge-litert", "--runs", "2", "--warmup", "1",
          "--cold-start-reps", "0", "--no-litert-tool", "--no-plots", "--max-threads", "1"]


def test_results_without_markers_is_refused_before_measuring(tmp_path, tiny_keras):
    """Item 1: a file of prose named by --results is never replaced by the table."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_keras, run / "model.keras")
    notes = tmp_path / "mynotes.md"
    notes.write_text("# My notes\n\nwritten by hand\n")
    result = CliRunner().invoke(main, [str(run), "--results", str(notes), *FAST])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: --results ")
    assert str(notes) in result.output and "markers" in result.output
    assert notes.read_text() == "# My notes\n\nwritten by hand\n"
    assert not (run / "bench").exists()  # refused before minutes of measuring, not after


def test_without_a_run_dir_the_report_folder_must_be_named(tmp_path, tiny_tflite, monkeypatch):
    """Item 11: no ./bench silently created in whatever folder (a checkout) the user is in."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["--tflite", str(tiny_tflite["int8"]), *DEVICE])
    assert result.exit_code == 2 and "--out" in result.output, result.output
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "report"
    args = ["--tflite", str(tiny_tflite["int8"]), *DEVICE, "--out", str(out)]
    ok = CliRunner().invoke(main, args)
    assert ok.exit_code == 0, ok.output
    assert (out / "report.json").is_file() and [p.name for p in tmp_path.iterdir()] == ["report"]


def test_readme_and_help_name_the_formats_bench_exports():
    """Item 11: the docs say what export_missing does."""
    from fmnist_edge.benchmarks.inputs import EXPORT_FORMATS

    formats = ", ".join(EXPORT_FORMATS)
    readme = (REPO / "README.md").read_text()
    (line,) = [ln for ln in readme.splitlines() if ln.startswith("fmnist-bench runs/edge-m  ")]
    assert f"exports {formats}" in line, line
    help_text = " ".join(CliRunner().invoke(main, ["--help"]).output.split())
    assert f"export {formats}" in help_text


def test_bench_keeps_litert_chatter_off_the_screen(tmp_path, tiny_tflite):
    """Item 7: LiteRT's C++ 'INFO: Created TensorFlow Lite XNNPACK delegate' stays hidden."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "0"}
    args = ["--tflite", str(tiny_tflite["int8"]), *DEVICE, "--out", str(tmp_path / "r")]
    proc = subprocess.run([sys.executable, "-m", "fmnist_edge.benchmarks.cli", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| int8" in proc.stdout
    assert "XNNPACK" not in proc.stderr and "INFO" not in proc.stderr, proc.stderr
