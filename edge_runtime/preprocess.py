"""Any image -> the model's pixels: one (28, 28) uint8 Fashion-MNIST-style array (a light object
on a dark background) by default, or (H, W) gray / (H, W, 3) RGB for a model of its own data.

Two modes:
- ``raw``: the image is already in the model's form (for Fashion-MNIST, a light object on
  dark); it is made 8-bit gray or RGB, and an image of another size is fitted into the model's
  keeping its aspect ratio (averaged down, or interpolated up), padded centred with its own
  border's colour. Own-data models take only this mode: it is also how their training images
  were converted (fmnist_edge.dataset.decode).
- ``photo`` (Fashion-MNIST only): a product photo on a light background, converted the way
  Zalando made the dataset
  (Xiao et al. 2017, section 2): trim edges close to the corner colour, resize the longest edge
  to 28, sharpen with a Gaussian of radius and sigma 1.0, pad the short edge to 28 (centred),
  negate, 8-bit grayscale.
- ``auto``: ``raw`` for a grayscale image that is 28x28 or has a dark border (a 56x56 test
  image, say: darker than mid-gray, transparency counting as light), ``photo`` for the rest.

Files and bytes are opened by decode.py, within a budget (DecodeLimits) and already reduced;
here, EXIF orientation is applied, alpha composited onto the background (white for photos, black
for raw images), palette / 16-bit / CMYK converted. Every failure is an ImageError naming the
file.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

# The image errors, re-exported: fmnist-serve and older callers import them here.
from fmnist_edge.common.errors import CorruptImageError as CorruptImageError
from fmnist_edge.common.errors import ImageBombError as ImageBombError
from fmnist_edge.common.errors import ImageError, ImageMemoryError
from fmnist_edge.common.errors import NotAnImageError as NotAnImageError

from .budget import DecodeLimits
from .checks import MODES as MODES  # re-exported: fmnist-serve and older callers import it here
from .checks import check_mode
from .decode import DECODE_SIDE, SIDE, Decoded, decode_bytes, decode_path, reduce_by, transpose_for
from .decode import open_image as open_image  # re-exported: callers import both from here
from .decode import open_image_bytes as open_image_bytes

TRIM_FUZZ = 0.05  # trim pixels within 5% of the maximum RGB distance of the corner colour
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
# ImageMagick's "-sharpen 1x1" (a 3x3 Gaussian, sigma 1) reduces to x + 0.83 * (x - blur(x)).
_G = np.exp(-(np.array([1.0, 0.0, 1.0]) ** 2) / 2.0)
_BLUR = np.outer(_G, _G) / np.outer(_G, _G).sum()
_SHARPEN_AMOUNT = np.outer(_G, _G).sum() / (np.outer(_G, _G).sum() + 1.0)

# a path, encoded image bytes (PNG, JPEG, ...: an upload), a PIL image or an array of pixels
ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray


# --- opening (decode.py decodes) ------------------------------------------------------


def _oriented(img: Image.Image) -> Image.Image:
    method = transpose_for(img)  # EXIF Orientation
    return img.transpose(method) if method is not None else img


def pixel_values(arr: np.ndarray, name: str = "array") -> np.ndarray:
    """Pixels as uint8 (the array itself when it is uint8): integers 0-255 of any integer
    dtype are accepted, anything else is an ImageError naming ``name``. The one check behind
    both Classifier.predict (an image) and Classifier.predict_proba (a batch)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        raise ImageError(
            f"{name}: float pixels are ambiguous ({arr.dtype}); pass uint8 values 0-255"
        )
    if arr.dtype.kind not in "uib":
        raise ImageError(f"{name}: unsupported dtype {arr.dtype}; pass uint8 values 0-255")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ImageError(f"{name}: pixel values outside 0-255; pass uint8")
    return arr.astype(np.uint8)


def _from_array(arr: np.ndarray) -> Image.Image:
    """(H, W[, 1 | 3 | 4]) uint8 pixels -> a PIL image."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4)):
        return Image.fromarray(np.ascontiguousarray(arr))
    raise ImageError(f"array: shape {arr.shape} is not (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")


# --- canonical pixels ----------------------------------------------------------------------


def is_grayscale(img: Image.Image) -> bool:
    """One channel of information: a gray mode, a gray palette, or RGB with R == G == B."""
    if img.mode in _GRAY_MODES:
        return True
    if img.mode in ("P", "PA"):
        palette = np.array(img.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
        return bool((palette == palette[:, :1]).all())
    if img.mode in ("RGB", "RGBA"):
        rgb = np.asarray(img)[..., :3]
        return bool((rgb == rgb[..., :1]).all())
    return False


def _flatten(img: Image.Image, background: int) -> np.ndarray:
    """Any mode -> (H, W) or (H, W, 3) uint8, alpha composited onto ``background``."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit samples: scale to 8 bits (Pillow's own convert("L") would clip at 255)
        wide = np.asarray(img).astype(np.float32)
        return np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
    if mode == "F":
        return np.clip(np.rint(np.asarray(img)), 0, 255).astype(np.uint8)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("PA", "RGBa"):
        img = img.convert("RGBA")
    elif mode == "La":
        img = img.convert("LA")
    elif mode == "1":
        img = img.convert("L")
    elif mode not in ("L", "LA", "RGB", "RGBA"):  # CMYK, YCbCr, LAB, HSV
        img = img.convert("RGB")
    arr = np.asarray(img)
    if img.mode in ("LA", "RGBA"):
        alpha = arr[..., -1:].astype(np.float32) / 255.0
        color = arr[..., :-1].astype(np.float32)
        arr = np.rint(color * alpha + background * (1.0 - alpha)).astype(np.uint8)
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    return arr


def _gray(arr: np.ndarray) -> np.ndarray:
    """(H, W[, 3]) uint8 -> (H, W) float32 luma (ITU-R 601, as Pillow's convert("L"))."""
    if arr.ndim == 2:
        return arr.astype(np.float32)
    return arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _is_model_shaped(pixels: np.ndarray, size: tuple[int, int], color: str) -> bool:
    """Already the model's pixels: (H, W) or (H, W, 1) for gray, (H, W, 3) for RGB."""
    if color == "rgb":
        return pixels.shape == (*size, 3)
    return pixels.shape in (size, (*size, 1))


# --- the two modes ---------------------------------------------------------------------------


def raw(
    img: Image.Image,
    name: str = "image",
    size: tuple[int, int] = (SIDE, SIDE),
    color: str = "grayscale",
) -> np.ndarray:
    """An image already in the model's form (for Fashion-MNIST: light on dark) -> (H, W) uint8
    gray, or (H, W, 3) for ``color`` "rgb"; transparent = a dark background. Another size is
    fitted in: the long edge resized to fit (a box average when shrinking, so a 2x upscale
    comes back exactly), the short one padded with the border's median, centred. ``size`` is
    (height, width)."""
    height, width = size
    arr = _flatten(img if img.size == (width, height) else _shrink(img, max(size)), background=0)
    if color == "rgb":
        pixels = arr if arr.ndim == 3 else np.repeat(arr[..., None], 3, axis=2)
    else:
        pixels = arr if arr.ndim == 2 else np.rint(_gray(arr)).astype(np.uint8)
    if pixels.shape[:2] == (height, width):
        return pixels
    h, w = pixels.shape[:2]
    scale = min(width / w, height / h)
    fit = (min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale))))
    shrink = fit[0] < w or fit[1] < h
    resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    small = np.asarray(Image.fromarray(pixels).resize(fit, resample))
    border = np.median(_border(pixels), axis=0)
    canvas = np.empty((height, width, *pixels.shape[2:]), dtype=np.uint8)
    canvas[...] = np.rint(border).astype(np.uint8)
    top, left = (height - fit[1]) // 2, (width - fit[0]) // 2
    canvas[top : top + fit[1], left : left + fit[0]] = small
    return canvas


def _border(pixels: np.ndarray) -> np.ndarray:
    """The outermost rows and columns of an (H, W[, C]) array, as one run of pixels."""
    return np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])


def has_dark_border(img: Image.Image) -> bool:
    """Whether the image's edge is mostly darker than mid-gray: Fashion-MNIST's polarity (a
    light object on black), not a product photo's. Transparency counts as light here, as
    photo mode composites it onto white."""
    gray = _gray(_flatten(_shrink(img), background=255))
    return bool(np.median(_border(gray)) < 128)


def _trim(arr: np.ndarray) -> np.ndarray:
    """Crop the border whose colour is within TRIM_FUZZ of the top-left corner's."""
    pixels = arr.astype(np.float32).reshape(arr.shape[0], arr.shape[1], -1)
    dist = np.sqrt(((pixels - pixels[0, 0]) ** 2).sum(axis=-1))
    keep = dist > TRIM_FUZZ * 255.0 * np.sqrt(pixels.shape[-1])
    rows, cols = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
    if rows.size == 0:  # a blank image: nothing to trim to
        return arr
    return arr[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _sharpen(x: np.ndarray) -> np.ndarray:
    padded = np.pad(x, 1, mode="edge")
    h, w = x.shape
    blur = sum(_BLUR[i, j] * padded[i : i + h, j : j + w] for i in range(3) for j in range(3))
    return x + _SHARPEN_AMOUNT * (x - blur)


def _shrink(img: Image.Image, side: int = SIDE) -> Image.Image:
    """A large image box-reduced to about 224-447 px on its long side (at least 8x ``side``,
    the output's) before any float work (an 8000x6000 PNG would otherwise need gigabytes on a
    Pi). Files and bytes arrive here already reduced by decode.py: this is for PIL images and
    arrays given directly; averaging first is also what the final resize does anyway."""
    factor = max(img.size) // max(DECODE_SIDE, 8 * side)
    if factor < 2:
        return img
    return reduce_by(img, factor)


def photo(img: Image.Image) -> np.ndarray:
    """A product photo on a light background -> (28, 28) uint8, the paper's six steps."""
    arr = _flatten(_shrink(img), background=255)
    background = float(_gray(arr[:1, :1])[0, 0])
    arr = _trim(arr)  # 1. trim
    h, w = arr.shape[:2]
    size = (SIDE, max(1, round(h * SIDE / w))) if w >= h else (max(1, round(w * SIDE / h)), SIDE)
    # 2. resize the longest edge to 28. The paper subsampled 51x73 thumbnails; for a large
    # photo plain subsampling is aliasing noise, so shrink by averaging (box filter) instead.
    gray = Image.fromarray(_gray(arr), mode="F")
    small = np.asarray(gray.resize(size, Image.Resampling.BOX), dtype=np.float32)
    small = _sharpen(small)  # 3. sharpen
    canvas = np.full((SIDE, SIDE), background, dtype=np.float32)  # 4. pad, centred
    top, left = (SIDE - size[1]) // 2, (SIDE - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = small
    return np.clip(np.rint(255.0 - canvas), 0, 255).astype(np.uint8)  # 5. negate, 6. 8-bit


def _stored(
    decoded: Decoded, size: tuple[int, int], color: str, out: np.ndarray | None = None
) -> np.ndarray | None:
    """A plain PNG already in the model's size and colour, as its pixels: what ``raw`` gives
    it (and ``auto``, which takes a gray image of the model's size as raw), without the
    conversions (its pixels are stored upright, without alpha): ``out`` itself when they were
    decoded into it. None for anything else."""
    img = decoded.image
    if not decoded.plain or img.size != size[::-1]:
        return None
    if img.mode != ("RGB" if color == "rgb" else "L"):
        return None
    if decoded.filled:
        return out
    shape = (*size, 3) if color == "rgb" else size
    return np.frombuffer(img.tobytes(), dtype=np.uint8).reshape(shape)


def to_array(
    source: ImageSource,
    mode: str = "auto",
    size: tuple[int, int] = (SIDE, SIDE),
    color: str = "grayscale",
    *,
    limits: DecodeLimits | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """A path, encoded image bytes, PIL image or numpy array -> the model's pixels: (H, W)
    uint8 for "grayscale", (H, W, 3) for "rgb"; ``size`` is the model's (height, width).
    ``photo`` and ``auto`` are Fashion-MNIST's conversions (28x28 gray, a light object on a
    dark background); for any other model the caller passes ``raw``. A path or bytes are
    decoded within ``limits`` (None: the defaults).

    With ``out`` (a uint8 array of that shape: a slot of a batch), the pixels are written
    there and ``out`` is returned; a plain gray PNG is decoded straight into it. After an
    error ``out`` may hold anything."""
    pixels = _to_array(source, mode, size, color, limits, out)
    if out is None or pixels is out:
        return pixels
    out[...] = pixels
    return out


def _to_array(
    source: ImageSource,
    mode: str,
    size: tuple[int, int],
    color: str,
    limits: DecodeLimits | None,
    out: np.ndarray | None,
) -> np.ndarray:
    check_mode(mode)
    if mode != "raw" and (size != (SIDE, SIDE) or color != "grayscale"):
        raise ValueError(f"mode {mode!r} makes 28x28 gray images only")
    if isinstance(source, np.ndarray):
        pixels = pixel_values(source)
        if mode != "photo" and _is_model_shaped(pixels, size, color):
            return pixels.reshape(*size, *((3,) if color == "rgb" else ()))  # the fast path
        img, name = _from_array(pixels), "array"
    elif isinstance(source, Image.Image):
        img, name = source, "image"
    else:
        into = out if mode != "photo" else None  # a photo's pixels are not the file's
        if isinstance(source, (bytes, bytearray, memoryview)):  # a PNG or JPEG in memory
            name = "image bytes"
            decoded = decode_bytes(bytes(source), name, limits=limits, side=max(size), into=into)
        else:
            name = str(source)
            decoded = decode_path(source, limits=limits, side=max(size), into=into)
        pixels = _stored(decoded, size, color, out) if mode != "photo" else None
        if pixels is not None:
            return pixels
        img = decoded.image
    try:
        img = _oriented(img)
        if mode == "auto":  # Fashion-MNIST-like: gray, and 28x28 or light on a dark border
            like = is_grayscale(img) and (img.size == (SIDE, SIDE) or has_dark_border(img))
            mode = "raw" if like else "photo"
        return raw(img, name, size, color) if mode == "raw" else photo(img)
    except ImageError:
        raise
    except MemoryError:
        raise ImageMemoryError(f"{name}: out of memory while converting the image") from None
    except Exception as exc:  # a decoder that fails late, on a lazily loaded PIL image
        raise ImageError(f"{name}: cannot convert image ({type(exc).__name__}: {exc})") from None
