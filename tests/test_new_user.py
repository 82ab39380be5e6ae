"""What a new user hit (issue 15), one test per item, through the commands as a user runs them:
one line per error, nothing left behind, the run directory as the source of its settings,
progress that a terminal shows."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from fmnist_edge.export.cli import main as export_main
from fmnist_edge.train.cli import main as train_main


def keras_callback():
    import keras

    return keras.callbacks.Callback


# TensorFlow as chatty as it gets; oneDNN as fmnist-train chooses it
ENV = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
ENV["TF_CPP_MIN_LOG_LEVEL"] = "0"


def _run(*args, env=None, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(map(str, args)), capture_output=True, text=True, env=env or ENV, cwd=cwd,
        timeout=timeout,
    )


# --- 8: fmnist-export given a .tflite says so first, before any --force or TensorFlow ------------


def test_export_of_a_tflite_says_what_it_is(tmp_path):
    model = tmp_path / "some.tflite"
    model.write_bytes(b"TFL3")
    (tmp_path / "some-int8.tflite").write_bytes(b"old")  # a target that exists
    result = CliRunner().invoke(export_main, [str(model), "--quantize", "int8"])
    assert result.exit_code == 2
    assert result.output == (
        f"error: {model}: not a Keras model (a TFLite model); fmnist-export converts a "
        ".keras file or a run directory\n"
    )


def test_export_says_each_step_once(tmp_path, tiny_keras):
    """TensorFlow's converter calls logging.info, which gives the root logger a handler: the
    command's own lines must not come out a second time through it."""
    out = tmp_path / "m.tflite"
    result = _run("fmnist-export", tiny_keras, "--quantize", "int8", "--validate-samples", "50",
                  "--calibration-samples", "50", "--out", out)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "int8: validating on 50 images" in lines
    assert not [line for line in lines if "fmnist.export:" in line]  # logging's default format
    assert len(lines) == len(set(lines)), lines


# --- 14: --int8-io is refused where it cannot apply --------------------------------------------


def test_int8_io_without_an_int8_model_is_refused(tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes(b"PK")
    args = [str(model), "--quantize", "float16", "--int8-io", "uint8"]
    result = CliRunner().invoke(export_main, args)
    assert result.exit_code == 2
    assert "--int8-io uint8 applies to int8 models only (--quantize float16 has none)" in (
        result.output
    )


# --- 5 and 9: data the user named must be there; offline without data, one helpful line --------


@pytest.mark.parametrize("how", ["--data-dir", "FMNIST_DATA"])
@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_a_named_data_folder_must_hold_the_data(tmp_path, how, kind):
    folder = tmp_path / "data"
    if kind == "empty":
        folder.mkdir()
    out = tmp_path / "run"
    args = ["--arch", "tiny", "--epochs", "1", "--out", str(out)]
    env = dict(ENV)
    if how == "--data-dir":
        args += ["--data-dir", str(folder)]
    else:
        env["FMNIST_DATA"] = str(folder)
    result = _run(sys.executable, "-m", "fmnist_edge.train.cli", *args, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    named = how if how.startswith("--") else f"${how}"
    assert len(lines) == 1 and lines[0].startswith(f"error: {named} {folder}: ")
    assert ("no such folder" if kind == "missing" else "holds no Fashion-MNIST") in lines[0]
    assert not out.exists()


def test_offline_without_the_dataset_says_where_it_looked(tmp_path):
    code = (
        "import sys\n"
        "from fmnist_edge.dataset import files, download\n"
        f"files.KERAS_CACHE = files.Path({str(tmp_path / 'keras')!r})\n"
        f"files.DEBIAN_DIR = files.Path({str(tmp_path / 'debian')!r})\n"
        "download.DEFAULT_MIRRORS = ('http://127.0.0.1:9/',)\n"
        "from fmnist_edge.train.cli import main\n"
        "sys.argv = ['fmnist-train'] + sys.argv[1:]\n"
        "main()\n"
    )
    cache = tmp_path / "xdg"
    env = {**ENV, "XDG_CACHE_HOME": str(cache)}
    env.pop("FMNIST_DATA", None)
    out = tmp_path / "run"
    result = _run(sys.executable, "-c", code, "--arch", "tiny", "--out", out, env=env)
    assert result.returncode == 2
    *steps, line = result.stderr.strip().splitlines()
    assert all(s.startswith("downloading http://127.0.0.1:9/") for s in steps)  # what it tried
    assert line.startswith("error: Fashion-MNIST train files not found")
    for place in (tmp_path / "keras", tmp_path / "debian", cache / "fmnist-edge"):
        assert str(place) in line
    assert "apt-get install dataset-fashion-mnist" in line and "--data-dir" in line
    assert "could not download train-images-idx3-ubyte.gz" in line and len(line) < 600
    assert not out.exists() and not cache.exists()  # no empty run or cache folder


# --- 7: errors after TensorFlow loaded are one line; --list-archs prints only the list ---------


def test_an_error_after_tensorflow_loaded_is_one_line(tmp_path):
    bogus = tmp_path / "model.keras"
    bogus.write_text("not a zip")
    result = _run("fmnist-export", bogus, "--quantize", "float32")
    assert result.returncode == 2
    # our own step line, then the error: none of TensorFlow's notices around it
    error = f"error: {bogus}: not a Keras model (not a zip archive)"
    assert result.stderr == f"loading {bogus}\n{error}\n"


def test_list_archs_prints_only_the_list():
    result = _run("fmnist-train", "--list-archs")
    assert result.returncode == 0 and result.stderr == ""
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert {"miniresnet", "edge-m", "resnet20", "resnet32", "tiny"} <= set(names)


# --- 6: a terminal sees Keras' live progress bar; a pipe, one line an epoch ----------------------


def _in_a_terminal(args: list[str], timeout: float = 240) -> str:
    """Run ``args`` with stdout and stderr on a pseudo-terminal; return all it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdout=follower, stderr=follower, env=ENV, close_fds=True)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(leader)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-2000:]
    return b"".join(chunks).decode(errors="replace")


# One epoch of the tiny model on 256 images: 2 steps of 128, enough for a bar to be drawn
TRAIN = ("fmnist-train", "--arch", "tiny", "--epochs", "1", "--limit", "256")


@pytest.fixture(scope="module")
def piped_train(tmp_path_factory) -> subprocess.CompletedProcess:
    """TRAIN with stdout and stderr on pipes, as a script or CI runs it: one run, read by the
    tests below (each start of fmnist-train pays for TensorFlow's import and a model's trace)."""
    return _run(*TRAIN, "--out", tmp_path_factory.mktemp("piped") / "run")


def test_training_shows_a_live_progress_bar_in_a_terminal(tmp_path, piped_train):
    text = _in_a_terminal([*TRAIN, "--out", str(tmp_path / "run")])
    # Keras redraws its bar in place: a carriage return that does not end a line (the
    # terminal turns each newline into "\r\n" too)
    assert re.search("\r(?!\n)", text) and "━" in text
    assert "cudart_stub" not in text and "oneDNN custom" not in text  # TensorFlow's own notices
    piped = piped_train
    assert piped.returncode == 0 and "━" not in piped.stdout
    assert any(line.startswith("2/2 - ") for line in piped.stdout.splitlines())  # 256 / 128


# --- 14: Ctrl-C says how to continue; the result is printed once, no Python dict ----------------


def test_interrupt_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    args = ["fmnist-train", "--arch", "tiny", "--epochs", "50", "--limit", "2000", "--out", out]
    # Ctrl-C reaches a command in the foreground, whose SIGINT is the default. A suite started
    # in the background (`pytest &`, nohup) ignores SIGINT, and so would the run it starts:
    # the run is started with the default restored, as a shell's foreground job has it.
    foreground = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.execvp(sys.argv[1], sys.argv[1:])"
    )
    proc = subprocess.Popen([sys.executable, "-c", foreground, *map(str, args)],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 240
    while not (out / "state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    proc.send_signal(2)  # SIGINT, as Ctrl-C sends it
    out_text, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{out_text[-1500:]}\n{err[-1500:]}"
    assert err.strip().splitlines()[-1].startswith(
        "error: interrupted after epoch "
    ) and err.strip().endswith(f"continue with: fmnist-train --out {out} --resume")


def test_train_prints_its_result_once(piped_train):
    result = piped_train
    assert result.returncode == 0, result.stderr
    assert "{" not in result.stderr  # no Python dict
    assert result.stdout.count("test accuracy") == 1 and "test accuracy" not in result.stderr
    assert "data: 256 train / 256 validation / 256 test images from" in result.stderr
    assert "on tensorflow with oneDNN kernels;" in result.stderr  # fmnist-train's default


def test_train_keeps_the_users_onednn_setting(tmp_path):
    out = tmp_path / "run"
    env = {**ENV, "TF_ENABLE_ONEDNN_OPTS": "0"}
    result = _run(*TRAIN, "--out", out, env=env)
    assert result.returncode == 0, result.stderr
    assert "on tensorflow; mixed precision" in result.stderr  # Eigen kernels, as asked


def test_limit_beyond_the_data_is_refused(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        train_main, ["--arch", "tiny", "--limit", "100000", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "--limit 100000 is more than the 48,000 training images" in result.output
    assert not out.exists()


# --- 10: a run that fails before its first epoch leaves no folder --------------------------------


class _StopAt(keras_callback()):
    def on_train_batch_begin(self, batch, logs=None):
        raise KeyboardInterrupt


def test_a_run_stopped_before_its_first_epoch_leaves_no_folder(tmp_path):
    from fmnist_edge.train.config import TrainConfig
    from fmnist_edge.train.trainer import train

    out = tmp_path / "runs" / "new"
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(arch="tiny", epochs=1, limit=256, out=out), callbacks=(_StopAt(),))
    assert not out.exists() and (tmp_path / "runs").exists() is False
