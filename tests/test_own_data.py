"""Own data (issue 23): every layout trains, exports int8, classifies, serves and benches with
the user's class names, on real images cut from the Debian Fashion-MNIST (under other names
and sizes) and from scikit-learn's bundled digits; bad inputs get one line and exit 2."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fmnist_edge.dataset.prepare import DataSpec, prepare
from fmnist_edge.dataset.sources import list_source

SHOES = {5: "sandal", 7: "sneaker", 9: "boot"}  # Fashion-MMNIST labels -> the user's names
PER_CLASS = 48


def _pick(split, per_class: int, classes=SHOES):
    """(images, labels 0..K-1, names) of ``per_class`` images of each of ``classes``."""
    idx = np.concatenate([np.flatnonzero(split.labels == c)[:per_class] for c in classes])
    remap = {c: i for i, c in enumerate(sorted(classes, key=classes.get))}
    names = tuple(sorted(classes.values()))
    return split.images[idx], np.array([remap[c] for c in split.labels[idx]]), names


def _save(image: np.ndarray, path: Path, size: int | None = None, rgb: bool = False) -> None:
    img = Image.fromarray(image)
    if size is not None and size != image.shape[0]:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    (img.convert("RGB") if rgb else img).save(path)


def write_folders(root: Path, images, labels, names, size=None, rgb=False) -> Path:
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        _save(image, root / names[label] / f"{i:05d}.png", size, rgb)
    return root


def write_csv(root: Path, images, labels, names=None) -> Path:
    """The hackathon layout: train.csv (id,label), train/{id}.png; classes.txt when named."""
    lines = ["id,label"]
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        _save(image, root / "train" / f"{i}.png")
        lines.append(f"{i},{label}")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    if names is not None:
        (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root / "train.csv"


def _idx(array: np.ndarray) -> bytes:
    head = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + np.ascontiguousarray(array, np.uint8).tobytes()


def write_idx(root: Path, train, test, names=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, (x, y) in (("train", train), ("t10k", test)):
        (root / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(x)))
        (root / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(y)))
    if names is not None:
        (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture(scope="module")
def shoes(fmnist_train, fmnist_test):
    return _pick(fmnist_train, PER_CLASS), _pick(fmnist_test, 16)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the decode cache


# --- layouts and the decode ----------------------------------------------------------------


def test_each_layout_lists_its_classes_and_images(tmp_path, shoes):
    (x, y, names), (tx, ty, _) = shoes
    folders = write_folders(tmp_path / "folders", x, y, names)
    split = tmp_path / "split"
    write_folders(split / "train", x, y, names)
    write_folders(split / "valid", tx[:12], ty[:12], names)
    write_folders(split / "test", tx[12:], ty[12:], names)
    csv_file = write_csv(tmp_path / "csv", x, y, names)
    idx = write_idx(tmp_path / "idx", (x, y), (tx, ty), names)
    for path, kind, splits in (
        (folders, "folders", {"train"}),
        (split, "split-folders", {"train", "val", "test"}),
        (csv_file, "csv", {"train"}),
    ):
        listing = list_source(path)
        assert (listing.kind, listing.class_names) == (kind, names)
        assert set(listing.splits) == splits
        assert np.bincount(listing.splits["train"].labels).tolist() == [PER_CLASS] * 3
    listing = list_source(idx)
    assert listing.kind == "idx" and listing.class_names == names
    assert listing.arrays["test"][0].shape == (len(tx), 28, 28, 1)
    letters = write_idx(tmp_path / "letters", (x, y + 1), (tx, ty + 1), names)  # EMNIST's 1..K
    np.testing.assert_array_equal(list_source(letters).arrays["train"][1], y)


def test_the_decode_is_the_runtime_conversion_and_is_cached(tmp_path, shoes):
    from fmnist_edge.edge_runtime.preprocess import to_array

    (x, y, names), _ = shoes
    root = write_folders(tmp_path / "big", x[::4], y[::4], names, size=56, rgb=True)
    spec = DataSpec(root, image_size=32, color="rgb", val_fraction=0.2)
    first = prepare(spec)
    again = prepare(spec)  # from the cache: the same pixels, memory-mapped
    assert isinstance(again.dataset.train.images.base, np.memmap)
    np.testing.assert_array_equal(np.asarray(first.train.images), np.asarray(again.train.images))
    path = first.train.paths[0]
    np.testing.assert_array_equal(
        np.asarray(first.train.images[:1])[0], to_array(path, "raw", (32, 32), "rgb")
    )
    assert first.dataset.image_size == (32, 32) and first.train.images.shape[1:] == (32, 32, 3)
    cached = list((tmp_path / "cache" / "fmnist-edge" / "decoded").glob("*.npy"))
    assert len(cached) == 1


def test_defaults_follow_the_images(tmp_path, shoes):
    (x, y, names), _ = shoes
    gray = prepare(DataSpec(write_folders(tmp_path / "g", x[::4], y[::4], names)))
    assert (gray.dataset.image_size, gray.dataset.color) == ((28, 28), "grayscale")
    rgb = prepare(DataSpec(write_folders(tmp_path / "c", x[::4], y[::4], names, 100, rgb=True)))
    assert (rgb.dataset.image_size, rgb.dataset.color) == ((64, 64), "rgb")  # capped at 64


def test_split_is_stratified_and_seeded(tmp_path, shoes):
    (x, y, names), _ = shoes
    root = write_folders(tmp_path / "f", x, y, names)
    a, b = prepare(DataSpec(root, val_fraction=0.25)), prepare(DataSpec(root, val_fraction=0.25))
    assert np.bincount(a.val.labels).tolist() == [12, 12, 12]
    assert a.val.paths == b.val.paths and not set(a.val.paths) & set(a.train.paths)


def test_digits_a_second_real_set(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(np.rint(digits.images * 255 / 16), 0, 255).astype(np.uint8)
    names = ("eight", "five", "four", "nine", "one", "seven", "six", "three", "two", "zero")
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    labels = np.array([names.index(words[t]) for t in digits.target])
    root = write_folders(tmp_path / "digits", pixels, labels, names)
    data = prepare(DataSpec(root))
    assert data.dataset.class_names == names
    assert data.dataset.image_size == (16, 16)  # 8x8 images: the default's floor
    assert len(data.train) + len(data.val) == len(labels)


# --- bad input: one line, exit 2, nothing left -----------------------------------------------


def _train_cli(args: list[str]):
    from fmnist_edge.train.cli import main

    return CliRunner().invoke(main, ["--arch", "tiny", "--epochs", "1", *args])


def _one_line_exit_2(result, *words):
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and "Traceback" not in result.output, result.output
    for word in words:
        assert word in line, line


def test_bad_data_gets_one_line_and_leaves_nothing(tmp_path, shoes):
    (x, y, names), _ = shoes
    out = tmp_path / "run"
    cases = []
    corrupt = write_folders(tmp_path / "corrupt", x[::4], y[::4], names)
    bad = sorted((corrupt / names[0]).glob("*.png"))[1]
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    cases.append((corrupt, [str(bad), "truncated"]))
    empty = write_folders(tmp_path / "empty", x[::4], y[::4], names)
    (empty / "zebra").mkdir()
    cases.append((empty, ["zebra", "empty class folder"]))
    single = write_folders(tmp_path / "single", x[:5], np.zeros(5, int), names)
    cases.append((single, ["at least 2 classes"]))
    labelled = write_csv(tmp_path / "labels", x[:6], np.array([0, 1, 2, 0, 1, 7]), names)
    cases.append((labelled, ["train.csv:7", "label 7 is not in", "classes.txt"]))
    missing = write_csv(tmp_path / "missing", x[:6], y[:6], names)
    (missing.parent / "train" / "4.png").unlink()
    cases.append((missing, ["train.csv:6", "4.png not found"]))
    cases.append((tmp_path / "nowhere", ["nowhere", "no such file or folder"]))
    for data, words in cases:
        _one_line_exit_2(_train_cli(["--data", str(data), "--out", str(out)]), *words)
        assert not out.exists(), data


def test_skip_bad_trains_without_them_and_counts_them(tmp_path, shoes):
    (x, y, names), _ = shoes
    root = write_folders(tmp_path / "f", x[::4], y[::4], names)
    (root / names[1] / "junk.png").write_bytes(b"not a png")
    out = tmp_path / "run"
    result = _train_cli(["--data", str(root), "--out", str(out), "--skip-bad"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["checks"]["skipped"] == 1
    assert metrics["data"]["dataset"]["skipped"]["first"][0][0].endswith("junk.png")
    assert sum(metrics["data"]["split"].values()) == 36


def test_leaks_are_reported_and_dropped(tmp_path, shoes):
    (x, y, names), (tx, ty, _) = shoes
    root = tmp_path / "split"
    write_folders(root / "train", x, y, names)
    write_folders(root / "val", np.concatenate([tx, x[:2]]), np.concatenate([ty, y[:2]]), names)
    data = prepare(DataSpec(root))
    assert data.report["leaks"]["count"] == 2 and not data.report["leaks"]["dropped"]
    first = data.report["leaks"]["first"][0]
    assert first[0].endswith("train/sandal/00000.png") and first[1].endswith("val/sandal/00048.png")
    dropped = prepare(DataSpec(root, drop_leaks=True))
    assert len(dropped.train) == len(data.train) - 2 and dropped.report["leaks"]["dropped"]


# --- train, export, classify, serve, bench -------------------------------------------------


def _train(data: Path, out: Path, **settings):
    from fmnist_edge.train.config import TrainConfig
    from fmnist_edge.train.trainer import train

    cfg = TrainConfig(arch="tiny", epochs=1, data=data, out=out, **settings)
    return train(cfg)


def _export(run: Path, targets=()):
    from fmnist_edge.export.config import ExportConfig
    from fmnist_edge.export.exporter import export

    (result,) = export(ExportConfig(source=run, modes=("int8",), targets=targets))
    return result


def _float_ops(path: Path) -> set[str]:
    """dtypes of the int8 file's tensors other than int8 weights/activations and int32 biases."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return {np.dtype(t["dtype"]).name for t in interp.get_tensor_details()} - {"int8", "int32"}


@pytest.fixture(scope="module")
def own_models(tmp_path_factory, shoes):
    """One run per look: 32x32 RGB from class folders, 64x64 gray from train/val/test folders,
    each trained one epoch and exported to int8 with its MediaPipe variant."""
    (x, y, names), (tx, ty, _) = shoes
    root = tmp_path_factory.mktemp("own")
    cache = root / "cache"
    import os

    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    try:
        rgb = write_folders(root / "rgb", x, y, names, size=40, rgb=True)
        gray = root / "gray"
        write_folders(gray / "train", x, y, names, size=64)
        write_folders(gray / "val", tx[:24], ty[:24], names, size=64)
        write_folders(gray / "test", tx[24:], ty[24:], names, size=64)
        runs = {}
        for key, data, settings in (
            ("rgb32", rgb, {"image_size": 32, "color": "rgb"}),
            ("gray64", gray, {"image_size": 64, "color": "gray"}),
        ):
            out = root / f"run-{key}"
            metrics = _train(data, out, **settings)
            runs[key] = (out, metrics, _export(out, targets=("mediapipe",)))
        yield runs
    finally:
        if old is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old


@pytest.mark.parametrize("key, shape", [("rgb32", (32, 32, 3)), ("gray64", (64, 64))])
def test_own_models_export_full_int8_and_classify_by_their_names(own_models, key, shape):
    from fmnist_edge import Classifier

    out, metrics, result = own_models[key]
    assert metrics["data"]["dataset"]["class_names"] == ["boot", "sandal", "sneaker"]
    assert metrics["config"]["image_size"] == shape[0]  # what was chosen is recorded
    assert _float_ops(result.path) == set()  # full integer: no float tensor anywhere
    clf = Classifier(result.path)
    assert clf.class_names == ("boot", "sandal", "sneaker") and clf.image_shape == shape
    assert clf.record.dataset["kind"] in ("folders", "split-folders")
    image = next(out.parent.glob("*/**/sneaker/*.png"))
    assert clf.predict(image).label in clf.class_names
    with pytest.raises(Exception, match="Fashion-MNIST's conversion"):
        clf.predict(image, mode="photo")
    # its standard metadata says the same: labels.txt and the colour space
    from fmnist_edge.export.standard_metadata import associated_files, read_standard_metadata

    content = result.path.read_bytes()
    assert associated_files(content)["labels.txt"] == b"boot\nsandal\nsneaker\n"
    image_meta = read_standard_metadata(content)["subgraph_metadata"][0]["input_tensor_metadata"]
    color = image_meta[0]["content"]["content_properties"]["color_space"]
    assert color == ("RGB" if len(shape) == 3 else "GRAYSCALE")


@pytest.mark.parametrize("key", ["rgb32", "gray64"])
def test_own_models_run_in_mediapipe(own_models, key):
    mp = pytest.importorskip("mediapipe")
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions

    from fmnist_edge import Classifier

    out, _, result = own_models[key]
    (derived,) = result.derived
    clf = Classifier(result.path)
    options = ImageClassifierOptions(
        max_results=1, base_options=BaseOptions(model_asset_path=str(derived.path))
    )
    images = sorted(out.parent.glob("*/**/boot/*.png"))[:6]
    with ImageClassifier.create_from_options(options) as classifier:
        for path in images:
            pixels = clf.to_array(path)  # the model's size, gray or RGB
            rgb = np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels
            got = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
            top = got.classifications[0].categories[0]
            assert top.category_name == clf.predict(pixels).label


# fmnist-bench for its scores: every model on the run's images, a few timed calls each, none
# of the timing extras (plots, cold starts, the runtime table, LiteRT's tool: test_bench.py)
SCORES_ONLY = dict(
    plots=False, cold_start_reps=0, runs=5, keras_runs=5, runtime_rounds=0, litert_tool=False
)


def test_fmnist_infer_and_bench_use_the_runs_names_and_split(own_models, tmp_path):
    from fmnist_edge.benchmarks.config import BenchConfig
    from fmnist_edge.benchmarks.runner import run_benchmark
    from fmnist_edge.edge_runtime.cli import main as infer

    out, _, result = own_models["gray64"]
    folder = out.parent / "gray" / "test" / "boot"
    printed = CliRunner().invoke(infer, ["--model", str(result.path), str(folder), "--json"])
    assert printed.exit_code == 0, printed.output
    rows = [json.loads(line) for line in printed.output.splitlines()]
    assert len(rows) == len(list(folder.glob("*.png")))
    assert {r["label"] for r in rows} <= {"boot", "sandal", "sneaker"}
    cfg = BenchConfig.quick_defaults(run_dir=out, out_dir=tmp_path / "bench", **SCORES_ONLY)
    report = run_benchmark(cfg).data
    assert report["data"]["class_names"] == ["boot", "sandal", "sneaker"]
    assert report["data"]["subset"] == "the run's test split" and report["data"]["images"] == 24
    for accuracy in report["accuracy"].values():
        assert list(accuracy["per_class"]) == ["boot", "sandal", "sneaker"]


@pytest.mark.parametrize(
    "key, folder, shape",
    [("rgb32", "rgb", [1, 32, 32, 3]), ("gray64", "gray/val", [1, 64, 64, 1])],
)
def test_fmnist_serve_shows_the_models_classes(own_models, key, folder, shape):
    from serve_helpers import call, start_server

    out, _, result = own_models[key]
    image = next((out.parent / folder / "sandal").glob("*.png")).read_bytes()
    server = start_server(["--model", str(result.path), "--workers", "1"])
    try:
        info = call(server, "GET", "/v1/model").json()
        assert info["class_names"] == ["boot", "sandal", "sneaker"]
        assert info["modes"] == ["auto", "raw"] and info["input"]["shape"] == shape
        reply = call(server, "POST", "/v1/classify?top_k=3", image)
        assert reply.status == 200 and reply.json()["label"] in info["class_names"]
        assert [t["label"] for t in reply.json()["top_k"]] != []
        refused = call(server, "POST", "/v1/classify?mode=photo", image)
        assert refused.status == 400 and "Fashion-MNIST's conversion" in refused.json()["message"]
        page = call(server, "GET", "/").body.decode()
        assert 'id="lead"' in page  # the page fills in the classes from /v1/model
    finally:
        server.stop()


def test_hackathon_csv_trains_the_same_model_as_the_idx_files(tmp_path, fmnist_train):
    """Fashion-MNIST written in the hackathon layout (train.csv in the IDX files' order,
    train/{id}.png, 28x28 gray) decodes to the same arrays and trains the same weights."""
    import keras

    x, y = fmnist_train.images[:600], fmnist_train.labels[:600]
    csv_file = write_csv(tmp_path / "hackathon", x, y)
    idx = write_idx(tmp_path / "idx", (x, y), (x[:10], y[:10]))
    a, b = prepare(DataSpec(csv_file)), prepare(DataSpec(idx))
    assert a.dataset.class_names == b.dataset.class_names == tuple(str(i) for i in range(10))
    np.testing.assert_array_equal(np.asarray(a.train.images), np.asarray(b.train.images))
    np.testing.assert_array_equal(a.train.labels, b.train.labels)
    np.testing.assert_array_equal(np.asarray(a.val.images), np.asarray(b.val.images))
    _train(csv_file, tmp_path / "run-csv")
    _train(idx, tmp_path / "run-idx")
    wa = keras.saving.load_model(tmp_path / "run-csv" / "last.keras").get_weights()
    wb = keras.saving.load_model(tmp_path / "run-idx" / "last.keras").get_weights()
    for u, v in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(u, v)


def test_csv_and_idx_runs_export_classify_and_bench(tmp_path, fmnist_train, fmnist_test):
    """The two other layouts end to end: the hackathon CSV with classes.txt, and an IDX folder
    with its test files; fmnist-infer prints the names, fmnist-bench scores the test split."""
    from fmnist_edge import Classifier
    from fmnist_edge.benchmarks.config import BenchConfig
    from fmnist_edge.benchmarks.runner import run_benchmark
    from fmnist_edge.edge_runtime.cli import main as infer

    (x, y, names), (tx, ty, _) = _pick(fmnist_train, 40), _pick(fmnist_test, 10)
    csv_file = write_csv(tmp_path / "hackathon", x, y, names)
    idx = write_idx(tmp_path / "idx", (x, y), (tx, ty), names)
    for data in (csv_file, idx):
        run = tmp_path / f"run-{data.stem}"
        _train(data, run)
        result = _export(run)
        assert Classifier(result.path).class_names == names
        image = tmp_path / "hackathon" / "train" / "0.png"
        printed = CliRunner().invoke(infer, ["--model", str(result.path), str(image)])
        assert printed.exit_code == 0 and printed.output.split(": ")[1].split(" (")[0] in names
    cfg = BenchConfig.quick_defaults(
        run_dir=tmp_path / "run-idx", out_dir=tmp_path / "bench", **SCORES_ONLY
    )
    report = run_benchmark(cfg).data
    assert report["data"]["subset"] == "the run's test split" and report["data"]["images"] == 30
