"""fmnist-export's wiring: options reach ExportConfig, results are printed, errors exit 1 or 2.

Conversion itself is tested in test_export.py; here ``convert`` is replaced by the bytes of the
``tiny_tflite`` files, so these tests take no conversion time.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from fmnist_edge.edge_runtime.metadata import read_metadata
from fmnist_edge.export.cli import main
from fmnist_edge.export.validate import Validation


@pytest.fixture
def fast_convert(monkeypatch, tiny_tflite, fmnist_train):
    """export.exporter.convert returning the already-converted tiny model of each mode, and
    load_split the session's already-loaded training split."""
    import fmnist_edge.dataset.prepare as prepare
    import fmnist_edge.export.exporter as exporter

    monkeypatch.setattr(prepare, "load_split", lambda *args, **kwargs: fmnist_train)

    def convert(model, mode, calibration=None, int8_io="int8"):
        assert (calibration is not None) == (mode == "int8")
        return tiny_tflite[mode].read_bytes(), 0.01

    monkeypatch.setattr(exporter, "convert", convert)


@pytest.fixture
def run_dir(tmp_path, tiny_keras):
    """A run directory as fmnist-train leaves it: model.keras and metrics.json."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_keras, run / "model.keras")
    metrics = {
        "arch": "tiny",
        "val_accuracy": 0.7,
        "test_accuracy": 0.69,
        "config": {"arch": "tiny", "epochs": 2},
        "data": {"sha256": {"t10k-images-idx3-ubyte": "ab" * 32}},
        "versions": {"keras": "3"},
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_exports_a_run_directory(run_dir, fast_convert):
    result = _invoke(
        run_dir, "--quantize", "float32", "--quantize", "int8", "--validate-samples", 50
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["float32", "int8"]
    for line in lines:
        assert all(word in line for word in ("KiB", "convert", "float", "tflite", "drop", "agree"))
    meta = read_metadata(run_dir / "tiny-int8.tflite")
    prov = meta["provenance"]
    assert prov["arch"] == "tiny"
    assert prov["training_metrics"] == {"val_accuracy": 0.7, "test_accuracy": 0.69}
    assert prov["training_config"] == {"arch": "tiny", "epochs": 2}
    assert "t10k-images-idx3-ubyte" in prov["data_sha256"]  # from metrics.json
    assert "train-images-idx3-ubyte" in prov["data_sha256"]  # from the split used here
    assert prov["export_config"]["modes"] == ["float32", "int8"]
    assert prov["calibration_samples"] == 500 and prov["calibration_seed"] == 42
    assert meta["validation"]["samples"] == 50
    assert (run_dir / "tiny-float32.tflite").is_file()


def test_existing_file_needs_force(run_dir, fast_convert):
    target = run_dir / "tiny-float32.tflite"
    target.write_bytes(b"old")
    args = (run_dir, "--quantize", "float32", "--validate-samples", 20)
    result = _invoke(*args)
    assert result.exit_code == 2
    assert result.stderr == f"error: {target}: already exists (use --force to overwrite)\n"
    assert target.read_bytes() == b"old"
    result = _invoke(*args, "--force")
    assert result.exit_code == 0, result.output
    assert read_metadata(target)["quantization"]["mode"] == "float32"


def test_out_names_the_file(tmp_path, tiny_keras, fast_convert):
    out = tmp_path / "pi" / "fmnist.tflite"
    result = _invoke(tiny_keras, "--quantize", "float16", "--out", out, "--validate-samples", 20)
    assert result.exit_code == 0, result.output
    assert read_metadata(out)["quantization"]["mode"] == "float16"


def test_max_drop_exceeded_exits_1_and_keeps_no_file(run_dir, fast_convert, monkeypatch):
    import fmnist_edge.export.exporter as exporter

    monkeypatch.setattr(exporter, "compare", lambda *_: Validation(30, 0.75, 0.5, 25.0, 0.6))
    result = _invoke(run_dir, "--quantize", "int8", "--validate-samples", 30, "--max-drop", 0.5)
    assert result.exit_code == 1
    assert "REJECTED" in result.stdout
    assert _error(result.stderr).startswith("error: int8: accuracy drop")
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.json", "model.keras"]


STEPS = ("loading ", "scoring ", "float32: ", "float16: ", "int8: ", "dynamic: ")


def _error(stderr: str) -> str:
    """The one error line, last; before it only fmnist-export's own step lines (no TensorFlow
    notices, no second error)."""
    *steps, error = stderr.splitlines()
    assert all(s.startswith(STEPS) and "error" not in s for s in steps), steps
    return error


@pytest.fixture
def wrong_shape_keras(tmp_path):
    import keras

    model = keras.Sequential(
        [keras.Input((28, 28, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.save(tmp_path / "rgb.keras")
    return tmp_path / "rgb.keras"


def _bad_source(case, tmp_path, request):
    if case == "missing":
        return tmp_path / "nope.keras"
    if case == "run-dir-without-model":
        return tmp_path
    if case == "not-keras":
        (tmp_path / "x.keras").write_bytes(b"PK\x03\x04 not really a zip")
        return tmp_path / "x.keras"
    return request.getfixturevalue("wrong_shape_keras")


@pytest.mark.parametrize("case", ["missing", "run-dir-without-model", "not-keras", "wrong-shape"])
def test_bad_model_exits_2_with_one_line(tmp_path, request, case):
    source = _bad_source(case, tmp_path, request)
    result = _invoke(source, "--quantize", "float32")
    assert result.exit_code == 2, result.output
    assert _error(result.stderr).startswith(f"error: {source}")
    assert list(tmp_path.glob("*.tflite")) == []


@pytest.mark.parametrize(
    "args",
    [
        ("--calibration-samples", "3"),
        ("--validate-samples", "0"),
        ("--quantize", "all", "--out", "one.tflite"),
        ("--quantize", "int4"),
    ],
)
def test_bad_options_exit_2(tmp_path, args):
    result = _invoke(tmp_path / "model.keras", *args)
    assert result.exit_code == 2, result.output


def test_more_calibration_images_than_a_class_has_exits_2(run_dir, fast_convert):
    result = _invoke(run_dir, "--calibration-samples", 100_000, "--validate-samples", 10)
    assert result.exit_code == 2, result.output
    assert _error(result.stderr).startswith("error: --calibration-samples 100000: class 0 has only")
    assert list(run_dir.glob("*.tflite")) == []


def test_help():
    result = _invoke("--help")
    assert result.exit_code == 0
    for option in ("--quantize", "--int8-io", "--max-drop", "--force", "--calibration-samples"):
        assert option in result.output


@pytest.mark.parametrize("keep", [False, True])
def test_keep_softmax_reaches_the_conversion(run_dir, monkeypatch, tiny_tflite, fmnist_train, keep):
    import fmnist_edge.dataset.prepare as prepare
    import fmnist_edge.export.exporter as exporter

    monkeypatch.setattr(prepare, "load_split", lambda *args, **kwargs: fmnist_train)
    seen = []

    def convert(model, mode, calibration=None, int8_io="int8"):
        seen.append(model.layers[-1].name)
        return tiny_tflite["int8-softmax" if keep else "int8"].read_bytes(), 0.01

    monkeypatch.setattr(exporter, "convert", convert)
    args = ["--keep-softmax"] if keep else []
    result = _invoke(run_dir, "--validate-samples", 50, *args)
    assert result.exit_code == 0, result.output
    assert seen == (["probs"] if keep else ["logits"])  # train/models.py's last two layers
    meta = read_metadata(run_dir / "tiny-int8.tflite")
    assert meta["output"]["values"] == ("probabilities" if keep else "logits")
    assert meta["provenance"]["export_config"]["keep_softmax"] is keep


# --- issue 26: what a new user hit ------------------------------------------------------------


def _checkpointed_run(tmp_path, tiny_keras, **settings):
    """A run directory as a finished run's checkout keeps it: last.keras and state.json (the
    trainer's own record of its settings), no model.keras."""
    from fmnist_edge.train.config import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_keras, run / "last.keras")
    config = TrainConfig(arch="tiny", epochs=2, out=run, **settings).to_dict()
    state = {"arch": "tiny", "epoch": 2, "best_val_accuracy": -1.0, "config": config}
    (run / "state.json").write_text(json.dumps(state))
    return run


def test_a_run_without_validation_exports_its_last_keras(tmp_path, tiny_keras, fast_convert):
    """Item 2: `fmnist-export runs/resnet20-edge --quantize int8 --target mediapipe` failed with
    'no model.keras'. A run without a validation split selects its last epoch, so its last.keras
    is the selected model: exported, and one log line says so."""
    run = _checkpointed_run(tmp_path, tiny_keras, val_fraction=0.0)
    result = _invoke(run, "--quantize", "int8", "--target", "mediapipe", "--validate-samples", 50)
    assert result.exit_code == 0, result.output
    said = f"{run}: no model.keras; exporting last.keras, the same model (no validation split)"
    assert said in result.stderr.splitlines()
    assert (run / "tiny-int8.tflite").is_file() and (run / "tiny-int8-mediapipe.tflite").is_file()
    prov = read_metadata(run / "tiny-int8.tflite")["provenance"]
    assert prov["training_config"]["val_fraction"] == 0.0
    selection = prov["training_metrics"]["selection"]
    assert selection == "its last.keras at epoch 2 of 2 (selected model)"


@pytest.mark.parametrize(
    "settings, why",
    [
        ({}, "the selected model is the best epoch on the validation split"),
        ({"val_fraction": 0.0, "ema": 0.999}, "the selected model holds the averaged (--ema)"),
        (None, "no state.json or metrics.json says whether it is the selected model"),
    ],
)
def test_last_keras_that_is_not_the_selected_model_is_refused(tmp_path, tiny_keras, settings, why):
    """Item 2: anywhere else last.keras is not the run's model: one line says why and what to
    pass to export it anyway; nothing is written."""
    run = _checkpointed_run(tmp_path, tiny_keras, **(settings or {}))
    if settings is None:
        (run / "state.json").unlink()
    result = _invoke(run, "--quantize", "int8")
    assert result.exit_code == 2, result.output
    line = _error(result.stderr)
    assert line.startswith(f"error: {run}: no model.keras, and its last.keras is the last epoch")
    assert why in line and line.endswith(f"pass {run / 'last.keras'} to export the last epoch")
    assert not list(run.glob("*.tflite"))


def test_the_committed_edge_recipe_run_exports_its_last_keras():
    """Item 2, on the checkout as committed: runs/resnet20-edge (the bundled model's source)
    holds last.keras and state.json only; its model is last.keras."""
    from fmnist_edge.export.source import resolve_source

    run = Path(__file__).resolve().parents[1] / "runs" / "resnet20-edge"
    model, record = resolve_source(run)
    assert model == run / "last.keras"
    assert record["config"]["recipe"] == "edge" and record["config"]["val_fraction"] == 0
    assert record["selection"] == "its last.keras at epoch 160 of 160 (selected model)"
