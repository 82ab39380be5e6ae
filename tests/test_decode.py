"""The decode budget (edge_runtime/decode.py, budget.py) on generated hostile images: each is
refused from its header with one line saying why, before it costs time or memory, and what
fits the budget is decoded, reduced, and converted as before. Issue 29."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from fmnist_edge.benchmarks import hostile
from fmnist_edge.common.errors import (
    CorruptImageError,
    ImageBombError,
    ImageError,
    NotAnImageError,
    TooManyPixelsError,
    UnsupportedFormatError,
    UsageError,
)
from fmnist_edge.edge_runtime.budget import DecodeLimits, parse_pixels, walk
from fmnist_edge.edge_runtime.decode import decode_bytes, open_image, reduce_by
from fmnist_edge.edge_runtime.preprocess import to_array

UPLOADS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")  # what fmnist-serve takes


def _refused(data: bytes, error: type, words: str, limits: DecodeLimits | None = None) -> str:
    """``data`` is refused with ``error``, one line naming it and containing ``words``, in
    well under a second (nothing was decoded)."""
    start = time.perf_counter()
    with pytest.raises(error) as info:
        decode_bytes(data, "upload", limits=limits, formats=UPLOADS)
    message = str(info.value)
    assert message.startswith("upload: ") and words in message and "\n" not in message, message
    assert time.perf_counter() - start < 2.0  # milliseconds here, seconds decoded
    return message


# --- the table, and ours: refused from the header --------------------------------------


def test_huge_images_are_refused_from_their_header_with_size_and_limit():
    png = hostile.claiming(hostile.blank_png(28, 28), 9000, 9000)
    _refused(
        png,
        TooManyPixelsError,
        "9000x9000 PNG is 81,000,000 pixels to decode, over the "
        "10,000,000-pixel limit (--max-pixels)",
    )
    progressive = hostile.claiming(hostile.jpeg(64, 64, progressive=True), 9000, 9000)
    _refused(progressive, TooManyPixelsError, "9000x9000 progressive JPEG of")
    wide = hostile.claiming(hostile.png16(8, 8), 3000, 3000)  # 16-bit RGBA: 8 bytes a pixel
    _refused(wide, TooManyPixelsError, "3000x3000 PNG of 64-bit pixels is 18,000,000 pixels")
    _refused(
        hostile.rle_bmp(4000, 4000),
        TooManyPixelsError,
        "4000x4000 RLE BMP (decoded in Python) is 256,000,000 pixels",
    )
    # a baseline JPEG counts at the scale it is decoded at: 9000x9000 decodes at 1/8
    baseline = hostile.claiming(hostile.jpeg(64, 64), 9000, 9000)
    limits = DecodeLimits(max_pixels=1_000_000)
    message = _refused(baseline, TooManyPixelsError, "decoded at 1125x1125", limits)
    assert "is 1,265,625 pixels" in message


def test_costly_structures_are_bombs():
    flat = hostile.flat_jpeg(1400, 1400)
    repeated = hostile.repeat_scan(flat, 800, hostile.costliest_scan(flat))  # 22 KB
    _refused(repeated, ImageBombError, "a JPEG of more scans than the 100 allowed")
    _refused(
        hostile.png_with_chunks(262_000),
        ImageBombError,
        "a PNG of more chunks than the 10,000 allowed",
    )
    _refused(
        hostile.png_text_bomb(8 * 1024 * 1024),
        ImageBombError,
        "inflate to more than 4,194,304 bytes (a decompression bomb in its metadata)",
    )
    _refused(
        hostile.tiff_strips(64, 400_000, 400_000),
        ImageBombError,
        "a TIFF of more strips or tiles than the 10,000 allowed",
    )
    _refused(
        hostile.gif_comment(2_000_000),
        ImageBombError,
        "a GIF of more extension blocks than the 10,000 allowed",
    )
    stray = hostile.jpeg(64, 64)
    stray = stray[:2] + b"\x00" * 20_000 + stray[2:]  # Pillow reads stray bytes one by one
    _refused(stray, ImageBombError, "a JPEG of more markers and stray bytes")


def test_what_is_usual_passes_the_walk():
    limits = DecodeLimits()
    progressive = hostile.jpeg(640, 480, progressive=True)
    assert walk(progressive, "x", limits).scans == len(hostile.scans(progressive)) == 10
    assert walk(hostile.jpeg(640, 480), "x", limits).scans == 1
    assert walk(hostile.png_text_bomb(100_000), "x", limits).size == (28, 28)
    assert walk(hostile.gif_comment(1000), "x", limits).size == (28, 28)
    assert walk(hostile.tiff_strips(64, 1000, 1000), "x", limits).size == (64, 1000)


def test_formats_not_taken_and_truncation_say_what_they_are(tmp_path):
    for fmt in ("ICO", "PPM", "PCX", "TGA", "AVIF"):
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), "white").save(buf, fmt)
        message = _refused(buf.getvalue(), UnsupportedFormatError, f"{fmt} image, not a format")
        assert message.endswith("(PNG, JPEG, GIF, BMP, WEBP, TIFF)")
    _refused(b"just text, no image at all", NotAnImageError, "not an image (unrecognised format")
    tiff, webp = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (64, 64)).save(tiff, "TIFF")
    Image.new("RGB", (64, 64)).save(webp, "WEBP")
    _refused(tiff.getvalue()[:100], CorruptImageError, "truncated TIFF image")
    _refused(webp.getvalue()[:30], CorruptImageError, "truncated WEBP image")
    # fmnist-infer takes every format Pillow reads: an ICO file is just an image there
    Image.new("RGB", (32, 32), "white").save(tmp_path / "icon.ico")
    assert open_image(tmp_path / "icon.ico").size == (32, 32)


def test_memory_running_out_is_its_own_error(tmp_path):
    """A MemoryError while decoding is ImageMemoryError (fmnist-serve: 503), never a bad
    image. In a child process whose address space is capped just above what it uses."""
    (tmp_path / "big.png").write_bytes(hostile.blank_png(3000, 3000))
    code = (
        "import resource, sys\n"
        "from fmnist_edge.edge_runtime.decode import decode_bytes\n"
        "from fmnist_edge.edge_runtime.budget import DecodeLimits\n"
        "from fmnist_edge.common.errors import ImageMemoryError\n"
        f"data = open({str(tmp_path / 'big.png')!r}, 'rb').read()\n"
        "used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + 16 * 2**20, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    decode_bytes(data, 'big.png', limits=DecodeLimits(max_pixels=10**8))\n"
        "except ImageMemoryError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "big.png: out of memory while decoding 3000x3000 PNG", out


# --- within the budget: decoded, reduced, converted as before ---------------------------------


def test_banded_reduction_equals_reducing_the_whole_image():
    rng = np.random.default_rng(1)
    rgba = Image.fromarray(rng.integers(0, 256, (2311, 1703, 4), dtype=np.uint8))
    gray16 = Image.fromarray(rng.integers(0, 65536, (1703, 2311), dtype=np.uint16))
    palette = Image.fromarray(rng.integers(0, 256, (1500, 2500, 3), dtype=np.uint8)).convert("P")
    for img in (rgba, gray16, palette):
        buf = io.BytesIO()
        img.save(buf, "PNG", compress_level=0)  # random pixels: compressing them is the cost
        decoded = decode_bytes(buf.getvalue(), "x")
        whole = reduce_by(img, max(img.size) // 224)
        assert decoded.image.size == whole.size and decoded.image.mode == whole.mode
        assert np.array_equal(np.asarray(decoded.image), np.asarray(whole)), img.mode
        assert decoded.pixels == img.width * img.height


def test_raw_mode_jpeg_is_decoded_at_reduced_scale_and_turned_upright(tmp_path):
    upright = np.full((2400, 1200, 3), 255, np.uint8)
    upright[100:500, 100:1100] = 0  # a dark bar near the top
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: "rotate 90 CW to display"
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    stored.save(tmp_path / "turned.jpg", exif=exif, quality=90)
    Image.fromarray(upright).save(tmp_path / "upright.jpg", quality=90)
    decoded = open_image(tmp_path / "turned.jpg")
    assert decoded.size[1] > decoded.size[0] and max(decoded.size) < 448  # upright, reduced
    for mode in ("raw", "photo"):
        got = to_array(tmp_path / "turned.jpg", mode)
        want = to_array(tmp_path / "upright.jpg", mode)
        assert np.abs(got.astype(int) - want).mean() < 8, mode


def test_the_limit_is_the_callers(tmp_path):
    png = hostile.blank_png(100, 100, "L")
    assert decode_bytes(png, "x", limits=DecodeLimits(max_pixels=10_000)).pixels == 10_000
    with pytest.raises(TooManyPixelsError, match="over the 9,999-pixel limit"):
        decode_bytes(png, "x", limits=DecodeLimits(max_pixels=9_999))
    (tmp_path / "small.png").write_bytes(png)
    with pytest.raises(TooManyPixelsError):
        to_array(tmp_path / "small.png", "raw", limits=DecodeLimits(max_pixels=5_000))
    assert to_array(tmp_path / "small.png", "raw").shape == (28, 28)  # the default: 10M


def test_limits_and_pixel_counts_are_checked():
    assert parse_pixels("10M") == 10_000_000 and parse_pixels("500k") == 500_000
    assert parse_pixels("2.5M") == 2_500_000 and parse_pixels("784") == 784
    for bad in ("lots", "0", "-3", "1e6", "10MB"):
        with pytest.raises(UsageError, match=f"--max-pixels {bad!r}"):
            parse_pixels(bad)
    with pytest.raises(UsageError, match="max_scans must be an integer >= 1"):
        DecodeLimits(max_scans=0)


def test_special_files_are_not_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ImageError, match="pipe.png: not a regular file"):
        open_image(tmp_path / "pipe.png")  # would block forever if opened
    with pytest.raises(ImageError, match="/dev/zero: not a regular file"):
        open_image("/dev/zero")


# --- fmnist-infer --max-pixels ---------------------------------------------------------------


def test_infer_max_pixels(tmp_path):
    from fmnist_edge.edge_runtime.cli import main

    Image.new("L", (100, 100)).save(tmp_path / "a.png")
    runner = CliRunner()
    refused = runner.invoke(main, ["--max-pixels", "5K", str(tmp_path / "a.png")])
    assert refused.exit_code == 1
    assert refused.stderr.strip() == (
        f"error: {tmp_path / 'a.png'}: 100x100 PNG is 10,000 pixels to decode, over the "
        "5,000-pixel limit (--max-pixels)"
    )
    assert runner.invoke(main, ["--max-pixels", "10K", str(tmp_path / "a.png")]).exit_code == 0
    bad = runner.invoke(main, ["--max-pixels", "many", str(tmp_path / "a.png")])
    assert bad.exit_code == 2 and bad.output.startswith("error: --max-pixels 'many': not a pixel")


# --- small plain PNGs: straight to Pillow's PNG decoder, the same pixels (issue 24) ----------


def _pillow(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _png(img: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **save)
    return buf.getvalue()


def _split_idat(data: bytes, parts: int) -> bytes:
    """The same PNG with its image data cut into ``parts`` IDAT chunks."""
    structure = walk(data, "x", DecodeLimits())
    ((start, end),) = structure.plain
    idat = data[start:end]
    step = -(-len(idat) // parts)
    chunks = b"".join(
        hostile._chunk(b"IDAT", idat[i : i + step]) for i in range(0, len(idat), step)
    )
    return data[: start - 8] + chunks + data[end + 4 :]


def test_small_plain_pngs_decode_to_pillows_pixels(fmnist_test, tmp_path):
    """Fashion-MNIST's own images, RGB, text chunks, several IDAT chunks: the fast path is
    taken and gives what Image.open gives, bit for bit, and the same array through to_array."""
    images = fmnist_test.images
    rng = np.random.default_rng(0)
    cases = [_png(Image.fromarray(x)) for x in images[:300]]
    rgb = Image.fromarray(rng.integers(0, 256, (30, 41, 3), dtype=np.uint8))
    cases += [_png(rgb), _png(rgb, compress_level=0), _split_idat(_png(rgb), 5)]
    info = PngInfo()
    info.add_text("Comment", "a note")
    info.add_text("Zipped", "x" * 500, zip=True)
    cases.append(_png(Image.fromarray(images[0]), pnginfo=info, dpi=(72, 72)))
    for data in cases:
        assert walk(data, "x", DecodeLimits()).plain, "not taken as plain"
        decoded = decode_bytes(data, "x").image
        expected = _pillow(data)
        assert decoded.mode == expected.mode and decoded.size == expected.size
        np.testing.assert_array_equal(np.asarray(decoded), np.asarray(expected))
        np.testing.assert_array_equal(to_array(data, "raw"), to_array(expected, "raw"))
        # in the model's own size and colour, to_array takes the pixels as stored
        size, color = expected.size[::-1], "rgb" if expected.mode == "RGB" else "grayscale"
        stored = to_array(data, "raw", size, color)
        np.testing.assert_array_equal(stored, to_array(expected, "raw", size, color))
        assert stored.dtype == np.uint8 and stored.shape == ((*size, 3) if color == "rgb" else size)
    # auto (Fashion-MNIST's) takes a 28x28 gray image as raw: the same from a file
    path = tmp_path / "x.png"
    for x in images[:20]:
        path.write_bytes(_png(Image.fromarray(x)))
        np.testing.assert_array_equal(to_array(path, "auto"), x)


def test_a_plain_gray_png_is_decoded_into_the_slot_it_is_given(fmnist_test, tmp_path):
    """A folder's batch: each plain 28x28 gray PNG decoded by Pillow straight into its slot,
    the same pixels as without one, from bytes and from a file, ``out`` itself returned."""
    batch = np.zeros((300, 28, 28), dtype=np.uint8)
    for i, x in enumerate(fmnist_test.images[:300]):
        data, slot = _png(Image.fromarray(x)), batch[i]
        assert decode_bytes(data, "x", into=slot).filled
        slot[...] = 0
        assert to_array(data, "raw", out=slot) is slot
    np.testing.assert_array_equal(batch, fmnist_test.images[:300])
    path = tmp_path / "x.png"
    path.write_bytes(_png(Image.fromarray(fmnist_test.images[7])))
    slot = np.zeros((28, 28), dtype=np.uint8)
    assert to_array(path, "auto", out=slot) is slot
    np.testing.assert_array_equal(slot, fmnist_test.images[7])


def test_a_slot_the_image_does_not_fit_is_filled_by_copy(fmnist_test):
    """RGB, another size, a read-only, strided or non-byte array: Pillow decodes as without a
    slot and ``to_array`` copies the pixels in; ``photo`` writes the converted image."""
    x = fmnist_test.images[3]
    gray, rgb = _png(Image.fromarray(x)), _png(Image.fromarray(np.stack([x] * 3, axis=-1)))
    read_only = np.zeros((28, 28), dtype=np.uint8)
    read_only.flags.writeable = False
    for data, into in (
        (rgb, np.zeros((28, 28), dtype=np.uint8)),  # an RGB file for a gray model
        (gray, np.zeros((28, 29), dtype=np.uint8)[:, :28]),  # strided
        (gray, np.zeros((14, 56), dtype=np.uint8)),  # the same bytes, another shape
        (gray, np.zeros((28, 28), dtype=np.int16)),
        (gray, read_only),
    ):
        assert not decode_bytes(data, "x", into=into).filled
    out = np.zeros((28, 28), dtype=np.uint8)
    assert to_array(rgb, "raw", out=out) is out
    np.testing.assert_array_equal(out, to_array(rgb, "raw"))
    strided = np.zeros((28, 29), dtype=np.uint8)[:, :28]
    np.testing.assert_array_equal(to_array(gray, "raw", out=strided), x)
    rgb_out = np.zeros((28, 28, 3), dtype=np.uint8)
    to_array(rgb, "raw", (28, 28), "rgb", out=rgb_out)
    np.testing.assert_array_equal(rgb_out, np.stack([x] * 3, axis=-1))
    photo = np.zeros((28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(to_array(gray, "photo", out=photo), to_array(gray, "photo"))
    assert not np.array_equal(photo, x)  # the photo conversion, not the stored pixels


def test_a_corrupt_plain_png_with_a_slot_is_refused_in_the_full_paths_words():
    data = _png(Image.fromarray(np.full((28, 28), 200, np.uint8)))
    ((start, end),) = walk(data, "x", DecodeLimits()).plain
    garbage = data[:start] + bytes(b ^ 0x5A for b in data[start:end]) + data[end:]
    with pytest.raises(CorruptImageError, match="^x: corrupt or truncated PNG image"):
        decode_bytes(garbage, "x", into=np.zeros((28, 28), dtype=np.uint8))
    with pytest.raises(CorruptImageError, match="^image bytes: corrupt or truncated PNG"):
        to_array(garbage, "raw", out=np.zeros((28, 28), dtype=np.uint8))


def test_a_stream_short_of_its_last_rows_decodes_the_same_into_a_used_slot():
    """Pillow takes a zlib stream that ends before the last row as no error, and leaves the
    rows it lacks as they were: zeros in an image of its own, so zeros in a slot too, not the
    pixels of the image decoded there before."""
    import struct
    import zlib

    x = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    rows = b"".join(b"\0" + row.tobytes() for row in x)
    stream = zlib.compress(rows[: -29 * 2])  # two rows short

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    )
    alone = to_array(data, "raw")
    assert (alone[:26] == x[:26]).all() and not alone[26:].any()
    used = np.full((28, 28), 123, dtype=np.uint8)
    np.testing.assert_array_equal(to_array(data, "raw", out=used), alone)


def test_pngs_that_are_not_plain_take_the_full_path():
    """Palette, transparency, alpha, 16 bits, EXIF orientation, interlacing, a chunk between
    IDATs, a broken IHDR: Pillow's own open decides these (and orientation is still applied)."""
    gray = Image.fromarray(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate: the full path turns it upright
    split = _split_idat(_png(gray.convert("RGB")), 2)
    (_, first_end), _ = walk(split, "x", DecodeLimits()).plain
    between = split[: first_end + 4] + hostile._chunk(b"tEXt", b"k\0v") + split[first_end + 4 :]
    with pytest.raises(CorruptImageError, match="truncated PNG"):  # Pillow reads one IDAT run
        decode_bytes(between, "x")
    interlaced = bytearray(_png(gray))
    interlaced[28] = 1  # the IHDR's interlace byte, CRC now wrong too
    broken_crc = bytearray(_png(gray))
    broken_crc[29] ^= 0xFF
    for data in (
        _png(gray.convert("P")),
        _png(gray, transparency=0),
        _png(gray.convert("LA")),
        hostile.png16(8, 8),
        _png(gray, exif=exif),
        bytes(interlaced),
        bytes(broken_crc),
        between,
    ):
        assert not walk(data, "x", DecodeLimits()).plain
    assert to_array(_png(gray, exif=exif), "raw").tolist() == np.rot90(gray, -1).tolist()


def test_a_cut_or_corrupt_plain_png_is_refused_as_before():
    """The fast path gives up on a cut or corrupt stream; the full path says what it is."""
    data = _png(Image.fromarray(np.full((28, 28), 200, np.uint8)))
    ((start, end),) = walk(data, "x", DecodeLimits()).plain
    cut = data[: start + (end - start) // 2] + data[end:]  # half the data, the length kept
    assert walk(cut, "x", DecodeLimits()).plain == ()  # it no longer ends where it says
    short = data[:start] + hostile._chunk(b"IDAT", data[start : start + 6])[8:-4] + data[end:]
    garbage = data[:start] + bytes(b ^ 0x5A for b in data[start:end]) + data[end:]
    for bad in (cut, short, garbage):
        with pytest.raises(CorruptImageError, match="^x: corrupt or truncated PNG image"):
            decode_bytes(bad, "x")
    bigger = hostile.claiming(data, 200, 200)  # a header that claims more than its data
    assert walk(bigger, "x", DecodeLimits()).plain
    with pytest.raises(CorruptImageError, match="^x: corrupt or truncated PNG image"):
        decode_bytes(bigger, "x")
