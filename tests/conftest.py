"""Shared fixtures: real Fashion-MNIST (Debian's package) and tiny real models trained on it."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@pytest.fixture(scope="session")
def fmnist_train():
    from edge_runtime.data import load_split

    return load_split("train", download=False)


@pytest.fixture(scope="session")
def fmnist_test():
    from edge_runtime.data import load_split

    return load_split("test", download=False)


@pytest.fixture(scope="session")
def tiny_keras(tmp_path_factory, fmnist_train):
    """A `tiny` model trained for 2 epochs on 3,000 real images (~70% accuracy, a few seconds),
    saved as .keras. Returns the path."""
    import keras

    from train.models import build_model

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
    from export.config import ExportConfig
    from export.exporter import export

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
