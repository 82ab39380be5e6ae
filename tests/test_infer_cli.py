"""fmnist-infer: input expansion, output formats and exit codes (the wiring; the library is
tested in test_edge_runtime.py and test_edge_preprocess.py)."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from fmnist_edge.common.labels import CLASS_NAMES
from fmnist_edge.edge_runtime import classifier as classifier_mod
from fmnist_edge.edge_runtime.batch import Outcome, classify_inputs, expand_inputs
from fmnist_edge.edge_runtime.classifier import Classifier, Prediction
from fmnist_edge.edge_runtime.cli import main
from fmnist_edge.edge_runtime.output import (
    csv_header,
    csv_line,
    csv_row,
    json_record,
    submission_text,
    text_line,
)


@pytest.fixture(scope="module")
def model(tiny_tflite):
    return str(tiny_tflite["int8"])


@pytest.fixture()
def images(tmp_path, fmnist_test):
    """imgs/ with three test images (one as a JPEG product photo) and a non-image file."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(fmnist_test.images[i]).save(folder / f"img{i}.png")
    big = Image.fromarray(255 - fmnist_test.images[2]).resize((112, 112)).convert("RGB")
    big.save(folder / "photo.jpg", quality=92)
    (folder / "notes.txt").write_text("not an image, and skipped by the directory listing\n")
    return folder


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _bomb_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# --- library pieces ---------------------------------------------------------------------------


def test_expand_inputs(images, tmp_path):
    (tmp_path / "empty").mkdir()
    got = list(expand_inputs([images, str(images / "img1.png"), str(images / "*.png"),
                              tmp_path / "empty", str(tmp_path / "nothing*.png"),
                              tmp_path / "missing.png"]))
    paths = [o.path for o in got]
    listing = [str(images / n) for n in ("img0.png", "img1.png", "photo.jpg")]
    assert paths[:3] == listing  # sorted, notes.txt left out
    assert paths[3:6] == [str(images / "img1.png"), *listing[:2]]  # the glob, expanded
    assert got[6].error == f"{tmp_path / 'empty'}: no images in directory (looked for " + \
        got[6].error.split("(looked for ", 1)[1]
    assert got[7].error == f"{tmp_path / 'nothing*.png'}: no files match this pattern"
    assert got[8] == Outcome(str(tmp_path / "missing.png"))  # opening it reports the error
    assert all(o.ok for o in got[:6])


def test_classify_inputs_keeps_order_and_goes_on(images, model, tmp_path):
    clf = Classifier(model)
    (tmp_path / "bad.png").write_bytes(b"")
    args = [images / "img0.png", tmp_path / "bad.png", images / "img1.png"]
    outcomes = list(classify_inputs(clf, args, chunk=1))
    assert [o.path for o in outcomes] == [str(a) for a in args]
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].error == f"{tmp_path / 'bad.png'}: empty file (0 bytes)"
    direct = clf.predict(images / "img1.png")
    assert outcomes[2].prediction.index == direct.index
    assert outcomes[2].prediction.score == pytest.approx(direct.score)


def test_output_formats():
    pred = Prediction("Bag", 8, 0.875, [("Bag", 0.875), ("Sandal", 0.0625)])
    ok, bad = Outcome("d/x.png", prediction=pred), Outcome("d/y.png", error="d/y.png: oops")
    assert text_line(ok) == "d/x.png: Bag (87.5%), Sandal (6.2%)"
    assert text_line(bad) == "error: d/y.png: oops"
    assert json_record(ok) == {
        "path": "d/x.png", "label": "Bag", "index": 8, "score": 0.875,
        "top_k": [{"label": "Bag", "score": 0.875}, {"label": "Sandal", "score": 0.0625}],
    }
    assert json_record(bad) == {"path": "d/y.png", "error": "oops"}
    assert csv_header(2) == ["path", "label", "index", "score", "label_2", "score_2", "error"]
    assert csv_row(ok, 2) == ["d/x.png", "Bag", "8", "0.875000", "Sandal", "0.062500", ""]
    assert csv_row(bad, 2) == ["d/y.png", "", "", "", "", "", "oops"]
    assert submission_text([ok, bad, Outcome("a,b.png", prediction=pred)]) == \
        'id,label\nx,8\n"a,b",8\n'


# --- the command --------------------------------------------------------------------------------


def test_text_output(images, model):
    result = run("--model", model, images / "img0.png")
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    path, rest = line.split(": ", 1)
    assert path == str(images / "img0.png")
    label, percent = rest.rsplit(" (", 1)
    assert label in CLASS_NAMES and percent.endswith("%)") and "\n" not in line
    three = run("--model", model, "--top-k", "3", images / "img0.png").output.strip()
    assert three.startswith(line) and three.count("%)") == 3


def test_directory_glob_json_and_submission(images, model, tmp_path):
    sub = tmp_path / "submission.csv"
    result = run("--model", model, "--json", "--top-k", "2", "--submission", sub, images,
                 str(images / "img*.png"))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [Path(r["path"]).name for r in records] == [
        "img0.png", "img1.png", "photo.jpg", "img0.png", "img1.png"]
    for r in records:
        assert set(r) == {"path", "label", "index", "score", "top_k"}
        assert r["label"] == CLASS_NAMES[r["index"]] and 0 <= r["score"] <= 1
        assert len(r["top_k"]) == 2 and r["top_k"][0] == {"label": r["label"],
                                                          "score": r["score"]}
    rows = list(csv.reader(sub.open()))
    assert rows[0] == ["id", "label"]
    assert rows[1:] == [[Path(r["path"]).stem, str(r["index"])] for r in records]


def test_csv_output(images, model, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    result = run("--model", model, "--csv", images / "img0.png", tmp_path / "broken.png")
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["path"] for r in rows] == [str(images / "img0.png"), str(tmp_path / "broken.png")]
    assert rows[0]["label"] in CLASS_NAMES and rows[0]["error"] == ""
    assert rows[1]["label"] == "" and "truncated PNG" in rows[1]["error"]
    expected = f"error: {tmp_path / 'broken.png'}: corrupt or truncated PNG image"
    assert result.stderr.strip() == expected


def test_bad_inputs_each_get_one_line_and_the_rest_are_classified(images, model, tmp_path):
    good = images / "img0.png"
    data = good.read_bytes()
    bad = {
        "missing.png": None,
        "empty.png": b"",
        "truncated.png": data[: len(data) // 2],
        "text.png": b"hello\n",
        "bomb.png": _bomb_png(),
    }
    for name, content in bad.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    (tmp_path / "noimages").mkdir()
    args = [good, *(tmp_path / n for n in bad), tmp_path / "noimages", images / "img1.png"]
    result = run("--model", model, *args)
    assert result.exit_code == 1
    errors = result.stderr.splitlines()
    assert len(errors) == len(bad) + 1 and "Traceback" not in result.output
    for line, name in zip(errors, [*bad, "noimages"], strict=True):
        assert line.startswith(f"error: {tmp_path / name}: "), line
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == [
        str(good), str(images / "img1.png")]
    as_json = run("--model", model, "--json", *args)
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert as_json.exit_code == 1 and len(records) == len(args)
    assert [set(r) for r in records[1:-1]] == [{"path", "error"}] * (len(args) - 2)
    assert "40000x40000 PNG is 1,600,000,000 pixels to decode" in records[5]["error"]


def test_modes(images, model):
    photo = images / "photo.jpg"
    assert run("--model", model, "--mode", "photo", photo).exit_code == 0
    raw = run("--model", model, "--mode", "raw", photo)  # taken as it is, resized to 28x28
    assert raw.exit_code == 0 and raw.stderr == ""


def test_usage_errors_exit_2(images, model, tmp_path):
    for args in (
        [],
        ["--json", "--csv", images],
        ["--top-k", "0", images],
        ["--mode", "sketch", images],
        ["--tta", "rotate", images],
        ["--runtime", "tensorflow", images],
        ["--submission", tmp_path / "no" / "such" / "dir.csv", images],
    ):
        result = run("--model", model, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_model_errors_exit_2_and_debug_shows_the_traceback(images, tmp_path, monkeypatch):
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\0" * 64)
    result = run("--model", garbage, images)
    assert result.exit_code == 2
    assert result.output == f"error: {garbage}: not a TFLite model (no TFL3 identifier)\n"
    debug = run("--debug", "--model", garbage, images)
    assert debug.exit_code == 2 and "Traceback" in debug.output
    monkeypatch.setattr(classifier_mod, "BUNDLED_MODEL", "models/missing.tflite")
    bundled = run(images)
    assert bundled.exit_code == 2 and "no bundled model; pass --model" in bundled.output


def test_verbose_reports_the_runtime(images, model):
    result = run("-v", "--runtime", "ai-edge-litert", "--model", model, images / "img0.png")
    assert result.exit_code == 0
    assert "runtime ai-edge-litert " in result.stderr and "(int8 input)" in result.stderr
    assert "1 classified, 0 failed" in result.stderr


def test_tta_flip_reaches_the_classifier(images, model):
    def scores(*args):
        result = run("--model", model, "--json", *args, images)
        assert result.exit_code == 0, result.output
        return [json.loads(line)["score"] for line in result.output.splitlines()]

    plain, flip = scores(), scores("--tta", "flip")
    pngs = [Image.open(images / f"img{i}.png") for i in (0, 1)]
    expected = Classifier(model, tta="flip").predict_batch(pngs)
    assert flip[:2] == [pytest.approx(p.score, abs=1e-6) for p in expected]
    assert flip != plain
    verbose = run("-v", "--tta", "flip", "--model", model, images / "img0.png")
    assert "flip test-time augmentation" in verbose.stderr


def test_float_model(images, tiny_tflite):
    result = run("--model", tiny_tflite["float32"], "--json", images)
    assert result.exit_code == 0
    assert len(result.output.splitlines()) == 3


def test_help_loads_nothing_heavy():
    """--help and usage errors never import numpy, Pillow or an interpreter (Pi start-up)."""
    code = ("import sys; from fmnist_edge.edge_runtime.cli import main\n"
            "heavy = {'numpy', 'PIL', 'ai_edge_litert', 'tensorflow'} & set(sys.modules)\n"
            "assert not heavy, heavy")
    repo = str(Path(__file__).resolve().parents[1])
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- issue 15: what a new user hit ------------------------------------------------------------


def test_top_k_zero_is_refused_with_the_library_message(images, model):
    """Item 13: the command refuses --top-k 0 with the library's own check, named as an option."""
    result = run("--model", model, "--top-k", "0", images)
    assert result.exit_code == 2
    assert result.output == "error: --top-k must be >= 1 (got 0)\n"


def test_submission_writer_streams_and_commits_only_at_the_end(tmp_path):
    """Item 15: rows go to a temporary file beside the target as they come; the target appears
    (renamed) when the block ends, and a failure leaves the old file and nothing else."""
    from fmnist_edge.edge_runtime.output import submission_writer

    pred = Prediction("Bag", 8, 0.875, [("Bag", 0.875)])
    target = tmp_path / "sub.csv"
    with submission_writer(target) as add:
        add(Outcome("d/x.png", prediction=pred))
        add(Outcome("d/bad.png", error="d/bad.png: oops"))
        add(Outcome("d/a,b.png", prediction=pred))
        assert not target.exists() and len(list(tmp_path.iterdir())) == 1  # the temporary
    assert target.read_text() == 'id,label\nx,8\n"a,b",8\n'
    with pytest.raises(KeyboardInterrupt), submission_writer(target) as add:
        add(Outcome("d/y.png", prediction=pred))
        raise KeyboardInterrupt
    assert target.read_text() == 'id,label\nx,8\n"a,b",8\n'
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]


def test_an_interrupted_run_leaves_no_partial_submission(images, model, tmp_path, monkeypatch):
    """Item 15: fmnist-infer writes --submission as it classifies, into a temporary file that a
    Ctrl-C removes; a submission already there is left whole."""
    from fmnist_edge.edge_runtime import batch

    out = tmp_path / "out"
    out.mkdir()
    sub = out / "submission.csv"
    sub.write_text("id,label\nmine,1\n")
    real, seen = batch.classify_inputs, []

    def interrupted(*args, **kwargs):  # the real classification, with a Ctrl-C after 4 images
        for n, outcome in enumerate(real(*args, **kwargs)):
            if n == 4:
                seen.extend(p.name for p in out.iterdir())
                raise KeyboardInterrupt
            yield outcome

    monkeypatch.setattr(batch, "classify_inputs", interrupted)
    result = run("--model", model, "--submission", sub, images, images)
    assert result.exit_code == 130 and "interrupted" in result.output
    assert any(name.startswith(".submission.csv.") for name in seen), seen  # streamed beside
    assert [p.name for p in out.iterdir()] == ["submission.csv"]
    assert sub.read_text() == "id,label\nmine,1\n"


# --- issue 26: what a new user hit ------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def _infer(args: list, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """fmnist-infer in a fresh interpreter, as a shell runs it, with the bundled model."""
    cmd = [sys.executable, "-m", "fmnist_edge.edge_runtime.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, text=True, timeout=120, **kwargs)


def _infer_into_closed_pipe(args: list, cwd: Path) -> subprocess.CompletedProcess:
    """fmnist-infer whose stdout reader has gone before the first line (`| head`, finished)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return _infer(args, cwd, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)


def test_submission_is_written_when_stdout_closes_early(tmp_path):
    """Item 5: `fmnist-infer 'docs/examples/*.png' --csv --submission sub.csv | head` exited 1
    and wrote no submission once head had gone. The submission is what the user asked to keep:
    it is completed, and the exit status is the classification's."""
    result = _infer_into_closed_pipe([EXAMPLES, "--csv", "--submission", "sub.csv"], tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    rows = list(csv.reader((tmp_path / "sub.csv").open()))
    assert rows[0] == ["id", "label"] and len(rows) == 11
    assert ["test0000-ankle-boot", "9"] in rows
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]  # no temporary file left


def test_closed_stdout_without_submission_stops_quietly(tmp_path):
    """Without --submission there is nothing to finish: exit 1, nothing on stderr."""
    result = _infer_into_closed_pipe([EXAMPLES], tmp_path)
    assert result.returncode == 1 and result.stderr == "", result.stderr


def test_submission_that_cannot_be_completed_is_one_line(tmp_path, monkeypatch):
    """Item 5: a submission that cannot be renamed into place (a full disk, say) is one line
    naming it, exit 1, and the file already there is left whole."""
    from fmnist_edge.common import fileio
    from fmnist_edge.common.errors import OutputError
    from fmnist_edge.edge_runtime.output import submission_writer

    target = tmp_path / "sub.csv"
    target.write_text("id,label\nmine,1\n")

    def disk_full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio.os, "replace", disk_full)
    pred = Prediction("Bag", 8, 0.9, [("Bag", 0.9)])
    with pytest.raises(OutputError) as info, submission_writer(target) as add:
        add(Outcome("d/x.png", prediction=pred))
    expected = f"--submission {target}: could not be written (No space left on device)"
    assert str(info.value) == expected and info.value.exit_code == 1
    assert target.read_text() == "id,label\nmine,1\n" and len(list(tmp_path.iterdir())) == 1


def test_missing_pillow_is_one_line_like_a_missing_litert(tmp_path):
    """Item 1: without Pillow, fmnist-infer said 'internal error: ModuleNotFoundError'; a
    missing runtime package gets the one line (exit 2) that a missing LiteRT gets."""
    blocker = tmp_path / "no-pillow" / "PIL"  # first on sys.path: as if Pillow were not there
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'PIL'\", name='PIL')\n"
    )
    path = [str(blocker.parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    result = _infer([EXAMPLES], tmp_path, capture_output=True, env=env)
    assert result.returncode == 2, result.stderr
    expected = "error: Pillow is not installed (No module named 'PIL'): pip install pillow\n"
    assert result.stderr == expected

# --- issue 29: --model is a regular file of bounded size --------------------------------------


def test_model_must_be_a_regular_file_of_bounded_size(tmp_path):
    from fmnist_edge.common.errors import ModelError
    from fmnist_edge.edge_runtime.classifier import read_model_bytes

    os.mkfifo(tmp_path / "pipe.tflite")
    with open(tmp_path / "huge.tflite", "wb") as fh:
        fh.truncate(300 * 1024 * 1024)  # sparse: no disk used
    cases = {
        "/dev/zero": "/dev/zero: not a regular file, not a .tflite file",
        str(tmp_path / "pipe.tflite"): "pipe.tflite: not a regular file, not a .tflite file",
        str(tmp_path / "huge.tflite"): "huge.tflite: 300 MiB; a .tflite over 256 MiB is refused",
    }
    for path, words in cases.items():
        with pytest.raises(ModelError, match=words):
            read_model_bytes(path)
        result = CliRunner().invoke(main, ["--model", path, str(tmp_path / "x.png")])
        assert result.exit_code == 2 and result.output.strip().endswith(words), result.output
        assert len(result.output.strip().splitlines()) == 1


def test_submission_rows_quote_what_csv_must():
    """``stem,index``, quoted where RFC 4180 says: a comma, a quote, a line break."""
    rows = {
        "a/b.png": "b,8",
        "a/b.tar.gz": "b.tar,8",
        "c/ sp ace.png": " sp ace,8",
        "x/,y.png": '",y",8',
        'q/"z".png': '"""z""",8',
        "d/x\ny.png": '"x\ny",8',
        "e/x\ry.png": '"x\ry",8',
    }
    for path, row in rows.items():
        text = submission_text([Outcome(path, Prediction("Bag", 8, 0.5))])
        assert text == f"id,label\n{row}\n", path
    assert csv_line(["x\ny", "8"]) == '"x\ny",8'  # --csv rows too


def test_results_and_error_lines_keep_their_order_in_one_pipe(images, model, tmp_path):
    """Results are flushed in batches, not line by line, yet an error line written to stderr
    comes after the results before it when both go to one pipe (``2>&1``)."""
    (images / "img1a.png").write_bytes(b"not a png")
    result = _infer([images, "--model", model], tmp_path, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT)
    lines = result.stdout.splitlines()
    assert result.returncode == 1
    assert [Path(line.split(":")[0]).name for line in lines if not line.startswith("error")] == [
        "img0.png", "img1.png", "photo.jpg"]
    assert lines[2].startswith("error: ") and "img1a.png" in lines[2], lines
