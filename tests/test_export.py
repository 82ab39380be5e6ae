"""export/: conversion per mode, the flatbuffer's tensor types, the metadata, the validation.

The converted files come from conftest's ``tiny_tflite`` (built once by export.export); only a
few tests here convert again.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fmnist_edge.common.errors import ModelError, QualityError, UsageError
from fmnist_edge.common.labels import CLASS_NAMES, NUM_CLASSES
from fmnist_edge.dataset.files import train_val_split
from fmnist_edge.edge_runtime.metadata import read_metadata
from fmnist_edge.export.config import MODES, ExportConfig, parse_modes, variant_name
from fmnist_edge.export.convert import calibration_indices, pixel_offset, to_model_input
from fmnist_edge.export.validate import Validation

# fixture key -> (input dtype, output dtype)
IO_DTYPES = {
    "float32": ("float32", "float32"),
    "float16": ("float32", "float32"),
    "int8": ("int8", "int8"),
    "uint8": ("uint8", "uint8"),
    "int8-float-io": ("float32", "float32"),
    "int8-softmax": ("int8", "int8"),
}
INT8_KEYS = ("int8", "uint8", "int8-float-io", "int8-softmax")


def _details(path):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return interp.get_input_details()[0], interp.get_output_details()[0]


def _ops(path):
    """[(op name, [(input type, is constant)], [output type])] from the flatbuffer itself."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    (graph,) = model.subgraphs
    out = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        ins = [
            (types[graph.tensors[i].type], model.buffers[graph.tensors[i].buffer].data is not None)
            for i in op.inputs
            if i >= 0
        ]
        outs = [types[graph.tensors[i].type] for i in op.outputs]
        out.append((name, ins, outs, [graph.tensors[i] for i in op.inputs if i >= 0]))
    return out


@pytest.fixture(scope="module")
def wrong_shape_keras(tmp_path_factory):
    """A .keras classifier of 32x32x3 images: the wrong input for fmnist-export."""
    import keras

    model = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    path = tmp_path_factory.mktemp("wrong") / "model.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def dynamic_tflite(tmp_path_factory, tiny_keras):
    """The tiny model in dynamic-range mode (not in conftest's tiny_tflite: only export uses it)."""
    from fmnist_edge.export.exporter import export

    out = tmp_path_factory.mktemp("dynamic")
    (result,) = export(ExportConfig(tiny_keras, modes=("dynamic",), out=out, validate_samples=200))
    return result.path


@pytest.fixture(scope="module")
def holdout(fmnist_train):
    """The first 500 images of the validation part of the split (what export scores on)."""
    _, val_idx = train_val_split(len(fmnist_train.labels))
    return fmnist_train.images[val_idx[:500]], fmnist_train.labels[val_idx[:500]]


@pytest.fixture(scope="module")
def keras_holdout_proba(tiny_keras, holdout):
    import keras

    from fmnist_edge.export.validate import keras_proba

    return keras_proba(keras.models.load_model(tiny_keras, compile=False), holdout[0])


# --- the converted files ----------------------------------------------------------------------


@pytest.mark.parametrize("key", list(IO_DTYPES))
def test_io_tensor_dtypes(tiny_tflite, key):
    inp, out = _details(tiny_tflite[key])
    assert (np.dtype(inp["dtype"]).name, np.dtype(out["dtype"]).name) == IO_DTYPES[key]
    assert list(inp["shape_signature"]) == [-1, 28, 28, 1]
    assert list(out["shape"]) == [1, NUM_CLASSES]


@pytest.mark.parametrize("key", INT8_KEYS)
def test_int8_every_op_is_int8(tiny_tflite, key):
    """Full-integer: every compute op reads and writes int8 (int32 only for constant biases and
    axes); float or uint8 appears only in the QUANTIZE/DEQUANTIZE at the graph's two ends."""
    io = IO_DTYPES[key][0].upper()
    ops = _ops(tiny_tflite[key])
    boundary = [op for op in ops if op[0] in ("QUANTIZE", "DEQUANTIZE")]
    for name, ins, outs, _ in ops:
        if name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        assert outs == ["INT8"] * len(outs), name
        for dtype, const in ins:
            assert dtype == "INT8" or (const and dtype == "INT32"), (name, dtype)
    if io == "INT8":
        assert boundary == []
    else:  # one conversion in, one out, each between the I/O dtype and int8
        assert [(n, i[0][0], o[0]) for n, i, o, _ in boundary] in (
            [("QUANTIZE", io, "INT8"), ("QUANTIZE", "INT8", io)],
            [("QUANTIZE", io, "INT8"), ("DEQUANTIZE", "INT8", io)],
        )
    assert ops[0][0] == "QUANTIZE" or ops[0][1][0][0] == "INT8"


@pytest.mark.parametrize("key", list(IO_DTYPES))
def test_softmax_left_to_the_runtime_unless_kept(tiny_tflite, key):
    """By default the file ends at the logits (the last Dense layer); --keep-softmax keeps the
    int8 SOFTMAX op, whose kernel rounds differently on arm64 and x86."""
    names = [op[0] for op in _ops(tiny_tflite[key]) if op[0] not in ("QUANTIZE", "DEQUANTIZE")]
    if key == "int8-softmax":
        assert names[-1] == "SOFTMAX"
    else:
        assert "SOFTMAX" not in names and names[-1] == "FULLY_CONNECTED"


def _softmax_models():
    """The three ways a Keras classifier ends in a softmax, and one that doesn't."""
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(10)
    logits = dense(x)
    return {
        "activation": keras.Model(inputs, keras.layers.Activation("softmax")(logits)),
        "softmax-layer": keras.Model(inputs, keras.layers.Softmax()(logits)),
        "dense": keras.Sequential(
            [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
        ),
        "none": keras.Model(inputs, logits),
    }


@pytest.mark.parametrize("kind", ["activation", "softmax-layer", "dense", "none"])
def test_without_softmax(kind):
    from fmnist_edge.export.convert import without_softmax

    model = _softmax_models()[kind]
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    logits_model = without_softmax(model)
    if kind == "none":
        assert logits_model is None
        return
    logits = np.asarray(logits_model(x), dtype=np.float64)
    assert not np.allclose(logits.sum(axis=1), 1.0)  # really the logits
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), model(x), atol=1e-6)
    assert len(logits_model.weights) == len(model.weights)


def test_without_softmax_keeps_float32_logits_under_mixed_precision():
    import keras

    from fmnist_edge.export.convert import without_softmax

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten(dtype="mixed_float16")(inputs)
    x = keras.layers.Dense(10, dtype="mixed_float16")(x)
    model = keras.Model(inputs, keras.layers.Activation("softmax", dtype="float32")(x))
    assert x.dtype == "float16"
    assert without_softmax(model).outputs[0].dtype == "float32"


def test_a_model_without_softmax_is_exported_as_logits(tmp_path):
    """No softmax to strip, outputs that are not probabilities: the file says "logits", so the
    Classifier still returns probabilities."""
    import keras

    from fmnist_edge.edge_runtime.classifier import Classifier
    from fmnist_edge.export.exporter import export

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.save(tmp_path / "model.keras")
    (result,) = export(
        ExportConfig(source=tmp_path / "model.keras", modes=("float32",), validate_samples=50)
    )
    assert read_metadata(result.path)["output"]["values"] == "logits"
    proba = Classifier(result.path).predict_proba(np.zeros((3, 28, 28), np.uint8) + 100)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


def test_int8_weights_are_per_channel(tiny_tflite):
    convs = [op for op in _ops(tiny_tflite["int8"]) if op[0] == "CONV_2D"]
    assert convs
    for _, _, _, tensors in convs:
        weights = tensors[1]
        assert len(weights.quantization.scale) == weights.shape[0] > 1  # one scale per filter


def test_float16_stores_float16_weights(tiny_tflite):
    ops = _ops(tiny_tflite["float16"])
    constants = [dtype for _, ins, _, _ in ops for dtype, const in ins if const]
    assert "FLOAT16" in constants
    for name, _, outs, _ in ops:
        if name != "DEQUANTIZE":  # float16 -> float32 weights, once at load
            assert set(outs) == {"FLOAT32"}, name


def test_dynamic_has_int8_weights_and_float_io(dynamic_tflite, holdout, keras_holdout_proba):
    from fmnist_edge.export.validate import compare, tflite_proba

    inp, out = _details(dynamic_tflite)
    assert (np.dtype(inp["dtype"]).name, np.dtype(out["dtype"]).name) == ("float32", "float32")
    weights = [ins[1] for name, ins, _, _ in _ops(dynamic_tflite) if name == "CONV_2D"]
    # the converter leaves weights under 1,024 values in float32: the tiny model has a few
    assert ("INT8", True) in weights
    assert read_metadata(dynamic_tflite)["quantization"]["mode"] == "dynamic"
    v = compare(keras_holdout_proba, tflite_proba(dynamic_tflite, holdout[0]), holdout[1])
    assert v.agreement >= 0.95


def test_tflite_files_are_smaller_when_quantized(tiny_tflite):
    size = {k: p.stat().st_size for k, p in tiny_tflite.items()}
    assert size["int8"] < size["float16"] < size["float32"]


# --- metadata ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(IO_DTYPES))
def test_metadata_round_trip(tiny_tflite, tiny_keras, key):
    path = tiny_tflite[key]
    meta = read_metadata(path)
    inp, out = _details(path)
    assert meta["format"] == "fmnist-edge/2"
    assert meta["class_names"] == list(CLASS_NAMES)
    assert meta["input"]["shape"] == [1, 28, 28, 1]
    assert meta["input"]["layout"] == "NHWC"
    assert meta["normalization"]["scale"] == pytest.approx(1 / 255)
    assert meta["normalization"]["offset"] == 0.0
    assert meta["output"]["values"] == ("probabilities" if key == "int8-softmax" else "logits")
    q = meta["quantization"]
    assert q["mode"] == ("int8" if key in INT8_KEYS else key)
    for record, detail in ((q["input"], inp), (q["output"], out)):
        assert record["dtype"] == np.dtype(detail["dtype"]).name
        if record["scale"] is not None:
            assert (record["scale"], record["zero_point"]) == (
                pytest.approx(detail["quantization"][0]),
                detail["quantization"][1],
            )
    prov = meta["provenance"]
    assert prov["source_sha256"] == hashlib.sha256(tiny_keras.read_bytes()).hexdigest()
    assert prov["source_model"] == "model.keras"
    assert prov["mode"] == q["mode"]
    assert set(prov["data_sha256"]) >= {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"}
    assert {"python", "tensorflow", "keras", "numpy", "ai-edge-litert"} <= set(prov["versions"])
    assert prov["calibration_samples"] == (100 if key in INT8_KEYS else None)
    assert prov["export_config"]["validate_samples"] == 200
    v = meta["validation"]
    assert v["samples"] == 200
    assert v["drop_pp"] == pytest.approx(100 * (v["float_accuracy"] - v["tflite_accuracy"]))
    assert 0.0 <= v["agreement"] <= 1.0


@pytest.mark.parametrize(("key", "offset"), [("int8", -128), ("uint8", 0)])
def test_quantized_input_is_the_raw_pixel_shifted(tiny_tflite, key, offset):
    """Calibrated on pixel / 255, the input scale is 1/255: q = pixel - 128 (int8), q = pixel
    (uint8), exactly, for every pixel value."""
    inp, _ = _details(tiny_tflite[key])
    scale, zero_point = inp["quantization"]
    assert scale == pytest.approx(1 / 255, rel=1e-6)
    info = np.iinfo(inp["dtype"])
    pixels = np.arange(256)
    x = to_model_input(pixels.reshape(1, 16, 16)).ravel()
    q = np.clip(np.round(x / scale) + zero_point, info.min, info.max)
    np.testing.assert_array_equal(q, pixels + offset)
    assert read_metadata(tiny_tflite[key])["quantization"]["input"]["pixel_offset"] == offset


def test_pixel_offset_none_when_not_exact():
    assert pixel_offset(1 / 255, -128, "int8") == -128
    assert pixel_offset(2 / 255, 0, "int8") is None


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "min_agreement"), [("float32", 0.999), ("float16", 0.99)])
def test_float_modes_agree_with_keras(
    tiny_tflite, holdout, keras_holdout_proba, key, min_agreement
):
    from fmnist_edge.export.validate import compare, tflite_proba

    v = compare(keras_holdout_proba, tflite_proba(tiny_tflite[key], holdout[0]), holdout[1])
    assert v.samples == 500
    assert v.agreement >= min_agreement
    assert abs(v.drop_pp) <= 100 * (1 - min_agreement)


@pytest.mark.parametrize("key", INT8_KEYS)
def test_int8_drop_measured_and_reported(tiny_tflite, holdout, keras_holdout_proba, key):
    from fmnist_edge.export.validate import compare, tflite_proba

    v = compare(keras_holdout_proba, tflite_proba(tiny_tflite[key], holdout[0]), holdout[1])
    print(f"{key}: {v}")  # shown with -rP: the tiny model's measured int8 cost
    assert v.drop_pp == pytest.approx(100 * (v.float_accuracy - v.tflite_accuracy))
    assert v.agreement >= 0.9  # loose: the tiny model is barely trained
    recorded = read_metadata(tiny_tflite[key])["validation"]
    assert recorded["agreement"] >= 0.9


def test_compare_counts():
    from fmnist_edge.export.validate import compare

    eye = np.eye(NUM_CLASSES, dtype=np.float32)
    labels = np.array([0, 1, 2, 3])
    v = compare(eye[[0, 1, 2, 3]], eye[[0, 1, 2, 9]], labels)
    assert (v.float_accuracy, v.tflite_accuracy, v.agreement) == (1.0, 0.75, 0.75)
    assert v.drop_pp == pytest.approx(25.0)


# --- calibration ------------------------------------------------------------------------------


def test_calibration_is_stratified_seeded_and_from_the_train_part(fmnist_train):
    labels = fmnist_train.labels
    train_idx, val_idx = train_val_split(len(labels))
    pool = labels[train_idx]  # the labels of the images the run trained on
    picked = train_idx[calibration_indices(pool, NUM_CLASSES, 503, seed=42)]
    assert len(picked) == len(set(picked.tolist())) == 503
    assert set(picked.tolist()) <= set(train_idx.tolist())
    assert not set(picked.tolist()) & set(val_idx.tolist())
    counts = np.bincount(labels[picked], minlength=NUM_CLASSES)
    assert counts.min() == 50 and counts.max() == 51 and counts.sum() == 503
    again = calibration_indices(pool, NUM_CLASSES, 503, seed=42)
    np.testing.assert_array_equal(picked, train_idx[again])
    assert not np.array_equal(again, calibration_indices(pool, NUM_CLASSES, 503, seed=1))
    few = calibration_indices(np.array([0, 0, 1, 1, 1, 2]), 3, 12, seed=0, strict=False)
    assert sorted(few.tolist()) == [0, 1, 2, 3, 4, 5]  # every image, none twice


# --- what a file is scored on: what its run held out -------------------------------------------


@pytest.mark.parametrize(
    ("config", "split", "count"),
    [
        (None, "train split, validation part (20%, seed 42)", 12000),
        (
            {"val_fraction": 0.1, "split_seed": 7},
            "train split, validation part (10%, seed 7)",
            6000,
        ),
        (
            {"val_fraction": 0.0},
            "test split (the run trained on all 60,000 training images)",
            10000,
        ),
    ],
)
def test_scored_on_what_the_run_held_out(fmnist_train, fmnist_test, config, split, count):
    from fmnist_edge.export.holdout import load_export_data

    data = load_export_data(None if config is None else {"config": config}, None, None)
    held = data.holdout
    assert held.split == split and len(held.labels) == count
    assert np.bincount(held.labels, minlength=NUM_CLASSES).sum() == count
    if config and config["val_fraction"] == 0:
        assert len(data.train) == 60000  # calibration may draw on every training image
        assert sorted(np.bincount(held.labels).tolist()) == [1000] * 10  # the whole test split
        image = held.images[0][..., 0]
        first = int(np.flatnonzero((fmnist_test.images == image).all(axis=(1, 2)))[0])
        assert fmnist_test.labels[first] == held.labels[0]
    else:
        fraction = config["val_fraction"] if config else 0.2
        seed = config["split_seed"] if config else 42
        trained, val = train_val_split(60000, fraction, seed)
        np.testing.assert_array_equal(held.images[..., 0], fmnist_train.images[val])
        np.testing.assert_array_equal(data.train.labels, fmnist_train.labels[trained])
    fewer = load_export_data(None if config is None else {"config": config}, None, 300)
    assert len(fewer.holdout.labels) == 300 and fewer.holdout.split == split


@pytest.mark.parametrize("record", ["metrics.json", "state.json"])
def test_a_run_on_every_image_is_scored_on_the_test_split(tmp_path, tiny_keras, record):
    """A finished run says how it split in metrics.json; one still training in state.json."""
    import json
    import shutil

    from fmnist_edge.export.exporter import export

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_keras, run / "model.keras")
    config = {"val_fraction": 0, "epochs": 10}
    (run / record).write_text(json.dumps({"arch": "tiny", "epoch": 3, "config": config}))
    (result,) = export(ExportConfig(run, modes=("dynamic",), validate_samples=400))
    meta = read_metadata(result.path)
    v = meta["validation"]
    assert v["split"] == "test split (the run trained on all 60,000 training images)"
    assert v["samples"] == 400
    assert meta["provenance"]["training_config"] == config
    if record == "state.json":
        selection = meta["provenance"]["training_metrics"]["selection"]
        assert selection == "an unfinished run: its model.keras at epoch 3 of 10"


def test_to_model_input():
    x = to_model_input(np.array([[[0, 255]]], dtype=np.uint8))
    assert x.shape == (1, 1, 2, 1) and x.dtype == np.float32
    assert x.ravel().tolist() == [0.0, 1.0]


# --- settings ---------------------------------------------------------------------------------


def test_config_modes_and_variants(tmp_path):
    assert parse_modes("all") == MODES
    assert parse_modes(("int8", "all", "int8")) == ("int8", "float32", "float16", "dynamic")
    assert ExportConfig(tmp_path, modes=("all",)).modes == MODES
    assert variant_name("int8", "int8") == "int8"
    assert variant_name("int8", "uint8") == "int8-uint8-io"
    assert variant_name("int8", "float32") == "int8-float-io"
    assert variant_name("float16", "uint8") == "float16"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"modes": ("int4",)}, "--quantize"),
        ({"modes": ()}, "--quantize"),
        ({"int8_io": "int16"}, "--int8-io"),
        ({"calibration_samples": 5}, "--calibration-samples"),
        ({"validate_samples": 0}, "--validate-samples"),
        ({"max_drop": -1.0}, "--max-drop"),
        ({"modes": ("int8", "float16"), "out": "one.tflite"}, "--out"),
    ],
)
def test_config_rejects(tmp_path, kwargs, message):
    with pytest.raises(UsageError, match=message):
        ExportConfig(tmp_path / "model.keras", **kwargs)


# --- the source model and the output files ----------------------------------------------------


def test_missing_source(tmp_path):
    from fmnist_edge.export.exporter import export

    with pytest.raises(ModelError, match="no such file"):
        export(ExportConfig(tmp_path / "nope.keras"))
    with pytest.raises(ModelError, match="no model.keras"):
        export(ExportConfig(tmp_path))


def test_not_a_keras_model(tmp_path):
    from fmnist_edge.export.exporter import export

    bogus = tmp_path / "model.keras"
    bogus.write_text("not a zip")
    with pytest.raises(ModelError, match="not a Keras model"):
        export(ExportConfig(bogus))


def test_wrong_shape_model(wrong_shape_keras):
    from fmnist_edge.export.exporter import export

    with pytest.raises(ModelError, match=r"needs \(None, 28, 28, 1\) -> \(None, 10\)"):
        export(ExportConfig(wrong_shape_keras))


def test_output_paths(tmp_path):
    from fmnist_edge.export.exporter import output_paths

    model = tmp_path / "run" / "model.keras"
    cfg = ExportConfig(model, modes=("all",), int8_io="uint8")
    assert output_paths(cfg, model, "edge-s") == {
        "float32": model.parent / "edge-s-float32.tflite",
        "float16": model.parent / "edge-s-float16.tflite",
        "int8": model.parent / "edge-s-int8-uint8-io.tflite",
        "dynamic": model.parent / "edge-s-dynamic.tflite",
    }
    cfg = ExportConfig(model, out=tmp_path / "dist")
    assert output_paths(cfg, model, "x") == {"int8": tmp_path / "dist" / "x-int8.tflite"}
    cfg = ExportConfig(model, out=tmp_path / "pi.tflite")
    assert output_paths(cfg, model, "x") == {"int8": tmp_path / "pi.tflite"}


def test_existing_file_refused_before_any_work(tmp_path, tiny_keras):
    from fmnist_edge.export.exporter import export

    target = tmp_path / "model-int8.tflite"
    target.write_bytes(b"keep me")
    with pytest.raises(UsageError, match="already exists.*--force"):
        export(ExportConfig(tiny_keras, out=tmp_path))
    assert target.read_bytes() == b"keep me"


def test_max_drop_rejects_one_mode_and_keeps_the_others(
    tmp_path, tiny_keras, tiny_tflite, fmnist_train, monkeypatch
):
    """A mode whose drop exceeds --max-drop is never renamed into place (an existing file stays
    as it was), the other modes are written, and the report shows both."""
    import fmnist_edge.dataset.prepare as prepare_module
    import fmnist_edge.export.exporter as exporter

    # the conversion is tested above: reuse its files; float16 "drops" 25 pp, float32 nothing
    monkeypatch.setattr(
        exporter, "convert", lambda m, mode, *a: (tiny_tflite[mode].read_bytes(), 0.0)
    )
    drops = iter([Validation(50, 0.75, 0.75, 0.0, 1.0), Validation(50, 0.75, 0.5, 25.0, 0.6)])
    monkeypatch.setattr(exporter, "compare", lambda *_: next(drops))
    monkeypatch.setattr(prepare_module, "load_split", lambda *args, **kwargs: fmnist_train)
    old = tmp_path / "model-float16.tflite"
    old.write_bytes(b"old")
    seen = []
    cfg = ExportConfig(
        tiny_keras,
        modes=("float32", "float16"),
        out=tmp_path,
        validate_samples=50,
        max_drop=0.5,
        force=True,
    )
    with pytest.raises(
        QualityError, match="^float16: accuracy drop 25.00 pp exceeds --max-drop 0.5"
    ):
        exporter.export(cfg, report=seen.append)
    assert old.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [old.name, "model-float32.tflite"]
    assert [(r.mode, r.passed) for r in seen] == [("float32", True), ("float16", False)]
    assert seen[1].path is None and "REJECTED" in seen[1].line()
    assert read_metadata(seen[0].path)["validation"]["drop_pp"] == 0.0
