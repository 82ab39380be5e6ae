"""Every core by default: the thread plan follows the CPU affinity, the folder pipeline
(parallel decode, a bounded window of chunks, batched inference on a pool of interpreters)
keeps the input order, streams, and gives a bad image its line; fmnist-bench and fmnist-serve
take the same default. Real PNGs of the official test images, the bundled model, real
ai-edge-litert interpreters."""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fmnist_edge.common.errors import UsageError
from fmnist_edge.edge_runtime import batch, fastpng
from fmnist_edge.edge_runtime.batch import classify_inputs
from fmnist_edge.edge_runtime.classifier import Classifier
from fmnist_edge.edge_runtime.cli import main
from fmnist_edge.edge_runtime.threads import (
    InterpreterPool,
    ThreadPlan,
    ordered_map,
    plan_threads,
)

REPO = Path(__file__).resolve().parents[1]
BAD = {  # name -> bytes, placed in the middle of the sorted listing
    "00100a-empty.png": b"",
    "00200a-text.png": b"hello\n",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, fmnist_test):
    """300 official test images as PNGs, with an empty file and a text file among them."""
    out = tmp_path_factory.mktemp("folder")
    for i, pixels in enumerate(fmnist_test.images[:300]):
        Image.fromarray(pixels).save(out / f"{i:05d}.png")
    for name, data in BAD.items():
        (out / name).write_bytes(data)
    return out


@pytest.fixture(scope="module")
def sequential(folder):
    """The outcomes one Classifier gives, one chunk after another in this thread."""
    return list(classify_inputs(Classifier(threads=1), [folder]))


def _in_child(code: str, cores: str | None = None) -> str:
    """Run ``code`` in a new Python (under ``taskset -c CORES`` if given); its stdout."""
    cmd = [sys.executable, "-c", code]
    if cores is not None:
        cmd = [shutil.which("taskset") or pytest.skip("taskset not installed"), "-c", cores, *cmd]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


# --- the plan ---------------------------------------------------------------------------------


def test_the_default_follows_the_affinity_under_taskset(folder):
    """One core allowed (taskset -c 0): one interpreter of one thread, a worker's-free pipeline;
    fmnist-serve one worker of one thread. Without taskset: every core of the affinity."""
    first = str(min(os.sched_getaffinity(0)))
    code = (
        "from fmnist_edge.edge_runtime.threads import plan_threads\n"
        "from fmnist_edge.edge_runtime.serve.settings import default_threads, default_workers\n"
        "p = plan_threads(); w = default_workers()\n"
        "print(p.cores, p.interpreters, p.threads, p.workers, w, default_threads(w))\n"
    )
    assert _in_child(code, first).split() == ["1", "1", "1", "1", "1", "1"]
    n = len(os.sched_getaffinity(0))
    workers = min(4, n)
    expected = [n, n, 1, n, workers, max(1, n // workers)]
    assert _in_child(code).split() == [str(v) for v in expected]
    infer = (
        "import sys; from fmnist_edge.edge_runtime.cli import main; "
        f"sys.argv = ['fmnist-infer', '-v', {str(folder / '00000.png')!r}]; main()"
    )
    assert "engine local: 1 interpreter x 1 thread (usable cores: 1)" in _in_child(infer, first)


def test_the_pool_feeds_each_interpreter_one_worker():
    """A worker per interpreter (the disk is read ahead, not waited for by a third worker);
    one core stays one worker, the caller's thread."""
    two = InterpreterPool.for_plan(plan_threads(2))
    assert (two.size, two.workers) == (2, 2)
    one = InterpreterPool.for_plan(plan_threads(1))
    assert (one.size, one.workers) == (1, 1)
    assert InterpreterPool.of(one.first).workers == 1


def test_plan_threads():
    assert plan_threads(4) == ThreadPlan(cores=4, interpreters=4, threads=1, source="--threads")
    one = plan_threads(4, "threads")
    assert (one.interpreters, one.threads, one.workers, one.layout) == (1, 4, 4, "threads")
    assert str(plan_threads(1)) == "1 interpreter x 1 thread (--threads: 1)"
    assert plan_threads(2).to_dict()["layout"] == "interpreters"
    with pytest.raises(UsageError, match="--threads must be >= 1"):
        plan_threads(0)
    with pytest.raises(UsageError, match="layout must be one of interpreters, threads"):
        plan_threads(2, "processes")


# --- the pieces ---------------------------------------------------------------------------------


def test_ordered_map_keeps_order_bounds_the_window_and_stops_early():
    taken, running, peak, lock = [], [0], [0], threading.Lock()

    def items():
        for i in range(40):
            taken.append(i)
            yield i

    def work(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.002 * (i % 3))  # later items often finish first
        with lock:
            running[0] -= 1
        return i * i

    assert list(ordered_map(work, items(), workers=3, depth=5)) == [i * i for i in range(40)]
    assert 1 < peak[0] <= 3
    taken.clear()
    stream = ordered_map(work, items(), workers=3, depth=5)
    assert next(stream) == 0
    assert len(taken) == 5  # the window, not the whole input
    stream.close()  # what was not started is cancelled, what was is waited for
    assert len(taken) == 5

    def fails(i):
        if i == 7:
            raise ValueError("seven")
        return i

    with pytest.raises(ValueError, match="seven"):
        list(ordered_map(fails, range(20), workers=2))


def test_the_pool_makes_an_interpreter_only_for_work(folder):
    pool = InterpreterPool.for_plan(plan_threads(2))
    one = list(classify_inputs(pool, [folder / "00000.png"]))
    assert one[0].ok and pool.made == 1  # one image never pays for a second interpreter
    list(classify_inputs(pool, [folder], chunk=16))
    assert pool.made == 2 and pool.size == 2


# --- the folder pipeline ------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["interpreters", "threads"])
def test_parallel_pipeline_gives_the_sequential_results_in_order(folder, sequential, layout):
    pool = InterpreterPool.for_plan(plan_threads(3, layout))
    got = list(classify_inputs(pool, [folder], chunk=16))
    assert got == sequential  # paths, order, labels and scores, bad images included
    names = sorted(p.name for p in folder.iterdir())
    assert [Path(o.path).name for o in got] == names
    errors = {Path(o.path).name: o.error for o in got if not o.ok}
    assert errors == {
        "00100a-empty.png": f"{folder / '00100a-empty.png'}: empty file (0 bytes)",
        "00200a-text.png": f"{folder / '00200a-text.png'}: not an image "
        "(unrecognised format; taken: formats Pillow reads)",
    }
    assert sum(o.ok for o in got) == 300


def test_a_png_that_fails_after_filling_part_of_its_slot_leaves_the_others_right(
    tmp_path, fmnist_test
):
    """A plain PNG whose data breaks mid-stream is decoded into its slot until it fails; the
    next image takes that slot whole, and every other image gets its own classes."""
    images = fmnist_test.images[:20]
    for i, x in enumerate(images):
        Image.fromarray(x).save(tmp_path / f"{i:02d}.png")
    good = (tmp_path / "05.png").read_bytes()
    start = good.index(b"IDAT") + 4
    end = start + int.from_bytes(good[start - 8 : start - 4], "big")
    half = start + (end - start) // 2  # the first half of its rows decode, then garbage
    broken = good[:half] + bytes(b ^ 0x5A for b in good[half:end]) + good[end:]
    (tmp_path / "05.png").write_bytes(broken)
    clf = Classifier(threads=1)
    expected = clf.predict_batch(np.delete(images, 5, axis=0), mode="raw", top_k=1)
    got = list(classify_inputs(InterpreterPool.for_plan(plan_threads(2)), [tmp_path], chunk=8))
    assert [o.path for o in got] == [str(tmp_path / f"{i:02d}.png") for i in range(20)]
    assert got[5].error.startswith(f"{tmp_path / '05.png'}: corrupt or truncated PNG image")
    assert [o.prediction for o in got if o.ok] == expected


def test_the_pipeline_streams_a_window_of_chunks(folder, monkeypatch):
    """The first result comes after a few chunks are decoded, not the whole folder."""
    decoded = []
    pool = InterpreterPool.for_plan(plan_threads(2))
    real = pool.first.to_array

    def counted(source, mode="auto", **kwargs):  # the real decoder, counted
        decoded.append(source)
        return real(source, mode, **kwargs)

    monkeypatch.setattr(pool.first, "to_array", counted)
    stream = classify_inputs(pool, [folder], chunk=8)
    first = next(stream)
    assert first.ok and first.path == str(folder / "00000.png")
    # the window (2 x workers chunks), the one taking the slot the first result freed, and one
    # being fed: a few chunks of the folder's 38, however the threads were scheduled
    assert len(decoded) <= (2 * 2 + 2) * 8
    stream.close()


def _resident(path: Path) -> bool:
    """Whether any page of ``path`` is in the page cache (mincore on a private mapping, which
    reads nothing: a probe of an evicted file would start reading it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        start = ctypes.c_char.from_buffer(mm)
        vec = (ctypes.c_ubyte * pages)()
        rc = libc.mincore(ctypes.c_void_p(ctypes.addressof(start)), ctypes.c_size_t(size), vec)
        del start  # the mapping cannot close while a ctypes object holds it
    assert rc == 0, os.strerror(ctypes.get_errno())
    return any(v & 1 for v in vec)


def _evict(folder: Path, names: list[str] | None = None) -> None:
    """Drop the folder's files (or those ``names``) from the page cache: written out first
    (dirty pages stay), asked again until no page is left. Skips the test where files stay in
    memory all the same (tmpfs)."""
    for path in [folder / n for n in names] if names is not None else folder.iterdir():
        if path.stat().st_size == 0:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            for _ in range(50):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                if not _resident(path):
                    break
                time.sleep(0.005)
            else:
                pytest.skip(f"{path} stays in the page cache on this file system")
        finally:
            os.close(fd)


def _probe_answers(folder: Path) -> None:
    """Skip where this file system refuses a read that must not wait (RWF_NOWAIT): there the
    probe cannot tell, and every chunk is read ahead."""
    if batch._NOWAIT is None:
        pytest.skip("no RWF_NOWAIT on this platform: every chunk is read ahead")
    probe = folder.parent / f"{folder.name}-answers.bin"
    probe.write_bytes(b"x" * 100)
    answers = batch._cached(str(probe))
    probe.unlink()
    if not answers:
        pytest.skip("this file system refuses RWF_NOWAIT reads: every chunk is read ahead")


def _recorded_probes(monkeypatch) -> dict[str, bool]:
    """What the real page-cache probe answers for each file it is asked about, as it runs."""
    answers, probe = {}, batch._cached

    def probed(path):
        answers[path] = probe(path)
        return answers[path]

    monkeypatch.setattr(batch, "_cached", probed)
    return answers


def _read_ahead_events(folder: Path, monkeypatch) -> tuple[list, list]:
    """Classify the folder in chunks of 16, recording each file asked for (posix_fadvise
    WILLNEED, for real) and decoded, in order; the outcomes, and those events."""
    events, lock = [], threading.Lock()
    ahead, decode, decode_c = batch._will_need, batch.to_array, fastpng.decode

    def asked(path):
        with lock:
            events.append(("ahead", path))
        ahead(path)

    def decoded(source, *args, **kwargs):
        with lock:
            events.append(("decode", source))
        return decode(source, *args, **kwargs)

    def decoded_c(paths, *args, **kwargs):  # a chunk's files, in C, before any to_array
        with lock:
            events.extend(("decode", path) for path in paths)
        return decode_c(paths, *args, **kwargs)

    monkeypatch.setattr(batch, "_will_need", asked)
    monkeypatch.setattr(batch, "to_array", decoded)
    monkeypatch.setattr(fastpng, "decode", decoded_c)
    got = list(classify_inputs(InterpreterPool.for_plan(plan_threads(2)), [folder], chunk=16))
    return got, events


def test_each_chunk_not_in_the_page_cache_is_read_ahead_before_it_is_decoded(
    folder, sequential, monkeypatch
):
    """A folder dropped from the page cache: from the first chunk a probe finds out of it (the
    first, unless something read its files back meanwhile), the kernel is asked for every file
    of a chunk before a worker decodes any of it; the results are the same."""
    if batch._WILLNEED is None:
        pytest.skip("no posix_fadvise on this platform")
    _evict(folder)
    answers = _recorded_probes(monkeypatch)
    got, events = _read_ahead_events(folder, monkeypatch)
    assert got == sequential
    names = batch._directory_images(folder)
    cold = [i for i, n in enumerate(names) if answers.get(str(folder / n)) is False]
    if not cold:
        pytest.skip("the folder was back in the page cache before the run")
    first_cold = cold[0] // 16 * 16  # its chunk's first file
    first = {}
    for i, (what, path) in enumerate(events):
        first.setdefault((what, path), i)
    paths = [str(folder / n) for n in names]
    assert all(("ahead", p) not in first for p in paths[:first_cold])
    assert all(first[("ahead", p)] < first[("decode", p)] for p in paths[first_cold:])
    assert len(paths) == 302  # the empty and the text file are asked for and decoded too


def test_a_folder_in_the_page_cache_is_not_read_ahead(folder, sequential, monkeypatch):
    """Every file was just read: asking the kernel for each again would only cost CPU."""
    _probe_answers(folder)
    list(classify_inputs(Classifier(threads=1), [folder]))  # all in the cache now
    got, events = _read_ahead_events(folder, monkeypatch)
    assert got == sequential
    assert [e for e in events if e[0] == "ahead"] == []
    assert len(set(events)) == 302  # each decoded (the C decode leaves 2 to to_array)


def test_from_the_first_chunk_found_out_of_the_cache_every_file_is_read_ahead(
    folder, sequential, monkeypatch
):
    """Chunks 0-2 in the cache, chunk 3 not: 3 and every chunk after it are read ahead."""
    _probe_answers(folder)
    list(classify_inputs(Classifier(threads=1), [folder]))  # all in the cache now
    names = batch._directory_images(folder)
    _evict(folder, names[48:64])
    answers = _recorded_probes(monkeypatch)
    got, events = _read_ahead_events(folder, monkeypatch)
    assert got == sequential
    paths = [str(folder / n) for n in names]
    cold = [i for i, p in enumerate(paths) if answers.get(p) is False]
    if not cold:
        pytest.skip("chunk 3 was back in the page cache before the run")
    assert 48 <= cold[0] < 64  # chunks 0-2 answered "in the cache"
    ahead = [path for what, path in events if what == "ahead"]
    assert ahead == paths[48:]


def test_the_cache_probe_says_whether_a_file_would_wait_for_the_disk(tmp_path):
    """One byte read that would rather fail than wait (RWF_NOWAIT): a file just written is
    in the cache, an evicted one is not; a missing file counts as not, an empty one as in."""
    _probe_answers(tmp_path)
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG" * 100)
    assert batch._cached(str(png))
    evicted = []  # under load, something may read it back between the eviction and the probe
    for _ in range(5):
        _evict(tmp_path)
        evicted.append(batch._cached(str(png)))
        if not evicted[-1]:
            break
    assert evicted[-1] is False, evicted
    assert not batch._cached(str(tmp_path / "gone.png"))  # unreadable: read ahead (a no-op)
    (tmp_path / "empty.png").write_bytes(b"")
    assert batch._cached(str(tmp_path / "empty.png"))


def test_a_symlink_loop_in_a_folder_gets_its_own_line_and_the_rest_are_classified(
    tmp_path, fmnist_test
):
    """Before, telling whether the loop was a file raised, and the folder got one line:
    "cannot list directory (Too many levels of symbolic links)"."""
    Image.fromarray(fmnist_test.images[0]).save(tmp_path / "a.png")
    os.symlink(tmp_path / "loop.png", tmp_path / "loop.png")
    got = list(classify_inputs(Classifier(threads=1), [tmp_path]))
    assert [(Path(o.path).name, o.ok) for o in got] == [("a.png", True), ("loop.png", False)]
    assert got[1].error.startswith(f"{tmp_path / 'loop.png'}: ")
    assert "symbolic links" in got[1].error


def test_the_read_ahead_does_not_wait_on_a_fifo_or_a_missing_file(tmp_path, fmnist_test):
    os.mkfifo(tmp_path / "pipe.png")  # opened without O_NONBLOCK, this would block forever
    Image.fromarray(fmnist_test.images[0]).save(tmp_path / "shirt.png")
    names = [str(tmp_path / n) for n in ("pipe.png", "gone.png", "shirt.png")]
    got = []
    worker = threading.Thread(
        target=lambda: got.extend(classify_inputs(Classifier(threads=1), names)), daemon=True
    )
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the folder pipeline hung on a FIFO"
    assert [o.error for o in got] == [
        f"{names[0]}: not a regular file",
        f"{names[1]}: file not found",
        None,
    ]


def test_cli_defaults_and_one_thread_give_the_same_output_and_submission(folder, tmp_path):
    subs = tmp_path / "all.csv", tmp_path / "one.csv"
    runs = [
        CliRunner().invoke(main, [str(folder), "--submission", str(subs[0])]),
        CliRunner().invoke(main, [str(folder), "--submission", str(subs[1]), "--threads", "1"]),
    ]
    assert [r.exit_code for r in runs] == [1, 1]  # two bad images
    assert runs[0].stdout == runs[1].stdout and runs[0].stderr == runs[1].stderr
    assert runs[0].stderr.splitlines() == [
        f"error: {folder / '00100a-empty.png'}: empty file (0 bytes)",
        f"error: {folder / '00200a-text.png'}: not an image "
        "(unrecognised format; taken: formats Pillow reads)",
    ]
    assert subs[0].read_text() == subs[1].read_text()
    rows = subs[0].read_text().splitlines()
    assert rows[0] == "id,label" and [r.split(",")[0] for r in rows[1:]] == [
        f"{i:05d}" for i in range(300)
    ]


# --- fmnist-bench's batch work ------------------------------------------------------------------


def test_bench_accuracy_pass_uses_the_plan(fmnist_test):
    from fmnist_edge.benchmarks.evaluate import evaluate_tflite
    from fmnist_edge.edge_runtime.classifier import BUNDLED_MODEL
    from fmnist_edge.edge_runtime.threads import plan_threads as plan

    model = REPO / "edge_runtime" / BUNDLED_MODEL
    images, labels = fmnist_test.images[:1100], fmnist_test.labels[:1100]
    ev = evaluate_tflite(model, "int8", images, labels, threads=2)
    expected = np.argmax(Classifier(model, threads=1).predict_proba(images), axis=1)
    assert np.array_equal(ev.preds, expected)
    assert f"{plan(2, source='--max-threads')}" in ev.runtime and ev.threads == 2


# --- --engine ray, without starting Ray (tests/test_infer_ray.py starts one) ------------------


def test_ray_options_are_refused_where_they_mean_nothing(folder, monkeypatch):
    image = str(folder / "00000.png")
    for args, message in (
        (["--ray-address", "127.0.0.1:6379"], "--ray-address needs --engine ray"),
        (["--engine", "ray", "--threads", "2"], "--threads is for the local engine"),
    ):
        result = CliRunner().invoke(main, [*args, image])
        assert result.exit_code == 2 and message in result.output, result.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the [ray] extra were not installed
    result = CliRunner().invoke(main, ["--engine", "ray", image])
    assert result.exit_code == 2
    assert result.output == "error: --engine ray needs Ray Data: pip install 'fmnist-edge[ray]'\n"


def test_a_ray_address_where_nothing_answers_is_one_line_at_once(folder):
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    result = CliRunner().invoke(
        main, ["--engine", "ray", "--ray-address", "127.0.0.1:1", str(folder / "00000.png")]
    )
    assert result.exit_code == 2  # not Ray's minutes of retries
    assert result.output.startswith("error: --ray-address 127.0.0.1:1: nothing answers at ")


def test_the_edge_extra_does_not_pull_ray():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    extras = cfg["options.extras_require"]  # %(edge)s and the like expanded, as setuptools does
    assert "ray" not in extras["edge"] and "ray" not in extras["serve"]
    assert "ray[data]>=2.60" in extras["ray"].split() and "ray[data]" in extras["all"]


# --- the benchmark of a folder at the interpreter's speed ------------------------------------


@pytest.mark.slow
def test_infer_folder_benchmark_runs_and_reports(tmp_path, capsys, fmnist_test):
    """Its wiring on tiny folders (the numbers themselves are docs/benchmarks.md's)."""
    import json

    from fmnist_edge.benchmarks import infer_folder

    out = tmp_path / "report.json"
    infer_folder.main(
        ["--images", "70,20", "--reps", "1", "--bound-images", "512", "--pillow", "--out", str(out)]
    )
    report = json.loads(out.read_text())
    assert report["images"] == [20, 70] and len(report["reps"]) == 1
    s = report["summary"]
    assert set(s["layouts"]) == {"interpreters", "threads", "pillow"}  # pillow: no C decode
    assert report["decode"] == fastpng.describe()
    assert set(s["bound"]) == {"interpreters", "threads", "interpreters_cpu_ms", "threads_cpu_ms"}
    for n in ("20", "70"):
        assert s[n]["same_submission"] is True  # defaults and --threads 1 agree
        assert s[n]["defaults"]["ratio"] > 0 and s[n]["defaults"]["rss_mib"] > 10
        assert s[n]["threads_1"]["cpu_ms"] > s["bound"]["interpreters_cpu_ms"]  # decode too
        assert s[n]["pillow"]["same_submission"] is True  # the C decode off: the same rows
        assert s[n]["pillow"]["ratio"] > 0
    assert s["goal"]["met"] is False  # 10,000 images were not measured
    rep = report["reps"][0]
    assert len(rep["bounds"]) == 3  # before the first folder's defaults, after each
    for n, (before, after) in (("20", rep["bounds"][:2]), ("70", rep["bounds"][1:])):
        best = max((before[k] + after[k]) / 2 for k in ("interpreters", "threads"))
        assert rep[n]["bound"] == pytest.approx(best)
        ratio = rep[n]["defaults"]["images_per_s"] / best
        assert rep[n]["defaults"]["ratio"] == pytest.approx(ratio)
    printed = capsys.readouterr().out
    assert "the C decode off (every image decoded by Pillow), 70 images" in printed
    assert (
        "| 70 |" in printed
        and "goal (defaults >= 0.80 of the bound on 10,000 PNGs): not measured" in printed
    )
    with pytest.raises(SystemExit):
        infer_folder.main(["--images", "ten"])
    assert "--images 'ten': comma-separated image counts" in capsys.readouterr().err
