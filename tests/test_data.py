"""The IDX reader, checksums, the discovery order, the download path and the notebook's split."""

from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from fmnist_edge.common.errors import DataError, DownloadError
from fmnist_edge.dataset import files as data

DEBIAN = data.DEBIAN_DIR
TEST_STEMS = data.SPLITS["test"]


def _idx(arr: np.ndarray) -> bytes:
    return (
        struct.pack(">HBB", 0, 0x08, arr.ndim)
        + struct.pack(f">{arr.ndim}I", *arr.shape)
        + (arr.astype(np.uint8).tobytes())
    )


@pytest.fixture
def tiny_idx():
    return np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_raw_and_gzipped(tmp_path, tiny_idx, compress):
    raw = _idx(tiny_idx)
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    np.testing.assert_array_equal(data.read_idx(path), tiny_idx)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b"\x01\x00" + b[2:], "bad magic number"),
        (lambda b: b[:2] + b"\x42" + b[3:], "bad magic number"),
        (lambda b: b[:6], "truncated IDX header"),
        (lambda b: b[:-5], "truncated: "),
        (lambda b: b + b"\x00", "unexpected trailing bytes"),
        (lambda b: b[:3], "too short"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path, tiny_idx, mangle, message):
    path = tmp_path / "bad.idx"
    path.write_bytes(mangle(_idx(tiny_idx)))
    with pytest.raises(DataError, match=message) as err:
        data.read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_and_corrupt_gzip(tmp_path, tiny_idx):
    gz = gzip.compress(_idx(tiny_idx))
    (tmp_path / "t.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(DataError, match="truncated gzip"):
        data.read_idx(tmp_path / "t.gz")
    (tmp_path / "c.gz").write_bytes(gz[:10] + b"\xff" * 20 + gz[30:])
    with pytest.raises(DataError, match="gzip"):
        data.read_idx(tmp_path / "c.gz")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        data.read_idx(tmp_path / "nope.gz")


def test_real_test_split_verifies(fmnist_test):
    assert fmnist_test.images.shape == (10000, 28, 28)
    assert fmnist_test.images.dtype == np.uint8
    assert np.bincount(fmnist_test.labels).tolist() == [1000] * 10
    assert fmnist_test.sha256 == {s: data.SHA256[s] for s in TEST_STEMS}


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No dataset anywhere but where the test puts one."""
    monkeypatch.setattr(data, "KERAS_CACHE", tmp_path / "keras")
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    monkeypatch.delenv("FMNIST_MIRROR", raising=False)
    return tmp_path


def _copy_test_split(directory: Path, unpack: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for stem in TEST_STEMS:
        src = DEBIAN / f"{stem}.gz"
        if unpack:
            (directory / stem).write_bytes(gzip.decompress(src.read_bytes()))
        else:
            shutil.copy(src, directory / src.name)
    return directory


def test_discovery_order(isolated, monkeypatch):
    places = {
        "arg": isolated / "arg",
        "env": isolated / "env",
        "keras": isolated / "keras",
        "debian": isolated / "debian",
    }
    for p in places.values():
        _copy_test_split(p)
    monkeypatch.setenv(data.ENV_DATA_DIR, str(places["env"]))
    assert data.locate("test", places["arg"], download=False) == places["arg"]
    assert data.locate("test", None, download=False) == places["env"]
    monkeypatch.delenv(data.ENV_DATA_DIR)
    assert data.locate("test", None, download=False) == places["keras"]
    shutil.rmtree(places["keras"])
    assert data.locate("test", None, download=False) == places["debian"]
    shutil.rmtree(places["debian"])
    with pytest.raises(DataError, match="not found"):
        data.locate("test", None, download=False)


def test_unpacked_files_are_accepted(isolated):
    d = _copy_test_split(isolated / "raw", unpack=True)
    split = data.load_split("test", d, download=False)
    assert split.images.shape == (10000, 28, 28)


def test_checksum_failure_names_the_file(isolated):
    d = _copy_test_split(isolated / "bad")
    target = d / "t10k-labels-idx1-ubyte.gz"
    labels = np.frombuffer(gzip.decompress(target.read_bytes())[8:], np.uint8).copy()
    labels[0] = (labels[0] + 1) % 10  # a well-formed file with one wrong label
    target.write_bytes(gzip.compress(_idx(labels)))
    with pytest.raises(DataError, match="SHA-256 mismatch") as err:
        data.load_split("test", d, download=False)
    assert str(target) in str(err.value)


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server standing in for the official mirror."""
    root = tmp_path / "mirror"
    _copy_test_split(root)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_from_mirror(isolated, mirror):
    _, url = mirror
    seen = []
    split = data.load_split(
        "test", mirrors=[url], progress=lambda name, done, total: seen.append((name, done, total))
    )
    cache = data.default_cache_dir()
    assert split.source == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{s}.gz" for s in TEST_STEMS)
    assert split.images.shape == (10000, 28, 28)
    assert seen[-1][1] == seen[-1][2]  # the progress reached the total
    # a second load finds the cache and downloads nothing
    assert data.locate("test", download=False) == cache


def test_download_falls_back_to_the_next_mirror(isolated, mirror):
    _, url = mirror
    split = data.load_split("test", mirrors=[url + "missing/", url], progress=lambda *a: None)
    assert split.images.shape[0] == 10000


def test_corrupt_download_is_refused_and_not_kept(isolated, mirror):
    root, url = mirror
    bad = root / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 100))
    with pytest.raises(DownloadError, match="SHA-256") as err:
        data.load_split("test", mirrors=[url], progress=lambda *a: None)
    assert "t10k-images-idx3-ubyte.gz" in str(err.value)
    assert "apt-get install dataset-fashion-mnist" in str(err.value)
    # nothing kept: no file, no temporary, not even the cache folders the download made
    assert not (isolated / "xdg").exists()


def test_split_matches_the_notebook():
    tr, va = data.train_val_split(60000)
    assert (len(tr), len(va)) == (48000, 12000)
    assert len(np.intersect1d(tr, va)) == 0
    # the first validation indices of scikit-learn's
    # train_test_split(range(60000), test_size=0.2, random_state=42), as the notebook split
    assert va[:5].tolist() == [12628, 37730, 39991, 8525, 8279]
    tr2, va2 = data.train_val_split(60000)
    np.testing.assert_array_equal(tr, tr2)
    assert not np.array_equal(data.train_val_split(60000, seed=1)[1], va)
