"""The C decode of a folder's plain gray PNGs (edge_runtime/fastpng.py, _fastpng.c): Pillow's
pixels for every file it takes, every other file left to the runtime's own decode, and the
folder pipeline's outcomes the same with and without it.

The PNGs are written byte by byte (``png``, with tools/fastpng_fuzz.py's chunk and scanline
writers), so each row filter, chunk layout and fault is the one the test names; Pillow decodes
the same files as the reference."""

from __future__ import annotations

import os
import random
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist_edge.common.errors import ImageError
from fmnist_edge.edge_runtime import fastpng
from fmnist_edge.edge_runtime.batch import classify_inputs
from fmnist_edge.edge_runtime.budget import DecodeLimits
from fmnist_edge.edge_runtime.classifier import Classifier
from fmnist_edge.edge_runtime.preprocess import to_array

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tools/: a checkout's only
from tools import fastpng_fuzz as fuzz_tool  # noqa: E402

if os.environ.get("FMNIST_EDGE_REQUIRE_NATIVE") != "1" and not fastpng.AVAILABLE:
    pytest.skip("the C decode is not built here (setup.py)", allow_module_level=True)

SIGNATURE = b"\x89PNG\r\n\x1a\n"
LIMITS = DecodeLimits()


def test_the_c_decode_is_built():
    """CI sets FMNIST_EDGE_REQUIRE_NATIVE=1 (.ci/run): there, a build that quietly skipped the
    extension fails here instead of skipping every test of this file."""
    assert fastpng.AVAILABLE


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    """A PNG chunk, its CRC right unless ``crc`` is given."""
    if crc is None:
        return fuzz_tool.chunk(kind, data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def header(width: int, height: int, depth: int = 8, colour: int = 0, interlace: int = 0):
    return struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)


def png(
    pixels: np.ndarray,
    filters: tuple[int, ...] = (0,),
    idat: int = 1,
    before: tuple[bytes, ...] = (),
    between: bytes = b"",
    after: tuple[bytes, ...] = (),
    stream: bytes | None = None,
    ihdr: bytes | None = None,
    end: bytes | None = None,
) -> bytes:
    """A gray PNG of ``pixels``: its zlib ``stream`` (default: the filtered rows) cut into
    ``idat`` IDAT chunks, ``between`` (a chunk) after the first of them, the chunks ``before``
    and ``after`` the IDATs, ``ihdr`` and ``end`` in place of the usual IHDR and IEND."""
    h, w = pixels.shape
    data = zlib.compress(fuzz_tool.rows_of(pixels, list(filters))) if stream is None else stream
    cut = [data[len(data) * i // idat : len(data) * (i + 1) // idat] for i in range(idat)]
    idats = [chunk(b"IDAT", part) for part in cut]
    if between:
        idats.insert(1, between)
    return b"".join(
        [
            SIGNATURE,
            ihdr if ihdr is not None else chunk(b"IHDR", header(w, h)),
            *before,
            *idats,
            *after,
            end if end is not None else chunk(b"IEND", b""),
        ]
    )


def pixels_of(seed: int, shape=(28, 28)) -> np.ndarray:
    """Smooth rows with noise: every filter has something to predict."""
    rng = np.random.default_rng(seed)
    base = np.add.outer(np.arange(shape[0]) * 7, np.arange(shape[1]) * 5)
    return ((base + rng.integers(0, 40, shape)) % 256).astype(np.uint8)


def decoded(paths: list[Path], shape=(28, 28), limits: DecodeLimits = LIMITS):
    """The C decode's statuses and pixels."""
    out = np.full((len(paths), *shape), 77, np.uint8)
    status = fastpng.decode([str(p) for p in paths], out, limits)
    return list(status), out


def pillow(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


# --- taken: Pillow's pixels -----------------------------------------------------------------


TAKEN_FILES = {
    "filter 0 (None)": dict(filters=(0,)),
    "filter 1 (Sub)": dict(filters=(1,)),
    "filter 2 (Up)": dict(filters=(2,)),
    "filter 3 (Average)": dict(filters=(3,)),
    "filter 4 (Paeth)": dict(filters=(4,)),
    "every filter, row by row": dict(filters=(0, 1, 2, 3, 4, 4, 3, 2, 1)),
    "seven IDAT chunks": dict(filters=(4, 1), idat=7),
    "an empty IDAT among them": dict(filters=(2,), idat=2, between=chunk(b"IDAT", b"")),
    "text and physical chunks": dict(
        filters=(3,),
        before=(chunk(b"tEXt", b"Comment\0hello"), chunk(b"pHYs", bytes(9))),
        after=(chunk(b"tIME", bytes(7)), chunk(b"tEXt", b"Author\0me")),
    ),
    "gamma, sRGB, sBIT, chromaticities": dict(
        before=(
            chunk(b"gAMA", struct.pack(">I", 45455)),
            chunk(b"sRGB", b"\0"),
            chunk(b"sBIT", b"\x08"),
            chunk(b"cHRM", bytes(32)),
        )
    ),
    "data after IEND": dict(end=chunk(b"IEND", b"") + b"trailing bytes"),
}


@pytest.mark.parametrize("name", TAKEN_FILES)
def test_a_plain_gray_png_is_taken_with_pillows_pixels(tmp_path, name):
    pixels = pixels_of(len(name))
    path = tmp_path / "image.png"
    path.write_bytes(png(pixels, **TAKEN_FILES[name]))
    status, out = decoded([path])
    assert status == [fastpng.TAKEN]
    np.testing.assert_array_equal(out[0], pillow(path))
    np.testing.assert_array_equal(out[0], pixels)


def test_a_model_of_another_size_takes_its_own_size_only(tmp_path):
    """Height and width are not swapped: a 20-row, 28-column model."""
    wide, tall = tmp_path / "wide.png", tmp_path / "tall.png"
    wide.write_bytes(png(pixels_of(1, (20, 28)), filters=(4,)))
    tall.write_bytes(png(pixels_of(1, (28, 20)), filters=(4,)))
    status, out = decoded([wide, tall], shape=(20, 28))
    assert status == [fastpng.TAKEN, 1]
    np.testing.assert_array_equal(out[0], pillow(wide))


def test_pillows_own_pngs_of_the_official_test_set(tmp_path, fmnist_test):
    paths = []
    for i, pixels in enumerate(fmnist_test.images[:300]):
        paths.append(tmp_path / f"{i:03d}.png")
        Image.fromarray(pixels).save(paths[-1])
    status, out = decoded(paths)
    assert set(status) == {fastpng.TAKEN}
    np.testing.assert_array_equal(out, fmnist_test.images[:300])


# --- left to the runtime's own decode -------------------------------------------------------


def _left_files(tmp_path: Path) -> dict[str, Path]:
    """Files the C decode must leave, each to the Python decode's pixels or its error line."""
    pixels = pixels_of(5)
    rows = fuzz_tool.rows_of(pixels, [4])
    good = png(pixels, filters=(4,))
    bad_crc = chunk(b"IHDR", header(28, 28), crc=zlib.crc32(b"IHDR" + header(28, 28)) ^ 1)
    adler_wrong = bytearray(zlib.compress(rows))
    adler_wrong[-1] ^= 0xFF
    bad_filter = bytearray(rows)
    bad_filter[29 * 3] = 5  # row 3's filter byte
    rgb = np.repeat(pixels[..., None], 3, axis=2)
    files = {
        "RGB": _pillow_png(rgb),
        "16-bit gray": _pillow_png(pixels.astype(np.uint16) * 257),
        "palette": _pillow_png(pixels, mode="P"),
        "gray and alpha": _pillow_png(np.stack([pixels, pixels], axis=2)),
        "interlaced": png(pixels, ihdr=chunk(b"IHDR", header(28, 28, interlace=1))),
        "29 columns": png(pixels_of(5, (28, 29))),
        "a transparency chunk": png(pixels, before=(chunk(b"tRNS", b"\0\0"),)),
        "compressed text": png(pixels, before=(chunk(b"zTXt", b"k\0\0" + zlib.compress(b"x")),)),
        "an ICC profile": png(pixels, before=(chunk(b"iCCP", b"p\0\0" + zlib.compress(b"x")),)),
        "an unknown chunk": png(pixels, before=(chunk(b"abCd", b"?"),)),
        "the IHDR's CRC wrong": png(pixels, ihdr=bad_crc),
        "text before the IHDR": good[:8] + chunk(b"tEXt", b"a\0b") + good[8:],
        "two IHDRs": png(pixels, before=(chunk(b"IHDR", header(28, 28)),)),
        "text between IDATs": png(pixels, idat=2, between=chunk(b"tEXt", b"a\0b")),
        "cut mid-IDAT": good[: len(good) // 2],
        "no IEND": good[:-12],
        "an IEND cut short": good[:-2],
        "the stream short of a row": png(pixels, stream=zlib.compress(rows[:-29])),
        "the stream a row long": png(pixels, stream=zlib.compress(rows + rows[:29])),
        "bytes after the stream": png(pixels, stream=zlib.compress(rows) + b"\0\0\0"),
        "data after the stream, in another IDAT": png(
            pixels, stream=zlib.compress(rows), after=(chunk(b"IDAT", b"x"),)
        ),
        "an unfinished stream": png(pixels, stream=zlib.compress(rows)[:-6]),
        "a wrong checksum": png(pixels, stream=bytes(adler_wrong)),
        "a raw deflate stream": png(pixels, stream=zlib.compress(rows)[2:-4]),
        "filter 5": png(pixels, stream=zlib.compress(bytes(bad_filter))),
        "corrupt deflate data": png(pixels, stream=zlib.compress(rows)[:20] + b"\xff" * 40),
        "a JPEG": _pillow_png(pixels, fmt="JPEG"),
        "empty": b"",
        "text": b"not an image at all\n",
        "over 1 MiB": png(pixels, after=(chunk(b"tEXt", b"big\0" + b"x" * (1 << 20)),)),
    }
    out = {}
    for i, (name, data) in enumerate(files.items()):
        out[name] = tmp_path / f"{i:02d}.png"
        out[name].write_bytes(data)
    out["a directory"] = tmp_path / "dir.png"
    out["a directory"].mkdir()
    out["a FIFO"] = tmp_path / "fifo.png"
    os.mkfifo(out["a FIFO"])
    out["missing"] = tmp_path / "missing.png"
    return out


def _pillow_png(pixels: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    import io

    img = Image.fromarray(pixels)  # uint16: I;16, (H, W, 2): LA
    if mode is not None:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def test_every_odd_file_is_left_to_the_runtimes_decode(tmp_path):
    files = _left_files(tmp_path)
    status, _ = decoded(list(files.values()))
    taken = [name for name, s in zip(files, status, strict=True) if s == fastpng.TAKEN]
    assert taken == []


def test_the_decode_budget_is_kept(tmp_path):
    """More chunks or more text than DecodeLimits allows: left, so that the walk refuses it
    with its own message; a budget of pixels below the model's: not sent at all."""
    pixels = pixels_of(9)
    texts = tuple(chunk(b"tEXt", b"k\0" + b"v" * 50) for _ in range(10))
    path = tmp_path / "texts.png"
    path.write_bytes(png(pixels, before=texts))  # 13 chunks, 520 bytes of text
    assert decoded([path])[0] == [fastpng.TAKEN]
    assert decoded([path], limits=DecodeLimits(max_segments=12))[0] == [1]
    assert decoded([path], limits=DecodeLimits(max_segments=13))[0] == [fastpng.TAKEN]
    assert decoded([path], limits=DecodeLimits(max_metadata=519))[0] == [1]
    assert decoded([path], limits=DecodeLimits(max_metadata=520))[0] == [fastpng.TAKEN]
    assert fastpng.takes("auto", (28, 28), "grayscale", DecodeLimits(max_pixels=784))
    assert not fastpng.takes("auto", (28, 28), "grayscale", DecodeLimits(max_pixels=783))
    assert not fastpng.takes("photo", (28, 28), "grayscale", LIMITS)
    assert not fastpng.takes("raw", (28, 28), "rgb", LIMITS)


def test_bad_arguments(tmp_path):
    out = np.zeros((2, 28, 28), np.uint8)
    with pytest.raises(ValueError, match="fewer images than paths"):
        fastpng.decode(["a", "b", "c"], out, LIMITS)
    with pytest.raises((TypeError, ValueError, BufferError)):
        fastpng.decode(["a"], out[:, :, ::2], LIMITS)  # not contiguous
    frozen = np.zeros((1, 28, 28), np.uint8)
    frozen.flags.writeable = False
    with pytest.raises((TypeError, ValueError, BufferError)):
        fastpng.decode(["a"], frozen, LIMITS)
    # the paths are copied before any is converted: an __fspath__ that empties the list
    # cannot make the C code read past its end
    good = tmp_path / "good.png"
    good.write_bytes(png(pixels_of(3)))
    paths: list = []

    class Emptying:
        def __fspath__(self):
            paths.clear()
            return str(good)

    paths += [Emptying(), good, str(good)]
    assert fastpng.decode(paths, np.zeros((3, 28, 28), np.uint8), LIMITS) == bytes(3)
    # a name no file can have is left, not an exception
    assert fastpng.decode(["a\0b", 17], out, LIMITS) == b"\x01\x01"


# --- the folder pipeline: the same outcomes with and without it ---------------------------


@pytest.fixture(scope="module")
def clf():
    return Classifier()


def _outcomes(clf, args, native, **kwargs):
    return [
        (o.path, o.error, o.prediction) for o in classify_inputs(clf, args, native=native, **kwargs)
    ]


def test_a_mixed_folder_gives_the_same_outcomes_with_and_without_it(tmp_path, clf, fmnist_test):
    folder = tmp_path / "folder"
    folder.mkdir()
    files = _left_files(folder)
    for name in ("a directory", "a FIFO", "missing"):  # a listing skips them: named below
        files.pop(name)
    for i, pixels in enumerate(fmnist_test.images[:100]):  # good files around the odd ones
        Image.fromarray(pixels).save(folder / f"{i:02d}-good.png")
    named = [str(folder), str(tmp_path / "missing.png"), str(folder / "fifo.png")]
    for mode in ("auto", "raw"):
        with_c = _outcomes(clf, named, True, mode=mode)
        assert with_c == _outcomes(clf, named, False, mode=mode)
        assert sum(1 for _, error, _ in with_c if error) >= 10  # the odd files' lines
        assert sum(1 for _, error, _ in with_c if not error) >= 100
    budget = DecodeLimits(max_pixels=700)  # below 28x28: every image refused, in its words
    assert _outcomes(clf, named, True, limits=budget) == _outcomes(clf, named, False, limits=budget)


def test_fuzzed_pngs_are_left_or_decoded_to_the_runtimes_pixels(tmp_path):
    """Seeded mutations of plain PNGs (bytes flipped, cut, inserted, lengths changed): whatever
    the C decode takes, the runtime's own decode gives the same pixels for."""
    rng = random.Random(24)
    seeds = [
        png(pixels_of(s), filters=f, idat=i, before=b)
        for s, f, i, b in (
            (1, (0,), 1, ()),
            (2, (4, 1, 2), 3, ()),
            (3, (3,), 2, (chunk(b"tEXt", b"a\0bc"),)),
        )
    ]
    paths, taken = [], 0
    for n in range(600):
        paths.append(tmp_path / f"{n:03d}.png")
        paths[-1].write_bytes(fuzz_tool.mutated(rng, seeds))  # the fuzzer's, run under ASan there
    status, out = decoded(paths)
    for path, s, pixels in zip(paths, status, out, strict=True):
        if s == fastpng.TAKEN:
            taken += 1
            try:
                ours = to_array(path, "raw")
            except ImageError as exc:
                pytest.fail(f"{path.name}: taken by the C decode, refused by Python: {exc}")
            np.testing.assert_array_equal(pixels, ours, err_msg=path.name)
    assert 0 < taken < len(paths)
