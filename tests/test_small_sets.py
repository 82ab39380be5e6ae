"""`python -m fmnist_edge.benchmarks.small_sets`: the sets it cuts, one real tiny cell end to
end, and its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fmnist_edge.benchmarks import small_sets


def test_digits_are_cut_per_class_and_held_out_apart():
    pytest.importorskip("sklearn")
    data = small_sets.digits(12, seed=0)
    assert data.x_train.shape == (120, 28, 28, 1) and data.x_train.dtype == np.float32
    assert np.bincount(data.y_train).tolist() == [12] * 10
    assert len(data.y_train) + len(data.y_held) == 1797  # every other digit is held out
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0 and data.classes == 10
    train = {x.tobytes() for x in data.x_train}
    assert not any(x.tobytes() in train for x in data.x_held[:200])


def test_fashion_sets_hold_out_the_same_test_images(fmnist_train):
    a, b = small_sets.fashion(5, seed=1), small_sets.fashion(20, seed=2)
    assert np.bincount(a.y_train).tolist() == [5] * 10 and len(b.y_train) == 200
    assert len(a.y_held) == small_sets.HELD_OUT and np.array_equal(a.x_held, b.x_held)


def test_momentum_rule_leaves_one_percent_after_the_first_epoch():
    for steps in (1, 5, 40):
        assert small_sets.momentum_rule(steps) ** steps == pytest.approx(0.01)
    assert small_sets.momentum_rule(1000) == 0.99  # never above Keras' own


@pytest.mark.slow
def test_one_cell_end_to_end(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "small.json"
    args = ["--dataset", "digits", "--per-class", "5", "--arch", "tiny", "--epochs", "2"]
    small_sets.main([*args, "--momentum-rule", "--json", str(out)])
    table = capsys.readouterr().out
    assert "| digits, 5 a class | 50 | tiny | 2 | 2 |" in table
    (row,) = json.loads(out.read_text())["rows"]
    assert row["steps"] == 2 and row["held_out"] == 1747
    for key in ("keras_moving", "re_estimated", "training_mode"):
        assert 0.0 <= row[key] <= 1.0
    assert row["momentum_rule"]["same_training_curve"] is True  # momentum is never trained on


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "digits", "--per-class", "500"], "--per-class 500: a class has only"),
        (["--arch", "vgg"], "unknown --arch 'vgg'"),
        (["--epochs", "0"], "--per-class and --epochs must be at least 1"),
        (["--json", "/nonexistent/dir/x.json"], "--json /nonexistent/dir/x.json: no folder"),
        (["--json", "/tmp"], "--json /tmp: a folder; name the file to write"),
    ],
)
def test_bad_options_are_one_line(args, message, capsys):
    pytest.importorskip("sklearn")
    with pytest.raises(SystemExit) as exc:
        small_sets.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
