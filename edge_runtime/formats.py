"""What format a file is, from its first bytes, and what to say when Pillow opens nothing:
an empty file, a taken format cut short, an image in a format not taken here, or not an
image. Pillow's names for the formats, so that messages and ``formats`` lists agree."""

from __future__ import annotations

import re

from PIL import Image

from fmnist_edge.common.errors import (
    CorruptImageError,
    ImageError,
    NotAnImageError,
    UnsupportedFormatError,
)

# Image formats by their first bytes, as Pillow names them: those a caller may take, and others
# that are images all the same (refused as a format we do not take, not as "not an image").
_SIGNATURES = (
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
    (b"\xffO\xffQ", "JPEG2000"),
    (b"\xff\n", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"8BPS", "PSD"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"icns", "ICNS"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"gimp xcf", "XCF"),
    (b"#?RADIANCE", "HDR"),
    (b"v/1\x01", "EXR"),
    (b"\x01\xda", "SGI"),
)
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}


def identify(head: bytes) -> str | None:
    """The image format the first bytes of a file announce (Pillow's name for it), or None."""
    for signature, fmt in _SIGNATURES:
        if head.startswith(signature):
            return fmt
    if head[:3] == b"\x00\x00\x01" and head[3:6] != b"\x00\x00\x00":  # and its image count
        return "ICO"
    if head[:3] == b"\x00\x00\x02" and head[3:6] != b"\x00\x00\x00":  # else a TGA, maybe
        return "CUR"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "AVIF" if brand in (b"avif", b"avis") else "HEIF" if brand in _HEIF_BRANDS else None
    if re.match(rb"P[1-7][ \t\r\n#]", head):
        return "PPM"
    if len(head) >= 4 and head[0] == 0x0A and head[1] in (0, 2, 3, 4, 5) and head[2] == 1:
        return "PCX"
    if len(head) >= 18 and head[1] in (0, 1) and head[2] in (1, 2, 3, 9, 10, 11):
        if head[16] in (1, 8, 15, 16, 24, 32):  # TGA has no signature: its header must fit
            return "TGA"
    if b"<svg" in head[:256]:
        return "SVG"
    return None


def unreadable(name: str, head: bytes, formats: tuple[str, ...] | None) -> ImageError:
    """Pillow opened nothing: an empty file, a taken format cut short, an image in a format
    not taken, or not an image."""
    taken = formats or tuple(Image.ID)  # Image.ID: every format this Pillow can open
    listed = ", ".join(formats) if formats else "formats Pillow reads"
    if not head:
        return NotAnImageError(f"{name}: empty file (0 bytes)")
    fmt = identify(head)
    if fmt is None:
        return NotAnImageError(f"{name}: not an image (unrecognised format; taken: {listed})")
    if fmt in taken:
        return CorruptImageError(f"{name}: corrupt or truncated {fmt} image")
    return UnsupportedFormatError(f"{name}: {fmt} image, not a format taken here ({listed})")
