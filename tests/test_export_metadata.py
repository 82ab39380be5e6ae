"""The standard TFLite metadata of exported files, and the -mediapipe.tflite variant.

Real files: conftest's ``tiny_tflite`` (every mode, through export.export) and one more export
here with --target mediapipe. With the ``interop`` extra installed, MediaPipe's own
ImageClassifier runs the variant; without it, that test is skipped, saying so.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fmnist_edge.common.errors import UsageError
from fmnist_edge.common.labels import CLASS_NAMES
from fmnist_edge.edge_runtime.classifier import Classifier
from fmnist_edge.edge_runtime.metadata import metadata_entries, read_metadata, write_metadata
from fmnist_edge.export.metadata_schema import FILE_IDENTIFIER, decode, min_parser_version
from fmnist_edge.export.standard_metadata import (
    LABELS_FILE,
    METADATA_NAME,
    associated_files,
    read_standard_metadata,
    write_standard_metadata,
)

# fixture key -> (input stats, output stats or None for logits)
STATS = {
    "float32": ((0.0, 1.0), None),
    "float16": ((0.0, 1.0), None),
    "int8": ((-128.0, 127.0), None),
    "uint8": ((0.0, 255.0), None),
    "int8-float-io": ((0.0, 1.0), None),
    "int8-softmax": ((-128.0, 127.0), (-128.0, 127.0)),  # int8 probabilities, zero point -128
}


def _tensors(meta):
    (graph,) = meta["subgraph_metadata"]
    (image,) = graph["input_tensor_metadata"]
    (scores,) = graph["output_tensor_metadata"]
    return image, scores


@pytest.mark.parametrize("key", sorted(STATS))
def test_exported_files_carry_the_standard_metadata(tiny_tflite, key):
    content = Path(tiny_tflite[key]).read_bytes()
    raw = metadata_entries(content)[METADATA_NAME]
    assert raw[4:8] == FILE_IDENTIFIER
    meta = decode(raw)
    assert meta["min_parser_version"] == "1.0.0" == min_parser_version(meta)
    assert meta["name"].startswith("fmnist-edge ") and meta["author"] and meta["license"]
    image, scores = _tensors(meta)
    props = image["content"]["content_properties"]
    assert image["content"]["content_properties_type"] == "ImageProperties"
    assert props == {"color_space": "GRAYSCALE", "default_size": {"width": 28, "height": 28}}
    (unit,) = image["process_units"]
    assert unit["options_type"] == "NormalizationOptions"
    assert unit["options"] == {"mean": [0.0], "std": [255.0]}  # (pixel - 0) / 255
    want_in, want_out = STATS[key]
    assert (image["stats"]["min"], image["stats"]["max"]) == ([want_in[0]], [want_in[1]])
    if want_out is None:
        assert scores["name"] == "logits" and "stats" not in scores
    else:
        assert (scores["stats"]["min"], scores["stats"]["max"]) == ([want_out[0]], [want_out[1]])
    (labels,) = scores["associated_files"]
    assert (labels["name"], labels["type"]) == (LABELS_FILE, "TENSOR_AXIS_LABELS")
    # the labels file itself: appended to the model as a zip, stored uncompressed
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        (info,) = archive.infolist()
        assert info.filename == LABELS_FILE and info.compress_type == zipfile.ZIP_STORED
        assert archive.read(info).decode().splitlines() == list(CLASS_NAMES)
    assert read_metadata(content)["class_names"] == list(CLASS_NAMES)  # our record stays


def test_rewriting_keeps_the_model_and_is_idempotent(tiny_tflite, fmnist_test, tmp_path):
    content = Path(tiny_tflite["int8"]).read_bytes()
    bare = write_metadata(content, read_metadata(content))  # re-serialized: the zip is gone
    assert associated_files(bare) == {} and METADATA_NAME in metadata_entries(bare)
    again = write_standard_metadata(bare)
    assert again == write_standard_metadata(again) == content  # same bytes, no date in the zip
    (tmp_path / "bare.tflite").write_bytes(bare)
    (tmp_path / "again.tflite").write_bytes(again)
    x = fmnist_test.images[:200]
    np.testing.assert_array_equal(
        Classifier(tmp_path / "bare.tflite").output_tensor(x),
        Classifier(tmp_path / "again.tflite").output_tensor(x),
    )


def test_bundled_model_carries_the_standard_metadata():
    model = Path(__file__).resolve().parent.parent / "edge_runtime" / "models" / "default.tflite"
    content = model.read_bytes()
    image, scores = _tensors(read_standard_metadata(content))
    assert image["content"]["content_properties"]["color_space"] == "GRAYSCALE"
    assert associated_files(content)[LABELS_FILE].decode().splitlines() == list(CLASS_NAMES)
    assert read_metadata(content)["quantization"]["mode"] == "int8"


# --- --target mediapipe ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def mediapipe_export(tmp_path_factory, tiny_keras):
    """The tiny model exported as int8 with --target mediapipe: {"int8": path, "mediapipe":
    path, "result": ExportResult}."""
    from fmnist_edge.export.config import ExportConfig
    from fmnist_edge.export.exporter import export

    out = tmp_path_factory.mktemp("mediapipe")
    cfg = ExportConfig(
        source=tiny_keras,
        out=out,
        targets=("mediapipe",),
        validate_samples=200,
        calibration_samples=100,
    )
    (result,) = export(cfg)
    (derived,) = result.derived
    return {"int8": result.path, "mediapipe": derived.path, "result": result}


def _io_details(path):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return interp.get_input_details()[0], interp.get_output_details()[0]


def test_mediapipe_file_takes_rgb_uint8_and_gives_probabilities(mediapipe_export, fmnist_test):
    path = mediapipe_export["mediapipe"]
    assert path.name == "model-int8-mediapipe.tflite"
    inp, out = _io_details(path)
    assert list(inp["shape"]) == [1, 28, 28, 3] and inp["dtype"] == np.uint8
    assert list(out["shape"]) == [1, 10] and out["dtype"] == np.float32
    content = path.read_bytes()
    image, scores = _tensors(read_standard_metadata(content))
    assert image["content"]["content_properties"]["color_space"] == "RGB"
    assert image["stats"] == {"max": [255.0], "min": [0.0]}
    assert scores["name"] == "probabilities" and scores["stats"] == {"max": [1.0], "min": [0.0]}
    assert associated_files(content)[LABELS_FILE].decode().splitlines() == list(CLASS_NAMES)
    record = read_metadata(content)
    assert record["input"]["color"] == "rgb" and record["output"]["values"] == "probabilities"
    assert record["provenance"]["derived_from"] == "model-int8.tflite"
    check = mediapipe_export["result"].derived[0].check
    assert check["agreement"] == 1.0 and check["difference_pp"] == 0.0
    x = np.asarray(fmnist_test.images[:200])  # the runtime feeds it gray repeated as RGB
    ours = Classifier(path).predict_proba(x)
    theirs = Classifier(mediapipe_export["int8"]).predict_proba(x)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_mediapipe_file_gives_the_int8_files_probabilities(mediapipe_export, fmnist_test):
    from fmnist_edge.export.validate import rgb_proba

    x = fmnist_test.images[:500]
    ours = Classifier(mediapipe_export["int8"]).predict_proba(x)
    theirs = rgb_proba(mediapipe_export["mediapipe"], x)
    np.testing.assert_allclose(theirs, ours, atol=1e-6)
    assert np.array_equal(theirs.argmax(axis=1), ours.argmax(axis=1))


@pytest.mark.parametrize("key", sorted(STATS))
def test_mediapipe_graph_of_every_mode(tiny_tflite, fmnist_test, tmp_path, key):
    """float32, float16, int8 with int8, uint8 or float I/O, int8 probabilities: the same
    probabilities as the file it is made from, through the Classifier."""
    from fmnist_edge.export.mediapipe_model import mediapipe_model
    from fmnist_edge.export.validate import rgb_proba

    content = Path(tiny_tflite[key]).read_bytes()
    logits = read_metadata(content)["output"]["values"] == "logits"
    (tmp_path / "rgb.tflite").write_bytes(mediapipe_model(content, logits))
    inp, out = _io_details(tmp_path / "rgb.tflite")
    assert (inp["dtype"], out["dtype"]) == (np.uint8, np.float32)
    x = fmnist_test.images[:300]
    ours = Classifier(tiny_tflite[key]).predict_proba(x)
    theirs = rgb_proba(tmp_path / "rgb.tflite", x)
    np.testing.assert_allclose(theirs, ours, atol=1e-6)


def test_mediapipe_graph_takes_luma_like_pillow(mediapipe_export):
    """A colour image reaches the original int8 input as Pillow's convert("L") gray, give or
    take one level (an int8 1x1 convolution, (64 R + 125 G + 24 B) / 213); a gray one exactly."""
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    name = _io_details(mediapipe_export["int8"])[0]["name"]  # the int8 file's input tensor
    path = mediapipe_export["mediapipe"]
    with warnings.catch_warnings():  # "intended for debugging": exactly our use
        warnings.simplefilter("ignore")
        interp = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    original = next(t for t in interp.get_tensor_details() if t["name"] == name)
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    gray = np.repeat(rng.integers(0, 256, (28, 28, 1), dtype=np.uint8), 3, axis=-1)
    for rgb, tolerance in ((colour, 1), (gray, 0)):
        interp.set_tensor(interp.get_input_details()[0]["index"], rgb[None])
        interp.invoke()
        seen = interp.get_tensor(original["index"])[0, ..., 0].astype(int) + 128  # pixel - 128
        pillow = np.asarray(Image.fromarray(rgb).convert("L"), dtype=int)
        assert np.abs(seen - pillow).max() <= tolerance


def test_existing_mediapipe_file_is_not_overwritten(tiny_keras, tmp_path):
    from fmnist_edge.export.config import ExportConfig
    from fmnist_edge.export.exporter import export

    (tmp_path / "model-int8-mediapipe.tflite").write_bytes(b"mine")
    cfg = ExportConfig(source=tiny_keras, out=tmp_path, targets=("mediapipe",))
    with pytest.raises(UsageError, match="model-int8-mediapipe.tflite: already exists"):
        export(cfg)
    assert (tmp_path / "model-int8-mediapipe.tflite").read_bytes() == b"mine"
    assert not (tmp_path / "model-int8.tflite").exists()


def test_unknown_target_is_refused(tiny_keras):
    from fmnist_edge.export.config import ExportConfig

    with pytest.raises(UsageError, match="unknown --target 'coreml'"):
        ExportConfig(source=tiny_keras, targets=("coreml",))


# --- the real consumer: MediaPipe Tasks (pip install -e '.[interop]') ---------------------


def test_mediapipe_image_classifier_runs_the_file(mediapipe_export, fmnist_test):
    """MediaPipe's ImageClassifier, given the file unmodified and SRGB images, names the same
    class as our Classifier on 200 test images, with the same probability."""
    try:
        import mediapipe as mp
        from mediapipe.tasks.metadata import metadata_schema_py_generated as schema
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions
    except ImportError as exc:
        pytest.skip(f"mediapipe is not importable ({exc}): pip install -e '.[interop]'")

    path = mediapipe_export["mediapipe"]
    # MediaPipe's generated schema code reads the metadata as we wrote it
    raw = metadata_entries(path.read_bytes())[METADATA_NAME]
    assert schema.ModelMetadata.ModelMetadataBufferHasIdentifier(raw, 0)
    theirs = schema.ModelMetadataT.InitFromObj(schema.ModelMetadata.GetRootAsModelMetadata(raw, 0))
    assert theirs.minParserVersion == b"1.0.0"
    image = theirs.subgraphMetadata[0].inputTensorMetadata[0]
    assert image.content.contentProperties.colorSpace == schema.ColorSpaceType.RGB
    assert list(image.processUnits[0].options.std) == [255.0]

    x = fmnist_test.images[:200]
    ours = Classifier(mediapipe_export["int8"]).predict_proba(x)
    options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)))
    with ImageClassifier.create_from_options(options) as classifier:
        for pixels, proba in zip(x, ours, strict=True):
            rgb = np.ascontiguousarray(np.repeat(pixels[..., None], 3, axis=-1))
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
            top = result.classifications[0].categories[0]
            # the top class, or one tied with it (int8 logits can tie; the order then differs)
            assert proba[top.index] == pytest.approx(proba.max(), abs=1e-6)
            assert top.category_name == CLASS_NAMES[top.index]
            assert top.score == pytest.approx(proba.max(), abs=1e-5)


def test_cli_target_mediapipe(tiny_keras, tmp_path):
    from click.testing import CliRunner

    from fmnist_edge.export.cli import main

    args = [tiny_keras, "--target", "mediapipe", "--out", tmp_path, "--validate-samples", 100]
    result = CliRunner().invoke(main, [str(a) for a in [*args, "--calibration-samples", 100]])
    assert result.exit_code == 0, result.output
    assert "+ mediapipe" in result.output and "agree 100.00% with int8" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model-int8-mediapipe.tflite",
        "model-int8.tflite",
    ]
    bad = CliRunner().invoke(main, [str(tiny_keras), "--target", "coreml"])
    assert bad.exit_code == 2 and "'coreml' is not 'mediapipe'" in bad.output
