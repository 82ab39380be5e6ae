"""`python -m fmnist_edge.train.compare`: a rerun's history beside a record, row by row. Real
histories from tiny training runs, the bundled model's own record, and the usual mistakes."""

from __future__ import annotations

import csv

import pytest

from fmnist_edge.train.compare import bundled_record, compare, main, read_rows
from fmnist_edge.train.config import TrainConfig
from fmnist_edge.train.trainer import train

SETTINGS = dict(arch="tiny", batch_size=64, limit=256, optimizer="sgd", lr=0.05, cosine=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two real tiny runs: 2 epochs, and the same settings with --epochs 3 (another schedule)."""
    root = tmp_path_factory.mktemp("compare")
    for epochs in (2, 3):
        train(TrainConfig(**SETTINGS, epochs=epochs, out=root / f"e{epochs}", val_fraction=0.0))
    return root


def _edit(src, dst, epoch, **changes):
    """A copy of a history.csv with some columns of one epoch changed."""
    with open(src, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if int(row["epoch"]) == epoch:
            row.update({k: str(v(float(row[k]))) for k, v in changes.items()})
    with open(dst, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dst


def _main(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def test_a_run_matches_its_own_record_row_by_row(runs, capsys):
    code, out, err = _main(capsys, runs / "e2", "--record", runs / "e2" / "history.csv")
    assert code == 0 and err == ""
    rows = out.splitlines()
    assert len(rows) == 1 + 2 + 1  # header, one line per epoch, the verdict
    assert rows[1].split()[0] == "1" and "same" in rows[1] and "+0.0000" in rows[1]
    assert "2 of the record's 2 epochs compared" in rows[-1] and "consistent" in rows[-1]
    assert "within 0.00 pp" in rows[-1] and "median epoch" in rows[-1]


def test_another_epoch_count_is_another_schedule(runs, capsys):
    """--epochs 3 stretches the cosine: the learning rate of epoch 1 already differs, so the
    rerun is refused as another command whatever its accuracy."""
    code, out, err = _main(capsys, runs / "e3", "--record", runs / "e2" / "history.csv")
    assert code == 1 and "DIFFERS" in out
    assert err.count("\n") == 1 and "the learning rate differs from epoch 1" in err
    assert "not the recorded command" in err


@pytest.mark.parametrize(
    "change, flagged",
    [
        (dict(accuracy=lambda a: a + 0.011), True),  # 1.1 pp: beyond the 1 pp default
        (dict(accuracy=lambda a: a - 0.009), False),  # 0.9 pp: within it
        (dict(loss=lambda v: v + 0.03), True),
        (dict(loss=lambda v: v - 0.02), False),
    ],
)
def test_drift_beyond_the_tolerance_fails(runs, tmp_path, capsys, change, flagged):
    record = runs / "e2" / "history.csv"
    rerun = _edit(record, tmp_path / "history.csv", epoch=2, **change)
    code, out, err = _main(capsys, rerun, "--record", record)
    assert code == (1 if flagged else 0)
    verdict = err if flagged else out.splitlines()[-1]
    assert "(epoch 2)" in verdict and ("DRIFTS" in verdict) == flagged


def test_the_tolerances_are_options(runs, tmp_path, capsys):
    record = runs / "e2" / "history.csv"
    rerun = _edit(record, tmp_path / "history.csv", epoch=1, accuracy=lambda a: a + 0.02)
    assert _main(capsys, rerun, "--record", record)[0] == 1
    assert _main(capsys, rerun, "--record", record, "--acc-tol", "2.5")[0] == 0


def test_the_default_record_is_the_bundled_models():
    """The bundled run: the documented command's 160 epochs, warm-up then cosine from 0.1."""
    rows = read_rows(bundled_record())
    assert [r.epoch for r in rows] == list(range(1, 161))
    assert max(r.lr for r in rows) == pytest.approx(0.1, rel=1e-3)
    c = compare(rows, rows[:10])
    assert c.consistent and len(c.pairs) == 10 and c.record_epochs == 160


def test_the_tiny_run_is_not_the_bundled_command(runs, capsys):
    code, _, err = _main(capsys, runs / "e2")
    assert code == 1 and "the bundled model's history.csv" in err and "learning rate" in err


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing", "missing/history.csv: not found"),  # a folder is made below
        (lambda d: d / "nothing.csv", "nothing.csv: not found"),
        (lambda d: _write(d / "h.csv", "epoch,loss\n1,0.5\n"), "no accuracy, lr column"),
        (lambda d: _write(d / "h.csv", "epoch,loss,accuracy,lr\n"), "no epochs recorded yet"),
        (lambda d: _write(d / "h.csv", "epoch,loss,accuracy,lr\nx,1,1,1\n"), "unreadable row"),
        (lambda d: _write(d / "h.csv", "epoch,loss,accuracy,lr\n999,1,1,1\n"), "share no epoch"),
        (lambda d: _write_bytes(d / "last.keras", b"PK\x03\x04\xc4\xff"), "binary content"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(runs, tmp_path, capsys, make, message):
    path = make(tmp_path)
    if path.name == "missing":
        path.mkdir()
    code, out, err = _main(capsys, path, "--record", runs / "e2" / "history.csv")
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err


def test_negative_tolerance_is_a_usage_error(runs, capsys):
    code, _, err = _main(capsys, runs / "e2", "--acc-tol", "-1")
    assert code == 2 and "--acc-tol and --loss-tol must be >= 0" in err


def _write(path, text):
    path.write_text(text)
    return path


def _write_bytes(path, data):
    path.write_bytes(data)
    return path
