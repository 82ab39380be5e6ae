"""fmnist-train end to end on 512 real images with the tiny model: the run directory, resume,
data-parallel training, and the command's error exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from fmnist_edge.dataset import download
from fmnist_edge.dataset import files as data
from fmnist_edge.train.augment import Augmented
from fmnist_edge.train.cli import main
from fmnist_edge.train.config import TrainConfig
from fmnist_edge.train.trainer import train

RUN_FILES = {
    "model.keras",
    "last.keras",
    "state.json",
    "history.csv",
    "metrics.json",
    "classification_report.json",
    "classification_report.txt",
    "curves.png",
    "confusion_matrix.png",
    "samples.png",
}


def _cfg(tmp_path, **kw):
    base = dict(arch="tiny", epochs=1, batch_size=64, limit=512, out=tmp_path / "run", lr=3e-3)
    return TrainConfig(**{**base, **kw})


def test_one_epoch_writes_the_whole_run_directory(tmp_path):
    metrics = train(_cfg(tmp_path))
    out = tmp_path / "run"
    assert {p.name for p in out.iterdir()} == RUN_FILES  # and no temporary leftovers
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["arch"] == "tiny" and saved["params"] == 5442
    assert saved["data"]["split"] == {"train": 512, "val": 512, "test": 512}
    assert (
        saved["data"]["sha256"]["t10k-labels-idx1-ubyte"] == data.SHA256["t10k-labels-idx1-ubyte"]
    )
    assert saved["config"]["epochs"] == 1 and saved["device"].startswith("CPU")
    assert 0.0 <= saved["test_accuracy"] <= 1.0 and len(saved["epoch_seconds"]) == 1
    assert saved == json.loads(json.dumps(metrics, default=str))
    report = json.loads((out / "classification_report.json").read_text())
    assert set(report) == {"validation", "test"} and len(report["test"]["classes"]) == 10
    for png in ("curves.png", "confusion_matrix.png", "samples.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = keras.models.load_model(out / "model.keras")
    assert model.output_shape == (None, 10)


class _StopAfter(keras.callbacks.Callback):
    """Ctrl-C at the start of epoch ``n`` (0-based), as a user would."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.n:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A 3-epoch run stopped by Ctrl-C as its second epoch began: epoch 1 saved. Its settings;
    a test resumes its own copy of the folder (a run directory may be moved)."""
    cfg = _cfg(tmp_path_factory.mktemp("interrupted"), epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=(_StopAfter(1),))
    return cfg


def test_resume_after_an_interrupted_run(interrupted, copy_run):
    out = interrupted.out  # as Ctrl-C left it
    assert json.loads((out / "state.json").read_text())["epoch"] == 1
    assert not (out / "metrics.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # nothing torn
    cfg = copy_run(interrupted)
    out = cfg.out
    with pytest.raises(Exception, match="already holds a run"):
        train(cfg)  # without --resume the run is never overwritten
    resumed = TrainConfig(**{**cfg.__dict__, "resume": True})
    with pytest.raises(KeyboardInterrupt):
        train(resumed, callbacks=(_StopAfter(2),))
    metrics = train(resumed)
    assert metrics["epochs_completed"] == 3
    assert metrics["resumes"] == [  # each resume kept, across a second interruption
        {"after_epoch": 1, "epochs_before": 3, "epochs": 3},
        {"after_epoch": 2, "epochs_before": 3, "epochs": 3},
    ]
    assert "raised" not in metrics["selection"]
    history = (out / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history] == ["epoch", "1", "2", "3"]
    with pytest.raises(Exception, match="already completed 3 epochs"):
        train(TrainConfig(**{**cfg.__dict__, "resume": True}))


def test_resume_keeps_the_plateau_counters(interrupted, copy_run):
    """--resume continues ReduceLROnPlateau where it stopped: its best val_loss and its wait
    count (Keras resets both when fit starts; a resumed run must not)."""
    cfg = copy_run(interrupted, epochs=2)  # resumed for one more epoch
    state_path = cfg.out / "state.json"
    state = json.loads(state_path.read_text())
    best = state["reduce_lr"]["best"]
    assert best is not None and state["reduce_lr"]["wait"] == 0
    # as if epoch 1 had been the third epoch in a row without improvement (patience 3): a
    # best no later epoch can beat, and a wait one short of a reduction
    state["reduce_lr"] = {"best": 1e-9, "wait": 2, "cooldown_counter": 0}
    state_path.write_text(json.dumps(state))
    train(TrainConfig(**{**cfg.__dict__, "resume": True}))
    lrs = [float(line.split(",")[5]) for line in (cfg.out / "history.csv").read_text().split()[1:]]
    after = json.loads(state_path.read_text())
    assert lrs == pytest.approx([cfg.lr, cfg.lr])  # the rate each epoch ran at
    assert after["lr"] == pytest.approx(cfg.lr * cfg.lr_factor)  # reduced after epoch 2
    assert after["reduce_lr"]["best"] == pytest.approx(1e-9) and after["reduce_lr"]["wait"] == 0


def test_augmentation_shifts_and_flips_but_keeps_the_pixels():
    x = np.zeros((64, 28, 28, 1), np.float32)
    x[:, 10:18, 12:16] = 1.0
    y = np.arange(64) % 10
    batch_x, batch_y = Augmented(x, y, 32, seed=0)[0]
    assert batch_x.shape == (32, 28, 28, 1) and batch_y.shape == (32,)
    assert np.all(batch_x.sum(axis=(1, 2, 3)) == 32.0)  # a 2 px shift never crops the object
    assert len({batch_x[k].tobytes() for k in range(32)}) > 1  # not all the same placement


def test_augmented_training_runs(tmp_path):
    metrics = train(_cfg(tmp_path, augment=True, limit=256))
    assert metrics["epochs_completed"] == 1


def test_distribute_over_two_logical_cpus(tmp_path):
    """MirroredStrategy across a CPU split into two logical devices, in a fresh process."""
    code = textwrap.dedent(
        f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        two = [tf.config.LogicalDeviceConfiguration()] * 2
        tf.config.set_logical_device_configuration(cpu, two)
        from fmnist_edge.train.config import TrainConfig
        from fmnist_edge.train.trainer import train
        m = train(TrainConfig(arch="tiny", epochs=1, batch_size=64, limit=256,
                              out=r"{tmp_path / "dist"}", distribute=True))
        print("DEVICE", m["device"])
        """
    )
    # The strategy's wiring is under test, not the kernels: TensorFlow's default Eigen ones. With
    # oneDNN (which fmnist-train's in-process tests leave set in os.environ) this process died
    # once with SIGSEGV in a full-suite run on the AVX2 EPYC; 6 reruns of it alone passed.
    env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_ENABLE_ONEDNN_OPTS": "0",
    }
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DEVICE CPU x2" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--batch-size", "-1"], "--batch-size must be at least 1"),
        (["--lr", "nan"], "--lr must be a positive number"),
        (["--arch", "vgg"], "unknown --arch 'vgg'"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--bn-images", "-1"], "--bn-images must be at least 0"),
        (["--resume"], "--resume needs --out"),
    ],
)
def test_cli_rejects_nonsense(args, message):
    result = CliRunner().invoke(main, ["--arch", "tiny", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(main, ["--arch", "tiny", "--out", str(blocker / "run")])
    assert result.exit_code == 2
    assert f"--out {blocker / 'run'}: not writable" in result.output


def test_cli_corrupt_data(tmp_path):
    bad = tmp_path / "data"
    bad.mkdir()
    for stem in data.SPLITS["train"] + data.SPLITS["test"]:
        (bad / f"{stem}.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["--arch", "tiny", "--data-dir", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert "train-images-idx3-ubyte.gz: truncated gzip stream" in result.output
    assert not (out / "model.keras").exists()


def test_cli_missing_data(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "KERAS_CACHE", tmp_path / "none")
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "none")
    monkeypatch.setattr(download, "DEFAULT_MIRRORS", ("http://127.0.0.1:9/",))  # refused at once
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    result = CliRunner().invoke(main, ["--arch", "tiny", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "could not download train-images-idx3-ubyte.gz" in result.output


def test_jax_backend_trains_data_parallel(tmp_path):
    """The same code on KERAS_BACKEND=jax (the GPU machine's backend), data-parallel over two
    host devices, in a fresh process."""
    pytest.importorskip("jax")
    code = textwrap.dedent(
        f"""
        from fmnist_edge.train.config import TrainConfig
        from fmnist_edge.train.trainer import train
        m = train(TrainConfig(arch="tiny", epochs=1, batch_size=64, limit=256,
                              out=r"{tmp_path / 'jax'}", distribute=True))
        print("DEVICE", m["device"], m["versions"]["backend"])
        """
    )
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DEVICE CPU x2" in proc.stdout and "jax" in proc.stdout
    assert (tmp_path / "jax" / "model.keras").is_file()
