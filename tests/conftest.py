"""Shared fixtures: real Fashion-MNIST (Debian's package) and tiny real models trained on it."""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# Fixtures that train or convert a real model, and modules whose tests do (train(), export(),
# or the commands that run them in a subprocess).
TRAINING_FIXTURES = {"tiny_keras", "tiny_tflite", "rgb16_tflite"}
TRAINING_MODULES = {
    "test_train.py",
    "test_batchnorm.py",
    "test_train_recipe.py",
    "test_train_compare.py",
    "test_export.py",
    "test_export_cli.py",
    "test_export_metadata.py",
    "test_new_user.py",
    "test_own_data.py",
}
# Modules whose tests start servers, a browser or Ray: not training, but seconds each.
PROCESS_MODULES = {
    "test_serve.py",
    "test_serve_hostile.py",
    "test_serve_page.py",
    "test_serve_oip.py",
    "test_wheel.py",
    "test_infer_ray.py",
}
DATA_FIXTURES = {"fmnist_train", "fmnist_test"} | TRAINING_FIXTURES
NO_DATA = (
    "Fashion-MNIST not found: apt-get install dataset-fashion-mnist "
    "(or set FMNIST_DATA to a folder holding its four files)"
)


def _dataset_missing() -> bool:
    from fmnist_edge.common.errors import DataError
    from fmnist_edge.dataset import locate

    try:
        locate("train", download=False)
        locate("test", download=False)
    except DataError:
        return True
    return False


def pytest_collection_modifyitems(config, items):
    """Mark what trains, converts or starts servers as slow (``pytest -m "not slow"`` runs the
    rest in seconds), and skip what needs the real dataset, with one reason, when it is not
    installed."""
    missing = _dataset_missing()
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        module = item.path.name
        if fixtures & TRAINING_FIXTURES or module in TRAINING_MODULES | PROCESS_MODULES:
            item.add_marker(pytest.mark.slow)
        if missing and (fixtures & DATA_FIXTURES or module in TRAINING_MODULES):
            item.add_marker(pytest.mark.skip(reason=NO_DATA))


@pytest.fixture(scope="session")
def fmnist_train():
    from fmnist_edge.dataset.files import load_split

    return load_split("train", download=False)


@pytest.fixture(scope="session")
def fmnist_test():
    from fmnist_edge.dataset.files import load_split

    return load_split("test", download=False)


@pytest.fixture(scope="session")
def tiny_keras(tmp_path_factory, fmnist_train):
    """A `tiny` model trained for 2 epochs on 3,000 real images (~70% accuracy, a few seconds),
    saved as .keras. Returns the path."""
    import keras

    from fmnist_edge.train.models import build_model

    keras.utils.set_random_seed(0)
    x = fmnist_train.images[:3000, ..., None].astype(np.float32) / 255.0
    y = fmnist_train.labels[:3000]
    model = build_model("tiny")
    for layer in model.layers:  # 94 steps are too few for BatchNorm's default momentum of 0.99
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("tiny") / "model.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory, tiny_keras):
    """The tiny model exported by export.export, with metadata, validated on 200 images.
    Returns {key: path}; keys: float32, float16, int8 (int8 I/O), uint8 (int8 model with uint8
    I/O), int8-float-io (int8 model with float32 I/O): all output logits, the default; and
    int8-softmax (int8, exported with --keep-softmax: int8 probabilities)."""
    from fmnist_edge.export.config import ExportConfig
    from fmnist_edge.export.exporter import export

    out = tmp_path_factory.mktemp("tiny_tflite")
    common = dict(source=tiny_keras, out=out, validate_samples=200, calibration_samples=100)
    paths = {}
    for r in export(ExportConfig(modes=("float32", "float16", "int8"), **common)):
        paths[r.mode] = r.path
    for key, io in (("uint8", "uint8"), ("int8-float-io", "float32")):
        (result,) = export(ExportConfig(modes=("int8",), int8_io=io, **common))
        paths[key] = result.path
    softmax = {**common, "out": out / "int8-softmax.tflite"}
    (result,) = export(ExportConfig(modes=("int8",), keep_softmax=True, **softmax))
    paths["int8-softmax"] = result.path
    return paths


@pytest.fixture(scope="session")
def rgb16_tflite(tmp_path_factory, fmnist_train):
    """A model of another size and colour: 16x16 RGB, three classes of real Fashion-MNIST
    images (tinted per class, so colour carries information), trained one epoch through
    fmnist-train's own-data path and exported to int8 by export.export. Returns its path."""
    from PIL import Image

    from fmnist_edge.export.config import ExportConfig
    from fmnist_edge.export.exporter import export
    from fmnist_edge.train.config import TrainConfig
    from fmnist_edge.train.trainer import train

    root = tmp_path_factory.mktemp("rgb16")
    tints = {"boot": (255, 160, 160), "sandal": (160, 255, 160), "sneaker": (160, 160, 255)}
    for (name, tint), label in zip(tints.items(), (9, 5, 7), strict=True):
        folder = root / "data" / name
        folder.mkdir(parents=True)
        for i, pixels in enumerate(fmnist_train.images[fmnist_train.labels == label][:24]):
            gray = Image.fromarray(pixels).resize((16, 16), Image.Resampling.BILINEAR)
            rgb = np.asarray(gray.convert("RGB"), np.float32) * np.array(tint) / 255.0
            Image.fromarray(rgb.astype(np.uint8)).save(folder / f"{i:03d}.png")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))  # own data's decode cache
        cfg = TrainConfig(
            arch="tiny", epochs=1, data=root / "data", out=root / "run", image_size=16, color="rgb"
        )
        train(cfg)
        (result,) = export(ExportConfig(source=root / "run", modes=("int8",)))
    return result.path


@pytest.fixture(autouse=True)
def _private_hint_cache(tmp_path_factory, monkeypatch):
    """fmnist-bench records which runtime was fastest for fmnist-infer --verbose in the user's
    cache (edge_runtime/hints.py): a test's runs write into a folder of their own instead."""
    monkeypatch.setenv("FMNIST_EDGE_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def copy_run(tmp_path):
    """``copy_run(cfg, **changes)``: a TrainConfig with its run directory copied, hidden files
    too, to tmp_path / "run" (the fixture's run stays as it is for the other tests), and
    ``changes`` applied."""

    def copy(cfg, **changes):
        shutil.copytree(cfg.out, tmp_path / "run")
        return dataclasses.replace(cfg, out=tmp_path / "run", **changes)

    return copy
