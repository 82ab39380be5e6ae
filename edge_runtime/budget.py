"""What decoding one image may cost, and a walk over a file's structure that says what it will,
before Pillow parses any of it.

Pillow's own guard stops at 89.5 M pixels. Below it, a hostile file of a few kilobytes can still
cost seconds of CPU or hundreds of MiB (docs/raspberry-pi.md has the table); ``DecodeLimits``
bounds each way:
- pixels: how many one image decodes to, counted from its header before decoding
  (preprocess.py counts them: it knows the formats' costs);
- scans: libjpeg decodes each scan of a progressive JPEG over the whole image, so a file that
  repeats a 14-byte scan 800 times costs seconds (libjpeg-turbo's ``-maxscans`` guard);
- segments: Pillow parses PNG chunks, JPEG header markers (and stray bytes between them), GIF
  extension blocks and TIFF strip tables in Python, one by one;
- metadata: PNG text and ICC chunks are inflated when the file is opened.

``walk`` enforces the last three on the raw bytes. Standard library only (no numpy, no Pillow):
the commands read the defaults without loading either.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, fields

from fmnist_edge.common.errors import ImageBombError, UsageError

MIB = 1024 * 1024
_PIXELS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")
_NEXT_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # skips fill bytes, RSTn, stuffing
_STRIP_TAGS = (273, 279, 324, 325)  # TIFF StripOffsets, StripByteCounts, TileOffsets, ...Counts
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type: gray, RGB, palette, +alpha
# Chunks that change nothing in the pixels Pillow decodes (its info only): a PNG of these and
# IDAT alone is plain (Structure.plain). tRNS, PLTE, eXIf (orientation) and APNG's are not.
_PLAIN_CHUNKS = frozenset(
    b"IHDR IDAT IEND tEXt zTXt iTXt pHYs tIME gAMA cHRM sRGB iCCP sBIT".split()
)


@dataclass(frozen=True)
class DecodeLimits:
    """The most one image may cost to decode; the same for fmnist-infer, fmnist-serve and the
    library (``to_array``)."""

    max_pixels: int = 10_000_000  # pixels one image decodes to, as decode.count counts them
    max_scans: int = 100  # scans (SOS markers) in a progressive JPEG; usual encoders write 10
    max_segments: int = 10_000  # PNG chunks, JPEG markers, GIF extension blocks, TIFF strips
    max_metadata: int = 4 * MIB  # bytes a PNG's text and ICC chunks inflate to, together

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{f.name} must be an integer >= 1 (got {value!r})")


@dataclass(frozen=True)
class Structure:
    """What the walk saw: the format it walked (None: not one it walks), the size its header
    gives (width, height; None where it did not see one), a JPEG's scans (1: baseline) and a
    PNG's bits per pixel as stored (a 16-bit RGBA pixel is 64: twice the inflating).
    ``plain`` is set for a PNG whose pixels are its IDAT data alone: 8-bit gray or RGB, not
    interlaced, one run of IDAT chunks, and no chunk besides them that Pillow would act on."""

    format: str | None = None
    size: tuple[int, int] | None = None
    scans: int = 0
    bits: int = 0
    plain: tuple[tuple[int, int], ...] = ()  # a plain PNG's IDAT spans (``_png`` says which)


def parse_pixels(text: str, option: str = "--max-pixels") -> int:
    """'10M', '500K', '10000000' -> pixels (decimal units: megapixels as cameras count them)."""
    match = _PIXELS.match(str(text))
    if not match:
        raise UsageError(f"{option} {text!r}: not a pixel count (examples: 10M, 500K, 4000000)")
    value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]
    if value < 1:
        raise UsageError(f"{option} {text!r}: must be at least 1 pixel")
    return int(value)


def walk(buf: bytes | memoryview, name: str, limits: DecodeLimits) -> Structure:
    """Walk the structure of an encoded image (PNG, JPEG, GIF or TIFF; others pass untouched)
    and raise ImageBombError naming ``name`` where it is over ``limits``. Never decodes pixels;
    a file cut short just ends the walk (Pillow says how it is broken)."""
    buf = memoryview(buf).cast("B")
    head = bytes(buf[:8])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(buf, name, limits)
    if head.startswith(b"\xff\xd8"):
        return _jpeg(buf, name, limits)
    if head.startswith((b"GIF87a", b"GIF89a")):
        return _gif(buf, name, limits)
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return _tiff(buf, name, limits)
    return Structure()


def _too_many(name: str, what: str, limit: int, why: str) -> ImageBombError:
    return ImageBombError(f"{name}: {what} than the {limit:,} allowed ({why})")


def _png(buf: memoryview, name: str, limits: DecodeLimits) -> Structure:
    pos, chunks, text, size, bits = 8, 0, 0, None, 0
    header, kinds, idat, ended = b"", set(), [], False
    while pos + 8 <= len(buf):
        length, kind = struct.unpack_from(">I4s", buf, pos)
        if kind == b"IHDR" and pos + 25 <= len(buf):
            header = bytes(buf[pos + 4 : pos + 25])  # type, 13 bytes of fields, CRC
            *size, depth, colour = struct.unpack_from(">IIBB", buf, pos + 8)
            bits = depth * _PNG_CHANNELS.get(colour, 1)
        chunks += 1
        if chunks > limits.max_segments:
            why = "Pillow parses each chunk in Python"
            raise _too_many(name, "a PNG of more chunks", limits.max_segments, why)
        if kind in (b"tEXt", b"zTXt", b"iTXt", b"iCCP"):
            left = limits.max_metadata - text
            text += _text_bytes(kind, buf[pos + 8 : pos + 8 + length], left + 1)
            if text > limits.max_metadata:
                raise ImageBombError(
                    f"{name}: a PNG whose text and ICC chunks inflate to more than "
                    f"{limits.max_metadata:,} bytes (a decompression bomb in its metadata)"
                )
        kinds.add(kind)
        if kind == b"IDAT":
            idat.append((pos + 8, pos + 8 + length))
        if kind == b"IEND":
            ended = pos + 12 <= len(buf)
            break
        pos += 12 + length
    plain = _plain(header, kinds, idat, ended)
    return Structure("PNG", tuple(size) if size else None, bits=bits, plain=plain)


def _plain(
    header: bytes, kinds: set[bytes], idat: list[tuple[int, int]], ended: bool
) -> tuple[tuple[int, int], ...]:
    """The IDAT spans of a PNG whose pixels they alone make (Structure.plain), else ()."""
    if not (ended and idat and len(header) == 21 and kinds <= _PLAIN_CHUNKS):
        return ()
    if zlib.crc32(header[:17]) != struct.unpack_from(">I", header, 17)[0]:
        return ()  # Pillow refuses a broken IHDR: let it say so
    depth, colour, method, filtering, interlace = header[12:17]
    if depth != 8 or colour not in (0, 2) or method or filtering or interlace:
        return ()
    if any(end != start - 12 for (_, end), (start, _) in zip(idat, idat[1:], strict=False)):
        return ()  # IDAT chunks with another chunk between them
    return tuple(idat)


def _text_bytes(kind: bytes, data: memoryview, budget: int) -> int:
    """The bytes a text or ICC chunk holds once inflated, counted up to ``budget``."""
    head = bytes(data[:400])
    key_end = head.find(b"\0")
    if kind == b"tEXt" or key_end < 0:
        return len(data)
    if kind == b"iTXt":  # keyword, flag, method, language, translated keyword, text
        compressed = head[key_end + 1 : key_end + 2] == b"\x01"
        lang_end = head.find(b"\0", key_end + 3)
        key2_end = head.find(b"\0", lang_end + 1) if lang_end >= 0 else -1
        if key2_end < 0:
            return len(data)
        start = key2_end + 1
        if not compressed:
            return len(data) - start
    else:  # zTXt and iCCP: name, method, zlib stream
        start = key_end + 2
    try:
        return len(zlib.decompressobj().decompress(data[start:], budget))
    except zlib.error:
        return 0  # not ours to judge: Pillow says the file is corrupt


def _jpeg(buf: memoryview, name: str, limits: DecodeLimits) -> Structure:
    pos, segments, scans, end, size = 2, 0, 0, len(buf), None
    while pos < end:
        found = _NEXT_JPEG_MARKER.search(buf, pos)
        if found is None:
            break
        if scans == 0:  # stray bytes before the first scan: Pillow reads them one by one
            segments += found.start() - pos
        marker, pos = buf[found.start() + 1], found.end()
        if marker == 0xD9:  # EOI
            break
        if marker in (0x01, 0xD8):  # markers without a length
            continue
        segments += 1
        if segments > limits.max_segments:
            what = "a JPEG of more markers and stray bytes"
            raise _too_many(name, what, limits.max_segments, "Pillow parses them in Python")
        if marker == 0xDA:
            scans += 1
            if scans > limits.max_scans:
                why = "each is decoded over the whole image"
                raise _too_many(name, "a JPEG of more scans", limits.max_scans, why)
        if pos + 7 > end:
            break
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn: the frame
            height, width = struct.unpack_from(">HH", buf, pos + 3)
            size = size or (width, height)
        pos += struct.unpack_from(">H", buf, pos)[0]
    return Structure("JPEG", size, scans)


def _gif(buf: memoryview, name: str, limits: DecodeLimits) -> Structure:
    """Extension blocks before the first frame (Pillow reads their sub-blocks in Python)."""
    if len(buf) < 13:
        return Structure("GIF")
    size = struct.unpack_from("<HH", buf, 6)
    flags = buf[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    blocks = 0
    while pos + 1 < len(buf) and buf[pos] == 0x21:  # an extension; 0x2C starts frame 0
        pos += 2
        while pos < len(buf):
            length = buf[pos]
            pos += 1 + length
            blocks += 1
            if blocks > limits.max_segments:
                why = "Pillow reads each in Python"
                raise _too_many(name, "a GIF of more extension blocks", limits.max_segments, why)
            if length == 0:
                break
    return Structure("GIF", size)


def _tiff(buf: memoryview, name: str, limits: DecodeLimits) -> Structure:
    """The first directory: its entries, and how many strips or tiles it lists (Pillow builds
    a Python list of them, and reads raw strips one by one)."""
    order = "<" if bytes(buf[:2]) == b"II" else ">"
    big = buf[2 + (order == ">")] == 0x2B  # BigTIFF: 8-byte offsets and counts
    offset_format, count_format, entry = ("Q", "Q", 20) if big else ("I", "H", 12)
    try:
        ifd = struct.unpack_from(order + offset_format, buf, 8 if big else 4)[0]
        entries = struct.unpack_from(order + count_format, buf, ifd)[0]
        if entries > limits.max_segments:
            why = "Pillow parses each in Python"
            raise _too_many(name, "a TIFF directory of more entries", limits.max_segments, why)
        first, dims = ifd + (8 if big else 2), {}
        for i in range(entries):
            at = first + i * entry
            tag, kind, count = struct.unpack_from(order + "HH" + offset_format, buf, at)
            if tag in _STRIP_TAGS and count > limits.max_segments:
                why = "Pillow lists and reads each in Python"
                raise _too_many(name, "a TIFF of more strips or tiles", limits.max_segments, why)
            if tag in (256, 257):  # ImageWidth, ImageLength: a SHORT or a LONG, in place
                value = order + ("H" if kind == 3 else "I")
                dims[tag] = struct.unpack_from(value, buf, at + entry - (8 if big else 4))[0]
    except struct.error:  # cut short: Pillow says so
        return Structure("TIFF")
    return Structure("TIFF", (dims[256], dims[257]) if len(dims) == 2 else None)
