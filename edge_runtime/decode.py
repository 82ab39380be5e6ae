"""Opening an image: a path or encoded bytes -> its first frame as a PIL image, decoded within a
budget and already reduced. The one way the runtime decodes: fmnist-infer, fmnist-serve and
``preprocess.to_array`` all come here.

For every file, in order:
1. ``budget.walk`` reads its structure (PNG chunks, JPEG markers, GIF blocks, TIFF strips) and
   refuses bombs before Pillow parses any of it;
2. Pillow opens it, header only, trying just the formats the caller takes;
3. the pixels it decodes to are counted from that header (``count``) and refused over
   ``DecodeLimits.max_pixels``; a JPEG larger than needed is set to decode at 1/2 to 1/8 scale
   (DCT scaling, in every mode);
4. frame 0 is decoded, then box-reduced band by band to at least 8x the model's side before
   anything else copies it (EXIF orientation is applied to the reduced image).
Every failure is an ImageError subclass naming the file; running out of memory included.
"""

from __future__ import annotations

import io
import math
import mmap
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from fmnist_edge.common.errors import (
    CorruptImageError,
    ImageBombError,
    ImageError,
    ImageMemoryError,
    NotAnImageError,
    TooManyPixelsError,
)

from .budget import DecodeLimits, Structure, walk
from .formats import identify, unreadable

SIDE = 28  # Fashion-MNIST's; a model's own side is passed as ``side``
DECODE_SIDE = 8 * SIDE  # images are decoded and reduced to no less than this on the long side
_BAND_PIXELS = 1 << 20  # pixels of the decoded image one reduction band covers
_PROGRESSIVE_SCANS = 10  # scans of a usual progressive JPEG (libjpeg's default script)
_WEBP_COPIES = 4  # full-size RGBA buffers Pillow's WebP decoder holds at once (measured)
_READ_WHOLE = 1 << 20  # files up to this size are read into memory whole, not mapped
# Opening without blocking: a FIFO or a device is then refused by its fstat, where a plain open
# would wait for a writer. Where there is no such flag (Windows), a stat comes first.
_NONBLOCK = getattr(os, "O_NONBLOCK", None)
_DEFAULT_LIMITS = DecodeLimits()
_RLE_COST = 16  # Pillow decodes RLE-compressed BMPs in Python, pixel by pixel
_PILLOW_GUARD = re.compile(r"\((\d+) pixels\)")
Buffer = Any  # a writable buffer of pixels (a numpy array) an image may be decoded into
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class Decoded:
    """An opened image and the pixels it counted against the budget."""

    image: Image.Image
    pixels: int
    plain: bool = False  # a plain PNG (Structure.plain): its pixels as stored, upright
    filled: bool = False  # its pixels were decoded straight into the caller's ``into``


def _jpeg_samples(img: Image.Image, width: int, height: int) -> int:
    """Colour samples of a JPEG (each component at its own subsampling): what a progressive
    decoder keeps as 2-byte coefficients until its last scan."""
    layers = getattr(img, "layer", None) or [(0, 1, 1, 0)]
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    return sum(round(width * height * layer[1] * layer[2] / (h_max * v_max)) for layer in layers)


def count(img: Image.Image, structure: Structure, side: int) -> tuple[int, str]:
    """Set ``img`` (opened, not decoded) to decode a JPEG at reduced scale when it is larger
    than needed, and say how many pixels decoding it costs: its size, at the reduced scale
    for a JPEG; a progressive JPEG's coefficients (one pixel per two colour samples) once per
    10 of its scans; a TIFF's strip buffer on top (4 bytes a pixel); a 16-bit colour PNG per 4
    bytes of pixel; a WebP 4 times, an RLE BMP 16 times. Returns (pixels, what it is)."""
    width, height = img.size
    what = f"{width}x{height} {img.format or 'image'}"
    if img.format == "JPEG":
        target = max(DECODE_SIDE, 8 * side)
        if max(width, height) > 2 * target:
            img.draft(None, (target, target))
        pixels = img.size[0] * img.size[1]
        if img.info.get("progressive"):
            coefficients = max(pixels, _jpeg_samples(img, width, height) // 2)
            passes = max(1.0, structure.scans / _PROGRESSIVE_SCANS)
            return math.ceil(coefficients * passes), (
                f"{width}x{height} progressive JPEG of {structure.scans} scans"
            )
        if img.size != (width, height):
            what += f" (decoded at {img.size[0]}x{img.size[1]})"
        return pixels, what
    if img.format == "TIFF":  # libtiff decodes a strip (or tile) at a time into a buffer
        tags = getattr(img, "tag_v2", {})
        bits = tags.get(258, (8,))
        bits = sum(bits) if isinstance(bits, tuple) else bits * tags.get(277, 1)
        tile = (tags.get(322), tags.get(323))
        area = tile[0] * tile[1] if all(tile) else width * min(tags.get(278, height), height)
        buffer = math.ceil(area * bits / 32)  # in 4-byte pixels, as the image's own
        if buffer > width * height // 8:
            what += f" (read through a {bits * area // 8:,}-byte strip)"
        return width * height + buffer, what
    if img.format == "PNG" and structure.bits > 32:  # 16-bit colour: twice the data to inflate
        return math.ceil(
            width * height * structure.bits / 32
        ), f"{what} of {structure.bits}-bit pixels"
    if img.format == "WEBP":
        return width * height * _WEBP_COPIES, f"{what} (its decoder holds {_WEBP_COPIES} copies)"
    if img.format == "BMP" and img.tile and img.tile[0][0] == "bmp_rle":
        return width * height * _RLE_COST, f"{width}x{height} RLE BMP (decoded in Python)"
    return width * height, what


def reduce_by(img: Image.Image, factor: int) -> Image.Image:
    """``img`` box-reduced by an integer ``factor``, averaging what can be averaged: palettes
    and bits are expanded first, colours weighted by their alpha."""
    if img.mode in ("1", "P", "PA"):  # indices and bits cannot be averaged: expand first
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    elif img.mode.startswith("I;16"):
        img = img.convert("I")
    premultiplied = {"RGBA": "RGBa", "LA": "La"}.get(img.mode)
    if premultiplied:  # average colours weighted by alpha, not transparent pixels' colour
        return img.convert(premultiplied).reduce(factor).convert(img.mode)
    return img.reduce(factor)


def transpose_for(img: Image.Image) -> Image.Transpose | None:
    """The transpose that EXIF orientation asks for (None: upright, or no readable EXIF)."""
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a malformed EXIF block must not make a readable image fail
        return None
    return _ORIENTATION.get(orientation)


def _reduced(img: Image.Image, side: int) -> Image.Image:
    """A decoded image box-reduced to at least 8x ``side`` on its long side, one band of rows
    at a time (converting a whole 12-megapixel RGBA image to premultiplied alpha, as
    ``reduce`` does, would be another 48 MB), then turned upright."""
    factor = max(img.size) // max(DECODE_SIDE, 8 * side)
    if factor < 2:
        return img
    method = transpose_for(img)  # read now: the reduced image is a new one, without EXIF
    width, height = img.size
    rows = factor * max(1, _BAND_PIXELS // (width * factor))
    bands = [
        reduce_by(img.crop((0, top, width, min(top + rows, height))), factor)
        for top in range(0, height, rows)
    ]
    out = Image.new(bands[0].mode, (bands[0].width, sum(band.height for band in bands)))
    top = 0
    for band in bands:
        out.paste(band, (0, top))
        top += band.height
    return out.transpose(method) if method is not None else out


def _plain_png(
    buf: bytes | mmap.mmap,
    structure: Structure,
    limits: DecodeLimits,
    formats: tuple[str, ...] | None,
    side: int,
    into: Buffer | None = None,
) -> Decoded | None:
    """A small plain PNG (``Structure.plain``: 8-bit gray or RGB, its pixels its IDAT data
    alone) decoded by Pillow's own PNG decoder straight from that data: the pixels Image.open
    gives, without the chunk parsing in Python that costs a 28x28 image more than its decoding.
    A gray one of ``into``'s shape is decoded into ``into`` itself (``Decoded.filled``).
    None for anything else, and for anything wrong: the full path then decodes it, or says
    what is wrong, in its own words."""
    if not structure.plain or structure.size is None or "PNG" not in (formats or ("PNG",)):
        return None
    width, height = structure.size
    if not 0 < width * height <= limits.max_pixels:
        return None
    if max(width, height) >= 2 * max(DECODE_SIDE, 8 * side):  # _reduced would reduce it
        return None
    mode = "L" if structure.bits == 8 else "RGB"
    try:
        data = b"".join(buf[start:end] for start, end in structure.plain)
        if mode == "L" and into is not None and _fits(into, width, height):
            return _decoded_into(into, data, width, height)
        image = Image.frombytes(mode, (width, height), data, "zip", mode)
        return Decoded(image, width * height, plain=True)
    except (ValueError, OSError):  # cut short or corrupt: Pillow's open says how
        return None


def _fits(into: Buffer, width: int, height: int) -> bool:
    """Whether ``into`` takes an 8-bit gray image of this size as it is: a writable, C-ordered
    buffer of bytes shaped (height, width)."""
    view = memoryview(into)
    return (
        view.format == "B"
        and view.shape == (height, width)
        and view.c_contiguous
        and not view.readonly
    )


def _decoded_into(into: Buffer, data: bytes, width: int, height: int) -> Decoded:
    """An 8-bit gray PNG's image data decoded by Pillow into ``into``: an image that maps
    ``into``'s memory (Image.frombuffer), loaded by its own ``frombytes``. A folder's batch is
    then filled in place, with no image of its own to copy out of (to_array on a 28x28 PNG,
    2-core EPYC: 56-62 us against 62-71). Should Pillow copy the image before writing to it,
    it would no longer be read-only and its pixels not in ``into``: not ``filled``.
    ``into`` is zeroed first: a zlib stream that ends short of the last rows is no error to
    Pillow, which leaves those rows as they were (zeros in an image of its own)."""
    memoryview(into).cast("B")[:] = bytes(width * height)
    image = Image.frombuffer("L", (width, height), into, "raw", "L", 0, 1)
    image.frombytes(data, "zip", "L")
    return Decoded(image, width * height, plain=True, filled=bool(image.readonly))


def _decode(
    fp: Path | BinaryIO,
    buf: bytes | mmap.mmap,
    name: str,
    limits: DecodeLimits,
    formats: tuple[str, ...] | None,
    side: int,
    into: Buffer | None = None,
) -> Decoded:
    """Walk ``buf`` (the bytes of ``fp``), open, count, decode and reduce ``fp``."""
    structure = walk(buf, name, limits)
    plain = _plain_png(buf, structure, limits, formats, side, into)
    if plain is not None:
        return plain
    fmt, what = None, "the image"  # what is known of it, for the messages
    try:
        # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; both are refusals.
        # The filter is restored on exit: no global state is left changed.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp, formats=formats)
            fmt = img.format
            pixels, what = count(img, structure, side)
            if pixels > limits.max_pixels:
                raise TooManyPixelsError(name, what, pixels, limits.max_pixels)
            img.load()  # frame 0 only: an animation's later frames are never decoded
            return Decoded(_reduced(img, side), pixels)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = _PILLOW_GUARD.search(str(exc))  # "Image size (N pixels) exceeds limit ..."
        if found is None:
            raise ImageBombError(f"{name}: possible decompression bomb ({exc})") from None
        if structure.size is not None:
            what = f"{structure.size[0]}x{structure.size[1]} {structure.format}"
        raise TooManyPixelsError(name, what, int(found.group(1)), limits.max_pixels) from None
    except Image.UnidentifiedImageError:
        raise unreadable(name, bytes(buf[:256]), formats) from None
    except MemoryError:
        raise ImageMemoryError(f"{name}: out of memory while decoding {what}") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except Exception as exc:  # decoders raise OSError, SyntaxError, struct.error...
        if isinstance(exc, ValueError) and ("too large" in str(exc) or "Too much" in str(exc)):
            # Pillow's own limits on PNG text (ours are lower: not reached)
            raise ImageBombError(f"{name}: a decompression bomb in its metadata ({exc})") from None
        fmt = fmt or identify(bytes(buf[:256]))
        kind = f"{fmt} image" if fmt else "image"
        raise CorruptImageError(f"{name}: corrupt or truncated {kind} ({exc})") from None


def open_image(
    path: str | os.PathLike,
    *,
    limits: DecodeLimits | None = None,
    formats: tuple[str, ...] | None = None,
    side: int = SIDE,
) -> Image.Image:
    """Open ``path`` and decode its first frame within ``limits`` (the defaults when None),
    reduced for a model of ``side`` pixels. ImageError (a subclass saying why) otherwise."""
    return decode_path(path, limits=limits, formats=formats, side=side).image


def _open_regular(name: str) -> tuple[int, int]:
    """A descriptor of the regular file ``name`` and its size; ImageError for anything else,
    without reading it (a FIFO or a device would be read without end)."""
    if _NONBLOCK is None:
        _check_kind(name, os.stat(name).st_mode)
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    else:
        fd = os.open(name, os.O_RDONLY | _NONBLOCK)
    try:
        info = os.fstat(fd)
        _check_kind(name, info.st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def _check_kind(name: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise ImageError(f"{name}: is a directory")
    if not stat.S_ISREG(mode):
        raise ImageError(f"{name}: not a regular file")


def decode_path(
    path: str | os.PathLike,
    *,
    limits: DecodeLimits | None = None,
    formats: tuple[str, ...] | None = None,
    side: int = SIDE,
    into: Buffer | None = None,
) -> Decoded:
    """``open_image``, with the pixels the image counted and whether it was plain. A small
    file (a folder's PNGs) is read whole in one call and decoded from memory; a large one is
    walked in place and read by Pillow as it decodes. A plain 8-bit gray PNG of ``into``'s
    shape (height, width) is decoded into ``into`` (``Decoded.filled``); anything else is
    decoded as without it, and ``into`` may then hold anything."""
    name = os.fspath(path)
    limits = limits or _DEFAULT_LIMITS
    try:
        fd, size = _open_regular(name)
        if size == 0:
            os.close(fd)
            raise NotAnImageError(f"{name}: empty file (0 bytes)")
        if size <= _READ_WHOLE:
            try:
                data = os.read(fd, size + 1)  # + 1: a file that grew is read to its end
                while len(data) > size and (more := os.read(fd, _READ_WHOLE)):
                    data += more
            finally:
                os.close(fd)
            return _decode(io.BytesIO(data), data, name, limits, formats, side, into)
        with open(fd, "rb") as fh, mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as buf:
            return _decode(fh, buf, name, limits, formats, side, into)
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read it ({exc.strerror or exc})") from None


def open_image_bytes(
    data: bytes,
    name: str,
    *,
    limits: DecodeLimits | None = None,
    formats: tuple[str, ...] | None = None,
    side: int = SIDE,
) -> Image.Image:
    """``open_image`` for bytes in memory (an upload): nothing is written to disk. ``formats``
    limits the decoders Pillow may try (a server should not hand strangers' bytes to all)."""
    return decode_bytes(data, name, limits=limits, formats=formats, side=side).image


def decode_bytes(
    data: bytes,
    name: str,
    *,
    limits: DecodeLimits | None = None,
    formats: tuple[str, ...] | None = None,
    side: int = SIDE,
    into: Buffer | None = None,
) -> Decoded:
    """``open_image_bytes``, with the pixels the image counted (fmnist-serve adds them up over
    a request's images); ``into`` as for ``decode_path``."""
    limits = limits or _DEFAULT_LIMITS
    return _decode(io.BytesIO(data), data, name, limits, formats, side, into)
