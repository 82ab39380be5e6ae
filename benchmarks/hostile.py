"""Hostile uploads, built in memory: the images and request heads that fmnist-serve's decode
budget is measured against (benchmarks/serve_hostile.py) and tested with (tests). Each builder
returns real encoded bytes that Pillow parses as the format they claim; none needs a file.

Deterministic (fixed seeds, fixed content), and cheap to build: the large ones are blank or
smooth images, which compress to a few kilobytes, so every upload fits a 4 MiB body.
"""

from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
from PIL import Image

_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def blank_png(width: int, height: int, mode: str = "RGBA") -> bytes:
    """A transparent (or black) PNG: 9000x9000 RGBA is 315 KB on the wire, 324 MB decoded."""
    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, "PNG", compress_level=9)
    return buf.getvalue()


def claiming(data: bytes, width: int, height: int) -> bytes:
    """A real PNG or JPEG whose header claims ``width`` x ``height``: what a decoder reads
    before any pixel, and what a budget must refuse on (its data would not fill the size)."""
    if data.startswith(b"\x89PNG"):
        ihdr = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
        return data[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]
    pos = 2
    while data[pos + 1] not in (0xC0, 0xC1, 0xC2):  # to the frame header (SOF0-2)
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return data[: pos + 5] + struct.pack(">HH", height, width) + data[pos + 9 :]


def blank_gif(width: int, height: int) -> bytes:
    """A blank GIF (one byte a pixel decoded)."""
    buf = io.BytesIO()
    Image.new("P", (width, height)).save(buf, "GIF")
    return buf.getvalue()


def png16(width: int, height: int) -> bytes:
    """A blank 16-bit RGBA PNG (Pillow unpacks 8 bytes a pixel down to 4 as it decodes)."""
    row = b"\0" + b"\0" * (width * 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    chunks = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def png_with_chunks(count: int, image: bytes | None = None) -> bytes:
    """``image`` (a small PNG) with ``count`` empty ancillary chunks before its data: each is
    parsed by Pillow in Python (3 MiB of them took 1-1.5 s)."""
    png = image or blank_png(28, 28, "L")
    return png[:33] + _chunk(b"zzZz", b"") * count + png[33:]


def png_text_bomb(inflated: int) -> bytes:
    """A 28x28 PNG with a zTXt chunk that inflates to ``inflated`` bytes of zeros."""
    png = blank_png(28, 28, "L")
    text = b"Comment\0\0" + zlib.compress(b"\0" * inflated, 9)
    return png[:33] + _chunk(b"zTXt", text) + png[33:]


def jpeg(
    width: int,
    height: int,
    *,
    progressive: bool = False,
    subsampling: int = 2,
    quality: int = 75,
    mode: str = "RGB",
) -> bytes:
    """A smooth colour JPEG (a random 1/32-size image scaled up): small on the wire."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.convert(mode).save(
        buf, "JPEG", quality=quality, progressive=progressive, subsampling=subsampling
    )
    return buf.getvalue()


def flat_jpeg(width: int, height: int) -> bytes:
    """A progressive JPEG of one gray: its AC scans are a dozen bytes each, whatever its size."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (128, 128, 128)).save(buf, "JPEG", progressive=True)
    return buf.getvalue()


def scans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each scan of a JPEG: its SOS segment and entropy-coded data."""
    found, pos = [], 2
    while pos + 4 <= len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            break
        end = pos + 2 + struct.unpack_from(">H", data, pos + 2)[0]
        if marker == 0xDA:
            end = _NEXT_MARKER.search(data, end).start()
            found.append((pos, end))
        pos = end
    return found


def repeat_scan(data: bytes, times: int, which: int = -1) -> bytes:
    """A progressive JPEG with one of its scans (the last by default) repeated ``times`` more
    times before its end: libjpeg decodes every copy over the whole image."""
    start, end = scans(data)[which]
    eoi = data.rindex(b"\xff\xd9")
    return data[:eoi] + data[start:end] * times + data[eoi:]


def costliest_scan(data: bytes) -> int:
    """The index of a progressive JPEG's last luma AC refinement scan (one component, Ss 1,
    Se 63, Ah > 0): the scan that costs libjpeg the most per byte (a few ns per pixel)."""
    best = -1
    for i, (start, _) in enumerate(scans(data)):
        count = data[start + 4]
        ss, se, a = data[start + 5 + 2 * count : start + 8 + 2 * count]
        if count == 1 and ss == 1 and se == 63 and a >> 4:
            best = i
    return best


def _bmp(width: int, height: int, bits: int, compression: int, body: bytes) -> bytes:
    colours = 1 << bits
    palette = b"".join(bytes((i * 255 // (colours - 1),) * 3 + (0,)) for i in range(colours))
    info = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, bits, compression, len(body), 2835, 2835, colours, 0
    )
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset) + info + palette + body


def rle_bmp(width: int, height: int) -> bytes:
    """An RLE8 BMP of one pixel, then end-of-line, per row: Pillow's Python decoder pads each
    row pixel by pixel (4000x4000 took 2.4 s from 17 KB)."""
    return _bmp(width, height, 8, 1, (b"\x01\x07\x00\x00") * height + b"\x00\x01")


def _tiff(tags: list[tuple[int, int, int, int]], data: bytes) -> bytes:
    """A little-endian TIFF: ``data`` at offset 8, then one directory of (tag, type, count,
    value) entries; a value of -1 points at ``data``."""
    entries = b"".join(
        struct.pack("<HHII", tag, kind, n, 8 if value < 0 else value)
        for tag, kind, n, value in sorted(tags)
    )
    head = b"II*\x00" + struct.pack("<I", 8 + len(data))
    return head + data + struct.pack("<H", len(tags)) + entries + b"\0\0\0\0"


def tiff_strips(width: int, height: int, strips: int) -> bytes:
    """An uncompressed gray TIFF cut into ``strips`` strips that all point at one row: Pillow
    lists and reads them one by one in Python (400,000 took 8.6 s from 3.2 MB)."""
    rows = max(1, height // strips)
    count = (height + rows - 1) // rows
    pixels = b"\0" * (width * rows)
    offsets_at, counts_at = 8 + len(pixels), 8 + len(pixels) + 4 * count
    tables = struct.pack(f"<{count}I", *([8] * count))
    tables += struct.pack(f"<{count}I", *([len(pixels)] * count))
    tags = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, count, offsets_at),
        (277, 3, 1, 1),
        (278, 4, 1, rows),
        (279, 4, count, counts_at),
    ]
    return _tiff(tags, pixels + tables)


def tiff_one_strip(width: int, height: int) -> bytes:
    """A blank 8-bit RGBA TIFF, deflated, in one strip: libtiff decodes it into a buffer the
    size of the image, beside the image itself."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width * 4)
    strip = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    bits_at = 8 + len(strip)
    tags = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 4, bits_at),
        (259, 3, 1, 8),
        (262, 3, 1, 2),
        (273, 4, 1, -1),
        (277, 3, 1, 4),
        (278, 4, 1, height),
        (279, 4, 1, len(strip)),
        (338, 3, 1, 2),
    ]
    return _tiff(tags, strip + struct.pack("<4H", 8, 8, 8, 8))


def gif_comment(blocks: int) -> bytes:
    """A 28x28 GIF whose comment is ``blocks`` sub-blocks of one byte: Pillow reads each in
    Python before the first frame."""
    buf = io.BytesIO()
    Image.new("P", (28, 28)).save(buf, "GIF")
    gif = buf.getvalue()
    flags = gif[10]
    start = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    return gif[:start] + b"\x21\xfe" + b"\x01A" * blocks + b"\x00" + gif[start:]


def webp(width: int, height: int) -> bytes:
    """A blank lossless WebP (Pillow's decoder holds four full-size RGBA copies of it)."""
    buf = io.BytesIO()
    Image.new("RGBA", (width, height)).save(buf, "WEBP", lossless=True)
    return buf.getvalue()


def head_with_line(size: int, host: str = "127.0.0.1") -> bytes:
    """A GET request whose head carries one header line of ``size`` bytes."""
    return (
        f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Padding: ".encode() + b"a" * size + b"\r\n\r\n"
    )
