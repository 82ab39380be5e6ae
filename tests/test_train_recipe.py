"""The training options of the published recipe, each alone on tiny inputs: augmentation,
label smoothing, the schedule, training on every image, EMA, named recipes, and a run
directory that is the single source of its settings on --resume."""

from __future__ import annotations

import csv
import json
import shutil

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from fmnist_edge.train import augment
from fmnist_edge.train.cli import main, resolve_settings
from fmnist_edge.train.config import TrainConfig
from fmnist_edge.train.optim import lr_at, make_loss
from fmnist_edge.train.recipes import RECIPES
from fmnist_edge.train.trainer import data_record, load_data, train


def _cfg(tmp_path, **kw):
    base = dict(arch="tiny", epochs=1, batch_size=64, limit=256, out=tmp_path / "run", lr=3e-3)
    return TrainConfig(**{**base, **kw})


def _history(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --- augmentation --------------------------------------------------------------------------


def test_random_erasing_changes_pixels_inside_a_box_and_nowhere_else():
    x = np.full((200, 28, 28, 1), 0.25, np.float32)
    out = augment.erase(x, np.random.default_rng(7), p=0.5)
    boxes = augment.erase_boxes(200, np.random.default_rng(7), p=0.5)  # the same draws
    assert np.all(x == 0.25)  # the input is left alone
    erased = 0
    for k, box in enumerate(boxes):
        changed = out[k, ..., 0] != 0.25
        if box is None:
            assert not changed.any()
            continue
        erased += 1
        top, left, h, w = box
        inside = np.zeros((28, 28), bool)
        inside[top : top + h, left : left + w] = True
        assert changed[inside].all() and not changed[~inside].any()
        assert 0.02 * 784 * 0.8 <= h * w <= 0.4 * 784 * 1.2  # the paper's area range, rounded
        assert np.all((out[k][inside] >= 0) & (out[k][inside] < 1))
    assert 70 <= erased <= 130  # p = 0.5 of 200
    assert np.array_equal(augment.erase(x, np.random.default_rng(0), p=0.0), x)


def test_crop_with_padding_moves_but_never_cuts_a_centred_object():
    x = np.zeros((64, 28, 28, 1), np.float32)
    x[:, 8:20, 8:20] = 1.0
    out = augment.crop(x, np.random.default_rng(0), pad=4)
    assert out.shape == x.shape and np.all(out.sum(axis=(1, 2, 3)) == 144.0)
    assert len({o.tobytes() for o in out}) > 10  # many placements
    assert np.array_equal(augment.crop(x, np.random.default_rng(0), pad=0), x)


def test_flip_mirrors_about_half_the_images():
    x = np.zeros((100, 28, 28, 1), np.float32)
    x[:, :, :5] = 1.0
    out = augment.flip(x, np.random.default_rng(0))
    flipped = out[:, 0, -1, 0] == 1.0
    assert 30 < flipped.sum() < 70
    assert np.array_equal(out[flipped], x[flipped][:, :, ::-1]) and np.array_equal(
        out[~flipped], x[~flipped]
    )


# --- loss and schedule ---------------------------------------------------------------------


def test_label_smoothing_changes_the_loss(tmp_path):
    y = np.array([0, 3, 9])
    p = np.full((3, 10), 0.02, np.float32)
    p[np.arange(3), y] = 0.82
    plain = float(make_loss(_cfg(tmp_path))(y, p))
    smooth = float(make_loss(_cfg(tmp_path, label_smoothing=0.1))(np.eye(10)[y], p))
    assert plain == pytest.approx(-np.log(0.82), rel=1e-5)
    # targets 0.91 on the true class and 0.01 elsewhere
    assert smooth == pytest.approx(-(0.91 * np.log(0.82) + 0.09 * np.log(0.02)), rel=1e-5)


def test_warmup_then_cosine_to_zero(tmp_path):
    cfg = _cfg(tmp_path, epochs=10, lr=0.1, warmup=2, cosine=True)
    assert lr_at(cfg, 0) == 0 and lr_at(cfg, 1) == pytest.approx(0.05)
    assert lr_at(cfg, 2) == pytest.approx(0.1) and lr_at(cfg, 6) == pytest.approx(0.05)
    assert lr_at(cfg, 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(_cfg(tmp_path, epochs=10, lr=0.1, warmup=2), 7) == 0.1  # constant after


# --- training on all 60,000 ----------------------------------------------------------------


def test_val_fraction_zero_uses_every_training_image(tmp_path):
    data = load_data(TrainConfig(val_fraction=0.0, out=tmp_path))
    assert data_record(data)["split"] == {"train": 60000, "val": 0, "test": 10000}
    assert np.bincount(data.train.labels).tolist() == [6000] * 10


# Every option of the recipe at once, on every training image (no validation split)
RECIPE_SETTINGS = dict(optimizer="sgd", lr=0.05, flip=True, crop_pad=4, erase=0.5, epochs=2)
RECIPE_SETTINGS.update(label_smoothing=0.1, cosine=True, warmup=1.0, val_fraction=0.0)


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    """A finished two-epoch run with RECIPE_SETTINGS, read by the tests below: its settings
    and what train() returned."""
    cfg = _cfg(tmp_path_factory.mktemp("a"), **RECIPE_SETTINGS)
    return cfg, train(cfg)


def test_val_fraction_zero_writes_no_validation_metrics(recipe_run):
    cfg, metrics = recipe_run
    assert cfg.val_fraction == 0.0 and cfg.epochs == 2
    assert "val_accuracy" not in metrics and metrics["selection"].startswith("last epoch (2)")
    assert metrics["resumes"] == [] and "raised" not in metrics["selection"]
    rows = _history(cfg.out / "history.csv")
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "lr", "seconds"] and len(rows) == 2
    report = json.loads((cfg.out / "classification_report.json").read_text())
    assert set(report) == {"test"}
    # model.keras is the last epoch: the same weights as last.keras
    best = keras.models.load_model(cfg.out / "model.keras")
    last = keras.models.load_model(cfg.out / "last.keras")
    for a, b in zip(best.weights, last.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# --- EMA and the optimizer across --resume -------------------------------------------------


class _Capture(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.saved = None

    def on_epoch_end(self, epoch, logs=None):
        self.saved = [(v.path, v.numpy().copy()) for v in self.model.optimizer.variables]


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, n):
        super().__init__()
        self.n = n

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.n:
            raise KeyboardInterrupt


def test_resume_restores_the_ema_and_the_optimizer(tmp_path):
    cfg = _cfg(tmp_path, epochs=2, optimizer="sgd", lr=0.05, ema=0.9, weight_decay=1e-3)
    capture = _Capture()
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=(capture, _StopAfter(1)))
    restored = keras.models.load_model(cfg.out / "last.keras").optimizer
    assert restored.use_ema and restored.ema_momentum == pytest.approx(0.9)
    assert int(restored.iterations.numpy()) == 4  # 256 images / 64 a step, one epoch
    names = [name.split("/")[-1] for name, _ in capture.saved]
    assert any(n.endswith("_average") for n in names)
    assert any(n.endswith("_momentum") for n in names)
    assert len(restored.variables) == len(capture.saved)
    for v, (name, saved) in zip(restored.variables, capture.saved, strict=True):
        assert v.path.split("/")[-1] == name.split("/")[-1]
        if name.endswith(("_average", "_momentum")):  # the EMA and the momentum, as they were
            np.testing.assert_array_equal(v.numpy(), saved)
    # with EMA, model.keras holds the averaged weights, not the raw ones of last.keras
    best = keras.models.load_model(cfg.out / "model.keras")
    last = keras.models.load_model(cfg.out / "last.keras")
    assert any(
        not np.array_equal(a.numpy(), b.numpy())
        for a, b in zip(best.trainable_weights, last.trainable_weights, strict=True)
    )
    metrics = train(TrainConfig(**{**cfg.__dict__, "resume": True}))
    assert metrics["epochs_completed"] == 2 and "averaged (EMA)" in metrics["selection"]
    assert "ema_val_accuracy" in _history(cfg.out / "history.csv")[0]


# --- the run directory is the single source of its settings --------------------------------


@pytest.fixture(scope="module")
def cosine_run(tmp_path_factory):
    """A finished one-epoch run with a cosine schedule, SGD and augmentation. Its settings;
    a test that changes the run works on a copy (shutil.copytree to its own --out)."""
    root = tmp_path_factory.mktemp("cosine")
    cfg = _cfg(root, epochs=1, cosine=True, flip=True, crop_pad=3, optimizer="sgd", lr=0.05)
    train(cfg)
    return cfg


def test_resume_takes_the_settings_from_the_run(cosine_run):
    cfg = cosine_run
    resumed = resolve_settings({"epochs": 2}, cfg.out, None, resume=True)
    assert resumed.arch == "tiny" and resumed.cosine and resumed.crop_pad == 3
    assert resumed.optimizer == "sgd" and resumed.limit == 256 and resumed.epochs == 2
    with pytest.raises(Exception, match=r"trained with --arch tiny, not edge-m"):
        resolve_settings({"arch": "edge-m", "epochs": 2}, cfg.out, None, resume=True)
    with pytest.raises(Exception, match=r"trained with --cosine on, not off"):
        resolve_settings({"cosine": False, "epochs": 2}, cfg.out, None, resume=True)


def test_extending_a_finished_cosine_run_trains(cosine_run, copy_run):
    cfg = copy_run(cosine_run)
    before = [w.numpy() for w in keras.models.load_model(cfg.out / "last.keras").weights]
    metrics = train(resolve_settings({"epochs": 2}, cfg.out, None, resume=True))
    rows = _history(cfg.out / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[1]["lr"]) > 1e-3
    assert metrics["resumes"] == [{"after_epoch": 1, "epochs_before": 1, "epochs": 2}]
    assert metrics["selection"].endswith("; --epochs raised from 1 to 2 by --resume after epoch 1")
    assert metrics["train_seconds"] == pytest.approx(sum(float(r["seconds"]) for r in rows))
    after = keras.models.load_model(cfg.out / "last.keras").weights
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, after, strict=True))


def test_shortening_an_interrupted_run_is_recorded(tmp_path):
    cfg = _cfg(tmp_path, epochs=3, cosine=True, optimizer="sgd", lr=0.05)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=(_StopAfter(1),))
    metrics = train(resolve_settings({"epochs": 2}, cfg.out, None, resume=True))
    assert metrics["resumes"] == [{"after_epoch": 1, "epochs_before": 3, "epochs": 2}]
    assert metrics["selection"].endswith("; --epochs lowered from 3 to 2 by --resume after epoch 1")


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A finished one-epoch run made by the command, with a flag (--augment) that a resume must
    take from the run. Its folder; a test copies it to its own before it changes anything."""
    out = tmp_path_factory.mktemp("cli") / "run"
    args = ["--arch", "tiny", "--epochs", "1", "--limit", "128", "--augment", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out


def test_cli_resume_needs_no_settings_and_refuses_contradictions(tmp_path, cli_run):
    out = tmp_path / "run"
    shutil.copytree(cli_run, out)
    result = CliRunner().invoke(main, ["--out", str(out), "--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["config"]["flip"] is True
    result = CliRunner().invoke(main, ["--out", str(out), "--epochs", "3", "--resume", "--lr", "1"])
    assert result.exit_code == 2
    assert "trained with --lr 0.001, not 1.0" in result.output


def test_cli_resume_of_nothing_leaves_nothing(tmp_path):
    result = CliRunner().invoke(main, ["--out", str(tmp_path / "never"), "--resume"])
    assert result.exit_code == 2 and "holds no interrupted run" in result.output
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        ("state.json", "state.json: unreadable (Expecting property name enclosed in double"),
        ("last.keras", "last.keras: not a Keras model (not a zip archive)"),
        ("history.csv", "history.csv: missing; the run's record is incomplete"),
    ],
)
def test_cli_resume_of_a_damaged_run_names_the_file_and_changes_nothing(
    tmp_path, cli_run, damage, said
):
    out = tmp_path / "run"
    shutil.copytree(cli_run, out)
    if damage == "history.csv":
        (out / damage).unlink()
    else:
        (out / damage).write_bytes(b"{half a file")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = CliRunner().invoke(main, ["--out", str(out), "--epochs", "2", "--resume"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"error: --resume: {out / said}")
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_the_seed_fixes_the_whole_run(tmp_path, recipe_run):
    """Two runs of the same settings on one machine end with the same weights, bit for bit:
    the seed fixes the initial weights, the batch order and every augmentation (what makes the
    documented command rerunnable; across CPUs float round-off still differs)."""
    settings = RECIPE_SETTINGS
    again = _cfg(tmp_path / "b", **settings)
    runs = [recipe_run[0], again]
    metrics = [recipe_run[1], train(again)]
    weights = [keras.models.load_model(cfg.out / "last.keras").weights for cfg in runs]
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(*weights, strict=True))
    losses = [[r["loss"] for r in _history(cfg.out / "history.csv")] for cfg in runs]
    assert losses[0] == losses[1] and metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"]
    other = train(_cfg(tmp_path / "c", **settings, seed=7))  # and another seed is another run
    assert [r["loss"] for r in _history(tmp_path / "c" / "run" / "history.csv")] != losses[0]
    assert other["config"]["seed"] == 7


def test_recipe_fills_in_settings_and_flags_win(tmp_path):
    cfg = resolve_settings({"epochs": 3}, tmp_path / "r", "edge", resume=False)
    edge = RECIPES["edge"]
    assert cfg.arch == edge["arch"] == "resnet20" and cfg.optimizer == "sgd" and cfg.epochs == 3
    assert cfg.erase == 0.5 and cfg.crop_pad == 4 and cfg.val_fraction == 0 and cfg.recipe == "edge"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--optimizer", "rmsprop"], "Invalid value for '--optimizer'"),
        (["--erase", "1.5"], "--erase must be a probability"),
        (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
        (["--val-fraction", "1"], "--val-fraction must be in [0, 1)"),
        (["--warmup", "60"], "--warmup must be at least 0 and less than --epochs"),
        (["--crop-pad", "-1"], "--crop-pad must be 0..14"),
        (["--ema", "1"], "--ema must be in [0, 1)"),
        (["--recipe", "fast"], "Invalid value for '--recipe'"),
    ],
)
def test_cli_rejects_bad_recipe_options(args, message, tmp_path):
    result = CliRunner().invoke(main, ["--arch", "tiny", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and not (tmp_path / "r").exists()


# --- issue 26: what a new user hit ------------------------------------------------------------


def test_a_smoke_run_of_a_recipe_scales_its_warmup_and_says_so(tmp_path):
    """Item 3: `fmnist-train --recipe edge --out runs/r20 --epochs 1 --limit 1000` was refused
    for the recipe's --warmup 2, a flag the user never gave. A run not longer than the recipe's
    warm-up warms up for the same share of its own epochs (2 of 120), and says so."""
    out = tmp_path / "r20"
    args = ["--recipe", "edge", "--arch", "tiny", "--out", out, "--epochs", "1", "--limit", "256"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    said = (
        "--recipe edge: --epochs 1 is not longer than its 2-epoch warm-up; warming up for "
        "0.0167 epochs instead, the recipe's share (2 of 120; --warmup sets it)"
    )
    assert said in result.stderr.splitlines()
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["warmup"] == pytest.approx(2 / 120) and config["recipe"] == "edge"


def test_a_recipe_warmup_is_kept_when_it_fits_or_was_given(tmp_path, caplog):
    """The warm-up is scaled only where it cannot run; a --warmup the user gave is theirs (and
    refused as theirs when it does not fit)."""
    edge = RECIPES["edge"]
    with caplog.at_level("INFO", logger="fmnist.train"):
        assert resolve_settings({"epochs": 3}, tmp_path, "edge", False).warmup == edge["warmup"]
        assert resolve_settings({}, tmp_path, "edge", False).warmup == edge["warmup"]
        given = resolve_settings({"epochs": 2, "warmup": 0.5}, tmp_path, "edge", False)
        assert given.warmup == 0.5
    assert caplog.records == []
    scaled = resolve_settings({"epochs": 2}, tmp_path, "edge", False)
    assert scaled.warmup == pytest.approx(2 * 2 / 120)
    result = CliRunner().invoke(main, ["--recipe", "edge", "--out", str(tmp_path / "r"),
                                       "--epochs", "1", "--warmup", "2"])
    assert result.exit_code == 2
    assert "--warmup must be at least 0 and less than --epochs (got 2.0)" in result.output
