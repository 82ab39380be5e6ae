"""edge_runtime's Classifier and interpreter layer, on the tiny model exported every way.

The interpreter is the real ai-edge-litert throughout; only the runtime-selection tests inject
fake ``tflite_runtime`` modules, because that package cannot be installed next to numpy 2.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist_edge.common.errors import ImageError, ModelError, RuntimeUnavailable, UsageError
from fmnist_edge.common.labels import CLASS_NAMES
from fmnist_edge.edge_runtime import classifier as classifier_mod
from fmnist_edge.edge_runtime.classifier import Classifier, Prediction
from fmnist_edge.edge_runtime.interpreter import RUNTIMES, TensorSpec, TFLiteModel, load_runtime

REPO = Path(__file__).resolve().parents[1]
KINDS = ("float32", "float16", "int8", "uint8", "int8-float-io", "int8-softmax")
IO_DTYPE = {
    "int8-softmax": "int8",  # int8 probabilities out (--keep-softmax); the others: logits
    "float32": "float32",
    "float16": "float32",  # float16 weights, float32 I/O
    "int8": "int8",
    "uint8": "uint8",
    "int8-float-io": "float32",
}


@pytest.fixture(scope="module")
def classifiers(tiny_tflite):
    return {kind: Classifier(tiny_tflite[kind]) for kind in KINDS}


@pytest.fixture(scope="module")
def keras_proba(tiny_keras, fmnist_test):
    import keras

    model = keras.models.load_model(tiny_keras)
    x = fmnist_test.images[:300, ..., None].astype(np.float32) / 255.0
    return model.predict(x, verbose=0)


@pytest.fixture(scope="module")
def bad_shape_models(tmp_path_factory):
    """Real .tflite files that are not Fashion-MNIST classifiers: a 32x32x3 input, and a
    28x28x1 input with 5 outputs. Made with TFLiteConverter, no metadata."""
    import keras
    import tensorflow as tf

    out = tmp_path_factory.mktemp("bad_shape")
    paths = {}
    for name, shape, classes in (("rgb32", (32, 32, 3), 10), ("five", (28, 28, 1), 5)):
        model = keras.Sequential(
            [
                keras.Input(shape),
                keras.layers.Conv2D(2, 3),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(classes, activation="softmax"),
            ]
        )
        paths[name] = out / f"{name}.tflite"
        paths[name].write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return paths


# --- the real interpreter path ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_io_contract_read_from_the_model(classifiers, kind):
    clf = classifiers[kind]
    assert clf.input_dtype == IO_DTYPE[kind]
    assert clf.runtime.startswith("ai-edge-litert ")
    assert clf.metadata is not None and clf.metadata["format"] == "fmnist-edge/2"
    assert clf.class_names == CLASS_NAMES
    spec = clf.model.input
    if spec.quantized:  # pixel / 255 quantized with the model's own scale and zero point
        expected = np.clip(np.round(np.arange(256) / 255.0 / spec.scale) + spec.zero_point,
                           np.iinfo(spec.dtype).min, np.iinfo(spec.dtype).max)
        np.testing.assert_array_equal(clf._lut, expected.astype(spec.dtype))
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    fast = clf._input(pixels)  # the shortcut, when taken, is exactly the table
    assert fast.dtype == clf._lut.dtype and np.array_equal(fast, clf._lut[pixels])
    assert clf.output_values == ("probabilities" if kind == "int8-softmax" else "logits")
    if clf._out_lut is not None:
        codes = np.arange(256, dtype=np.uint8).view(clf.model.output.dtype)
        values = clf.model.output.dequantize(codes)
        if clf.output_values == "logits":  # exp(z - the largest representable z)
            values = np.exp(values.astype(np.float64) - values.max())
        np.testing.assert_allclose(clf._out_lut[codes.view(np.uint8)], values, rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_predict_proba_is_the_softmax_of_the_output_tensor(classifiers, fmnist_test, kind):
    """The raw output tensor, dequantized with its own scale and zero point, then softmax
    (unless the file holds probabilities already): computed here independently, in float64."""
    clf = classifiers[kind]
    images = fmnist_test.images[:50]
    raw = clf.output_tensor(images)
    assert raw.dtype == clf.model.output.dtype and raw.shape == (50, 10)
    spec = clf.model.output
    z = (raw.astype(np.float64) - spec.zero_point) * (spec.scale if spec.quantized else 1.0)
    if clf.output_values == "logits":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        expected = e / e.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(clf.predict_proba(images).sum(axis=1), 1.0, atol=1e-6)
    else:
        expected = z
    np.testing.assert_allclose(clf.predict_proba(images), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_predict_proba_matches_keras(classifiers, keras_proba, fmnist_test, kind):
    proba = classifiers[kind].predict_proba(fmnist_test.images[:300])
    assert proba.shape == (300, 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=0.05)
    agree = (proba.argmax(1) == keras_proba.argmax(1)).mean()
    if kind in ("float32", "float16"):
        np.testing.assert_allclose(proba, keras_proba, atol=2e-3)
    else:
        assert agree >= 0.9, agree


@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_predict_on_every_image_kind(classifiers, fmnist_test, tmp_path, kind):
    clf = classifiers[kind]
    img = fmnist_test.images[0]
    expected = clf.predict_proba(img[None])[0]
    Image.fromarray(img).save(tmp_path / "x.png")
    for source in (img, img[..., None], Image.fromarray(img), tmp_path / "x.png",
                   str(tmp_path / "x.png")):
        pred = clf.predict(source, top_k=3)
        assert isinstance(pred, Prediction)
        assert pred.index == int(expected.argmax()) and pred.label == CLASS_NAMES[pred.index]
        assert pred.score == pytest.approx(float(expected.max()))
        assert [label for label, _ in pred.top_k] == [CLASS_NAMES[i] for i in
                                                      np.argsort(-expected)[:3]]
        assert pred.top_k[0] == (pred.label, pred.score)


def test_predict_batch_and_top_k(classifiers, fmnist_test):
    clf = classifiers["int8"]
    images = fmnist_test.images[:70]  # more than one resized chunk of 64
    preds = clf.predict_batch(list(images), top_k=10)
    proba = clf.predict_proba(images)
    assert [p.index for p in preds] == list(proba.argmax(1))
    assert all(len(p.top_k) == 10 for p in preds)
    assert all(p.top_k == sorted(p.top_k, key=lambda t: -t[1]) for p in preds)
    one_by_one = np.stack([clf.predict_proba(x[None])[0] for x in images[:5]])
    np.testing.assert_array_equal(one_by_one, proba[:5])  # batching changes nothing
    assert clf.predict_batch([]) == []
    # a batch given as one array: the same predictions as a list of images
    assert clf.predict_batch(images, top_k=10) == preds
    # ties rank in class order (a flat row: classes 0, 1, 2)
    flat = clf._results(np.full((1, 10), 0.1, dtype=np.float32), 3)[0]
    assert [name for name, _ in flat.top_k] == list(clf.class_names[:3]) and flat.index == 0
    assert len(clf.predict(images[0], top_k=1).top_k) == 1
    assert len(clf.predict(images[0], top_k=99).top_k) == 10


def test_predict_proba_rejects_non_pixels(classifiers):
    clf = classifiers["int8"]
    with pytest.raises(ImageError, match="uint8"):
        clf.predict_proba(np.zeros((1, 28, 28), np.float32))
    with pytest.raises(ImageError, match="28, 28"):
        clf.predict_proba(np.zeros((1, 32, 32), np.uint8))
    assert clf.predict_proba(np.zeros((0, 28, 28), np.uint8)).shape == (0, 10)


def test_model_without_metadata_uses_defaults_and_warns(tmp_path, tiny_tflite, caplog):
    from fmnist_edge.edge_runtime.metadata import METADATA_NAME, metadata_entries

    bare = tmp_path / "bare.tflite"
    content = Path(tiny_tflite["int8"]).read_bytes()
    # Strip the record by renaming its entry: same bytes, no fmnist_edge metadata.
    needle = METADATA_NAME.encode()
    assert content.count(needle) == 1
    bare.write_bytes(content.replace(needle, b"other_name_"[: len(needle)]))
    assert METADATA_NAME not in metadata_entries(bare)
    logger = logging.getLogger("fmnist_edge.edge_runtime")  # a command may have routed it
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("WARNING", logger="fmnist_edge.edge_runtime"):
            clf = Classifier(bare)
    finally:
        logger.removeHandler(caplog.handler)
    assert clf.metadata is None and clf.class_names == CLASS_NAMES
    assert "no fmnist_edge metadata" in caplog.text and str(bare) in caplog.text
    np.testing.assert_array_equal(clf._lut, Classifier(tiny_tflite["int8"])._lut)


def test_flip_tta_averages_each_image_and_its_mirror(tiny_tflite, fmnist_test):
    images = fmnist_test.images[:16]
    plain = Classifier(tiny_tflite["int8"])
    flip = Classifier(tiny_tflite["int8"], tta="flip")
    mirrored = np.ascontiguousarray(images[:, :, ::-1])
    expected = (plain.predict_proba(images) + plain.predict_proba(mirrored)) / 2
    got = flip.predict_proba(images)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert not np.allclose(got, plain.predict_proba(images), atol=1e-4)
    assert flip.predict(images[3]).score == pytest.approx(float(expected[3].max()), abs=1e-6)
    # a left-right symmetric image is its own mirror: flip changes nothing
    half = images[:, :, :14]
    symmetric = np.concatenate([half, half[:, :, ::-1]], axis=2)
    np.testing.assert_allclose(
        flip.predict_proba(symmetric), plain.predict_proba(symmetric), rtol=1e-6, atol=1e-7
    )
    # the model's own output tensor, as the Pi check compares it, is without tta
    np.testing.assert_array_equal(flip.output_tensor(images), plain.output_tensor(images))
    assert "tta='flip'" in repr(flip) and "tta" not in repr(plain)
    with pytest.raises(UsageError, match="tta must be one of none, flip"):
        Classifier(tiny_tflite["int8"], tta="rotate")


def test_bundled_model(monkeypatch, tiny_tflite):
    bundled = Path(classifier_mod.__file__).parent / classifier_mod.BUNDLED_MODEL
    if bundled.is_file():
        clf = Classifier()
        assert clf.input_dtype in ("int8", "uint8", "float32") and "bundled" in clf.name
    monkeypatch.setattr(classifier_mod, "BUNDLED_MODEL", "models/missing.tflite")
    with pytest.raises(ModelError, match="no bundled model; pass --model"):
        Classifier()
    assert (bundled.parent / "README.md").is_file()  # the folder ships, with its story


def test_bundled_model_ships_its_run_record():
    """Issue 11: history.csv and metrics.json beside the card are the bundled file's own run."""
    import csv
    import json

    from fmnist_edge.edge_runtime.metadata import read_metadata

    bundled = Path(classifier_mod.__file__).parent / classifier_mod.BUNDLED_MODEL
    meta = read_metadata(str(bundled))["provenance"]
    metrics = json.loads((bundled.parent / "metrics.json").read_text())
    rows = list(csv.DictReader((bundled.parent / "history.csv").read_text().splitlines()))
    assert metrics["config"] == meta["training_config"] and metrics["arch"] == meta["arch"]
    assert metrics["data"]["sha256"] == meta["data_sha256"]
    assert [int(r["epoch"]) for r in rows] == list(range(1, metrics["epochs_completed"] + 1))
    assert metrics["epochs_completed"] == metrics["config"]["epochs"]  # a finished run
    assert meta["training_metrics"]["test_accuracy"] == metrics["test_accuracy"]


def _bad_models(tmp_path, tiny_tflite, bad_shape_models):
    good = Path(tiny_tflite["int8"]).read_bytes()
    (tmp_path / "garbage.tflite").write_bytes(b"this is not a model at all\n" * 10)
    (tmp_path / "truncated.tflite").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty.tflite").write_bytes(b"")
    (tmp_path / "adir.tflite").mkdir()
    return {
        "garbage.tflite": ("not a TFLite model", tmp_path / "garbage.tflite"),
        "truncated.tflite": ("corrupt", tmp_path / "truncated.tflite"),
        "empty.tflite": ("not a TFLite model", tmp_path / "empty.tflite"),
        "missing.tflite": ("not found", tmp_path / "missing.tflite"),
        "adir.tflite": ("directory", tmp_path / "adir.tflite"),
        "rgb32": ("32x32x3 input and no fmnist_edge metadata", bad_shape_models["rgb32"]),
        "five": ("5 outputs and no class names", bad_shape_models["five"]),
    }


def test_bad_models_raise_one_line_model_errors(tmp_path, tiny_tflite, bad_shape_models):
    for _, (words, path) in _bad_models(tmp_path, tiny_tflite, bad_shape_models).items():
        with pytest.raises(ModelError) as info:
            Classifier(path)
        message = str(info.value)
        assert str(path) in message and words in message and "\n" not in message


def test_bad_models_on_the_command_line(tmp_path, tiny_tflite, bad_shape_models, fmnist_test):
    from click.testing import CliRunner

    from fmnist_edge.edge_runtime.cli import main

    Image.fromarray(fmnist_test.images[0]).save(tmp_path / "x.png")
    for key, (_, path) in _bad_models(tmp_path, tiny_tflite, bad_shape_models).items():
        result = CliRunner().invoke(main, ["--model", str(path), str(tmp_path / "x.png")])
        assert result.exit_code == 2, (path, result.output)
        if key == "adir.tflite":  # refused by click's own --model check, also exit 2
            continue
        assert result.output.count("\n") == 1 and "Traceback" not in result.output
        assert result.output.startswith("error: ") and "x.png:" not in result.output


def test_threads(tiny_tflite, fmnist_test):
    two = Classifier(tiny_tflite["int8"], threads=2)
    np.testing.assert_array_equal(two.predict_proba(fmnist_test.images[:4]),
                                  Classifier(tiny_tflite["int8"]).predict_proba(
                                      fmnist_test.images[:4]))
    with pytest.raises(UsageError, match="threads"):
        Classifier(tiny_tflite["int8"], threads=0)


def test_tensor_spec_quantization():
    spec = TensorSpec(0, (1, 28, 28, 1), True, np.dtype(np.int8), 1 / 255, -128)
    x = np.array([0.0, 0.5, 1.0, 2.0, -1.0])
    np.testing.assert_array_equal(spec.quantize(x), [-128, 0, 127, 127, -128])  # clipped
    np.testing.assert_allclose(spec.dequantize(np.array([-128, 127], np.int8)), [0.0, 1.0])
    u8 = TensorSpec(0, (1, 10), True, np.dtype(np.uint8), 1 / 256, 0)
    np.testing.assert_allclose(u8.dequantize(np.array([0, 128, 255], np.uint8)),
                               [0.0, 0.5, 255 / 256])
    f32 = TensorSpec(0, (1, 10), True, np.dtype(np.float32), 0.0, 0)
    assert f32.quantize(np.array([0.25])).dtype == np.float32 and not f32.quantized


def test_fixed_batch_model_loops(tiny_tflite, fmnist_test):
    clf = Classifier(tiny_tflite["int8"])
    expected = clf.predict_proba(fmnist_test.images[:3])
    # Same model, but as if its batch dimension were fixed at 1 (no -1 in the signature).
    spec = clf.model.input
    clf.model.input = TensorSpec(spec.index, spec.shape, False, spec.dtype, spec.scale,
                                 spec.zero_point)
    clf.model._resize(1)
    np.testing.assert_array_equal(clf.predict_proba(fmnist_test.images[:3]), expected)


# --- runtime selection ------------------------------------------------------------------------


def _fake_tflite_runtime(monkeypatch, version, interpreter_error=None, litert=False):
    """Install a stand-in ``tflite_runtime`` package; block ai-edge-litert unless ``litert``."""

    class FakeInterpreter:
        def __init__(self, model_content=None, num_threads=None):
            if interpreter_error is not None:
                raise interpreter_error

    package = types.ModuleType("tflite_runtime")
    package.__version__ = version
    module = types.ModuleType("tflite_runtime.interpreter")
    module.Interpreter = FakeInterpreter
    package.interpreter = module
    monkeypatch.setitem(sys.modules, "tflite_runtime", package)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", module)
    if not litert:
        monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
        monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    return FakeInterpreter


def test_auto_prefers_ai_edge_litert(monkeypatch):
    _fake_tflite_runtime(monkeypatch, "2.14.0", litert=True)
    assert load_runtime().name == "ai-edge-litert" == RUNTIMES[0]
    assert load_runtime("auto").name == "ai-edge-litert"
    with pytest.raises(UsageError, match="--runtime"):
        load_runtime("tensorflow")


@pytest.mark.parametrize("name", ["auto", "tflite-runtime"])
def test_tflite_runtime_214_with_numpy_2_is_refused_with_the_fix(monkeypatch, name):
    _fake_tflite_runtime(monkeypatch, "2.14.0")
    monkeypatch.setattr(np, "__version__", "2.4.6")
    with pytest.raises(RuntimeUnavailable) as info:
        load_runtime(name)
    message = str(info.value)
    assert "tflite-runtime 2.14.0" in message and "numpy 2.4.6" in message
    assert 'pip install "numpy<2"' in message and "pip install ai-edge-litert" in message


def test_tflite_runtime_with_numpy_1_is_used(monkeypatch):
    fake = _fake_tflite_runtime(monkeypatch, "2.14.0")
    monkeypatch.setattr(np, "__version__", "1.26.4")
    runtime = load_runtime()
    assert (runtime.name, runtime.version, runtime.interpreter_class) == (
        "tflite-runtime", "2.14.0", fake)
    assert str(runtime) == "tflite-runtime 2.14.0"


def test_array_api_crash_at_creation_is_reported(monkeypatch):
    # A tflite-runtime whose version passes the check but still dies inside numpy's C API.
    _fake_tflite_runtime(monkeypatch, "2.99.0",
                         interpreter_error=AttributeError("_ARRAY_API not found"))
    runtime = load_runtime("tflite-runtime")
    with pytest.raises(RuntimeUnavailable, match='pip install "numpy<2"'):
        TFLiteModel(b"\0\0\0\0TFL3", "m.tflite", runtime)


def test_no_runtime_at_all(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    with pytest.raises(RuntimeUnavailable, match="no usable TFLite interpreter.*pip install "
                       "ai-edge-litert"):
        load_runtime()


# --- no TensorFlow, light imports ---------------------------------------------------------------


def test_runs_with_tensorflow_unimportable(tiny_tflite, tmp_path, fmnist_test):
    """A fresh interpreter where `import tensorflow` fails: the library and the command work."""
    Image.fromarray(fmnist_test.images[0]).save(tmp_path / "x.png")
    code = f"""
import sys
for name in ("tensorflow", "keras", "tf_keras", "jax", "torch", "matplotlib"):
    sys.modules[name] = None
import fmnist_edge.edge_runtime as edge_runtime
heavy = {{"numpy", "PIL", "ai_edge_litert", "click"}} & set(sys.modules)
assert not heavy, heavy  # importing the package alone stays cheap
from fmnist_edge.edge_runtime import Classifier
import numpy as np
clf = Classifier({str(tiny_tflite["int8"])!r})
print(clf.predict(np.zeros((28, 28), np.uint8)).label)
from fmnist_edge.edge_runtime.cli import main
sys.argv = ["fmnist-infer", "--model", {str(tiny_tflite["int8"])!r}, {str(tmp_path / "x.png")!r}]
main()
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    label, line = result.stdout.splitlines()
    assert label in CLASS_NAMES
    assert line.startswith(f"{tmp_path / 'x.png'}: ") and line.endswith("%)")
    # LiteRT's C++ INFO line is kept off the screen by the library and the command alike
    assert "XNNPACK" not in result.stderr, result.stderr


def test_unknown_output_values_in_metadata_are_refused(tmp_path, tiny_tflite):
    from fmnist_edge.edge_runtime.metadata import read_metadata, write_metadata

    content = Path(tiny_tflite["int8"]).read_bytes()
    meta = read_metadata(content)
    meta["output"]["values"] = "log-probabilities"
    odd = tmp_path / "odd.tflite"
    odd.write_bytes(write_metadata(content, meta))
    with pytest.raises(ModelError, match=r"odd\.tflite: metadata output values 'log-prob"):
        Classifier(odd)


# --- issue 15: what a new user hit ------------------------------------------------------------


def test_python_api_keeps_litert_chatter_off_stderr(tiny_tflite):
    """Item 7: LiteRT prints 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.' on
    descriptor 2 when an interpreter is allocated; a Classifier user never sees it."""
    code = f"""
import numpy as np
from fmnist_edge import Classifier
clf = Classifier({str(tiny_tflite["int8"])!r})
print(clf.predict(np.zeros((28, 28), np.uint8)).label)
print(Classifier().predict_proba(np.zeros((70, 28, 28), np.uint8)).shape)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "0"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == "(70, 10)"
    assert result.stderr == ""


def test_missing_tflite_runtime_names_its_own_install(monkeypatch):
    """Item 12: the fix for a missing tflite-runtime is that package, with the numpy it needs."""
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    with pytest.raises(RuntimeUnavailable) as info:
        load_runtime("tflite-runtime")
    message = str(info.value)
    assert message.startswith("tflite-runtime is not installed")
    assert message.endswith("pip install tflite-runtime 'numpy<2'"), message


def test_predict_proba_reports_the_shape_it_was_given(classifiers):
    """Item 13: the message shows the caller's array, not one with a batch axis added."""
    clf = classifiers["int8"]
    for shape in ((2, 784), (784,), (3, 28, 28, 3)):
        with pytest.raises(ImageError) as info:
            clf.predict_proba(np.zeros(shape, np.uint8))
        assert f"got {shape}" in str(info.value), str(info.value)


def test_predict_takes_encoded_image_bytes(classifiers, fmnist_test, tmp_path):
    """Item 13: PNG or JPEG bytes (an upload) are classified as the file would be."""
    clf = classifiers["int8"]
    Image.fromarray(fmnist_test.images[0]).save(tmp_path / "a.png")
    Image.fromarray(255 - fmnist_test.images[1]).resize((84, 84)).save(tmp_path / "b.jpg")
    for name in ("a.png", "b.jpg"):
        data = (tmp_path / name).read_bytes()
        assert clf.predict(data) == clf.predict(tmp_path / name)
        assert clf.predict(bytearray(data)) == clf.predict(tmp_path / name)
    assert clf.predict_batch([(tmp_path / "a.png").read_bytes()])[0] == clf.predict(
        tmp_path / "a.png")
    for data, words in ((b"", "empty"), (b"hello", "not an image")):
        with pytest.raises(ImageError, match=words) as info:
            clf.predict(data)
        assert "\n" not in str(info.value)


def test_predict_and_predict_proba_check_pixels_alike(classifiers, fmnist_test):
    """Item 13: one validation for both: integer pixels 0-255 accepted, anything else refused
    with the same message."""
    clf = classifiers["int8"]
    batch = fmnist_test.images[:3]
    wide = batch.astype(np.int64)
    np.testing.assert_array_equal(clf.predict_proba(wide), clf.predict_proba(batch))
    assert clf.predict(wide[0]) == clf.predict(batch[0])
    for bad in (batch.astype(np.float32), np.full((3, 28, 28), 300, np.int64)):
        with pytest.raises(ImageError) as batched:
            clf.predict_proba(bad)
        with pytest.raises(ImageError) as single:
            clf.predict(bad[0])
        assert str(batched.value) == str(single.value)


def test_top_k_below_one_is_refused(classifiers, fmnist_test):
    """Item 13: top_k=0 is a usage error naming top_k, in every entry point."""
    from fmnist_edge.edge_runtime.batch import classify_inputs

    clf = classifiers["int8"]
    image = fmnist_test.images[0]
    calls = (
        lambda: clf.predict(image, top_k=0),
        lambda: clf.predict_batch([image], top_k=0),
        lambda: list(classify_inputs(clf, ["x.png"], top_k=0)),
    )
    for call in calls:
        with pytest.raises(UsageError, match=r"^top_k must be >= 1 \(got 0\)$"):
            call()


def test_an_upscaled_dark_background_image_is_classified_as_its_label(fmnist_test, tmp_path):
    """Item 14: a real test image at 56x56 (light object on dark) is Fashion-MNIST-like: auto
    and raw resize it to 28x28; before, auto took it for a photo and negated it."""
    clf = Classifier()  # the bundled model
    images, labels = fmnist_test.images[:30], fmnist_test.labels[:30]
    right = np.flatnonzero(clf.predict_proba(images).argmax(1) == labels)[:10]
    for i in right:
        path = tmp_path / f"{i}.png"
        Image.fromarray(images[i]).resize((56, 56), Image.Resampling.BICUBIC).save(path)
        for mode in ("auto", "raw"):
            assert clf.predict(path, mode=mode).index == labels[i], (i, mode)
