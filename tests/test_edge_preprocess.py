"""Image preprocessing: raw / photo / auto modes, every image kind, and every bad file."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fmnist_edge.common.errors import ImageError, UsageError
from fmnist_edge.edge_runtime.preprocess import is_grayscale, open_image, photo, raw, to_array


def _png(width: int, height: int, bit_depth: int = 8, color_type: int = 0, idat: bytes = b""):
    """A hand-made PNG: the header says whatever we like, whatever the data holds."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def product_photo(image: np.ndarray, scale: int = 8, pad=(40, 17, 25, 60)) -> Image.Image:
    """A Fashion-MNIST image as a product photo: upscaled, negated (dark object on white),
    padded with an uneven white margin (top, left, bottom, right)."""
    big = Image.fromarray(255 - image).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    top, left, bottom, right = pad
    canvas = Image.new("RGB", (big.width + left + right, big.height + top + bottom), "white")
    canvas.paste(big.convert("RGB"), (left, top))
    return canvas


# --- raw and auto -------------------------------------------------------------------------------


def test_raw_passthrough_and_auto(fmnist_test, tmp_path):
    img = fmnist_test.images[3]
    np.testing.assert_array_equal(to_array(img), img)
    np.testing.assert_array_equal(to_array(img[..., None], "raw"), img)
    Image.fromarray(img).save(tmp_path / "a.png")
    np.testing.assert_array_equal(to_array(tmp_path / "a.png"), img)  # auto -> raw
    np.testing.assert_array_equal(to_array(tmp_path / "a.png", "raw"), img)
    # an RGB file with R == G == B is still grayscale: auto keeps it raw
    Image.fromarray(img).convert("RGB").save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(to_array(tmp_path / "rgb.png"), img)
    # forcing photo mode on a raw image inverts it (light background expected)
    assert to_array(img, "photo").mean() > 128 > img.mean()


def test_auto_chooses_photo_for_colour_or_other_sizes(fmnist_test):
    img = fmnist_test.images[3]
    colour = np.stack([img, img // 2, img], axis=-1)
    assert not is_grayscale(Image.fromarray(colour))
    np.testing.assert_array_equal(to_array(colour), photo(Image.fromarray(colour)))
    big = np.full((56, 40), 255, np.uint8)
    np.testing.assert_array_equal(to_array(big), photo(Image.fromarray(big)))


def test_other_sizes_of_a_dark_background_image_are_resized_like_raw(fmnist_test, tmp_path):
    """Issue 15, item 14: a Fashion-MNIST-like image (light on dark) at another size is fitted
    into 28x28 by averaging, in auto and raw mode alike; a photo on light stays a photo."""
    img = fmnist_test.images[0]
    Image.fromarray(img).resize((56, 56), Image.Resampling.NEAREST).save(tmp_path / "big.png")
    for mode in ("auto", "raw"):
        np.testing.assert_array_equal(to_array(tmp_path / "big.png", mode), img)  # exact
    wide = np.zeros((30, 60), np.uint8)  # 2:1, light block in the middle -> 28x14, centred
    wide[10:20, 25:35] = 200
    out = to_array(wide)
    assert out.shape == (28, 28) and out[:7].max() == 0 and out[-7:].max() == 0
    assert out[12:16, 12:16].min() > 190
    light = np.full((56, 56), 240, np.uint8)  # a light background: photo, as before
    light[20:36, 20:36] = 30
    np.testing.assert_array_equal(to_array(light), photo(Image.fromarray(light)))


def test_arrays_must_be_pixels():
    with pytest.raises(ImageError, match="float pixels are ambiguous"):
        to_array(np.zeros((28, 28), np.float32))
    with pytest.raises(ImageError, match="outside 0-255"):
        to_array(np.full((28, 28), 300, np.int64))
    with pytest.raises(ImageError, match="shape"):
        to_array(np.zeros((28, 28, 2), np.uint8))
    np.testing.assert_array_equal(to_array(np.full((28, 28), 7, np.int64)), 7)
    with pytest.raises(UsageError, match="mode must be one of auto, raw, photo"):
        to_array(np.zeros((28, 28), np.uint8), "sketch")


# --- photo mode ---------------------------------------------------------------------------------


def test_photo_mode_recovers_the_image(fmnist_test):
    """The paper's conversion undoes a product photo made from a test image (pixel level)."""
    diffs = []
    for img in fmnist_test.images[:20]:
        out = photo(product_photo(img))
        assert out.shape == (28, 28) and out.dtype == np.uint8
        diffs.append(np.abs(out.astype(int) - img).mean())
    assert np.median(diffs) < 25, diffs  # of 255; sharpening and resampling differ slightly


def test_photo_mode_agrees_with_raw_mode(fmnist_test, tiny_tflite, tmp_path):
    """Synthetic product photos, saved as JPEG, are classified like the originals."""
    from fmnist_edge.edge_runtime.classifier import Classifier

    clf = Classifier(tiny_tflite["int8"])
    images = fmnist_test.images[:60]
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"{i}.jpg")
        product_photo(img, scale=6).save(paths[-1], quality=90)
    photo_preds = [p.index for p in clf.predict_batch(paths)]  # auto -> photo for these
    raw_preds = [p.index for p in clf.predict_batch(list(images))]
    agreement = np.mean(np.array(photo_preds) == np.array(raw_preds))
    assert agreement >= 0.8, agreement


def test_large_photos_are_reduced_first(fmnist_test):
    """A 1,000-pixel photo (reduced before any float work) matches a small one."""
    img = fmnist_test.images[11]
    small = photo(product_photo(img, scale=4, pad=(10, 5, 10, 20)))
    large = photo(product_photo(img, scale=36, pad=(90, 45, 90, 180)))
    assert np.abs(small.astype(int) - large).mean() < 12
    rgba = np.zeros((1200, 900, 4), np.uint8)  # transparent, with an opaque dark block
    rgba[300:900, 200:700] = (0, 0, 0, 255)
    out = photo(Image.fromarray(rgba))  # 600x500 block -> 28x23, padded 2 + 3 columns
    assert out[:, 4:22].min() > 200 and out[:, [0, -1]].max() < 30


def test_trim_uses_the_corner_colour_and_pads_centred():
    # a dark 20x10 bar on a light gray background, far from the centre
    canvas = np.full((100, 200, 3), 230, np.uint8)
    canvas[10:30, 150:160] = 20
    out = photo(Image.fromarray(canvas))
    # bar: 20 tall -> 28, 10 wide -> 14, centred: columns 7..20 light, borders dark
    assert out[:, 9:19].min() > 180
    assert out[:, :5].max() < 60 and out[:, -5:].max() < 60  # 255 - 230 = 25 background


def test_blank_image_does_not_crash():
    out = photo(Image.new("RGB", (50, 30), "white"))
    assert out.shape == (28, 28) and out.max() == 0


# --- image kinds --------------------------------------------------------------------------------


def test_exif_orientation(tmp_path):
    upright = np.full((60, 30, 3), 255, np.uint8)
    upright[5:20, 5:25] = 0  # something near the top
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # as a camera saves
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    stored.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    Image.fromarray(upright).save(tmp_path / "upright.jpg", quality=95)
    got, want = to_array(tmp_path / "rot.jpg"), to_array(tmp_path / "upright.jpg")
    assert np.abs(got.astype(int) - want).mean() < 8


def test_alpha_is_composited_on_the_background(fmnist_test, tmp_path):
    img = fmnist_test.images[5]
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere, but only the object is opaque
    rgba[..., 3] = img
    Image.fromarray(rgba).save(tmp_path / "raw.png")
    # raw mode: transparent -> the dark background, so the object keeps its intensity
    np.testing.assert_array_equal(to_array(tmp_path / "raw.png", "raw"), img)
    # photo mode: a dark object on transparency lands on white, like a product shot
    shot = np.zeros((80, 50, 4), np.uint8)
    shot[20:60, 10:40] = (10, 10, 10, 255)
    Image.fromarray(shot).save(tmp_path / "shot.png")
    flat = np.full((80, 50, 3), 255, np.uint8)
    flat[20:60, 10:40] = 10
    np.testing.assert_array_equal(to_array(tmp_path / "shot.png"), photo(Image.fromarray(flat)))


def test_palette_16bit_cmyk_and_animation(fmnist_test, tmp_path):
    img = fmnist_test.images[7]
    # palette (grayscale palette: still raw in auto mode)
    Image.fromarray(img).convert("P").save(tmp_path / "p.png")
    np.testing.assert_array_equal(to_array(tmp_path / "p.png"), img)
    # 16-bit grayscale: scaled down, not clipped at 255
    Image.fromarray(img.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    np.testing.assert_array_equal(to_array(tmp_path / "g16.png"), img)
    # CMYK (TIFF: lossless) gives the RGB result
    shot = np.array(product_photo(img, scale=3))
    Image.fromarray(shot).convert("CMYK").save(tmp_path / "c.tif")
    np.testing.assert_array_equal(to_array(tmp_path / "c.tif"), to_array(shot))
    # animated GIF: the first frame only
    first, second = Image.fromarray(img), Image.fromarray(255 - img)
    first.save(tmp_path / "anim.gif", save_all=True, append_images=[second], duration=100)
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    np.testing.assert_array_equal(to_array(tmp_path / "anim.gif"), img)


# --- bad files ----------------------------------------------------------------------------------


def bad_files(tmp_path, fmnist_test) -> dict[str, tuple[str, object]]:
    """name -> (words the one-line error must contain, path)."""
    good = tmp_path / "good.png"
    Image.fromarray(np.tile(fmnist_test.images[0], (8, 8))).save(good)  # big enough to cut
    data = good.read_bytes()
    files = {
        "empty.png": b"",
        "truncated.png": data[: len(data) // 2],
        "header-only.png": data[:40],
        "text.png": b"just some text, not an image\n",
        "bomb.png": _png(40000, 40000, idat=zlib.compress(b"\0" * 100)),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "folder.png").mkdir()
    return {
        "empty.png": ("empty file (0 bytes)", tmp_path / "empty.png"),
        "truncated.png": ("truncated", tmp_path / "truncated.png"),
        "header-only.png": ("truncated PNG", tmp_path / "header-only.png"),
        "text.png": ("not an image", tmp_path / "text.png"),
        "bomb.png": ("40000x40000 PNG is 1,600,000,000 pixels to decode", tmp_path / "bomb.png"),
        "missing.png": ("file not found", tmp_path / "missing.png"),
        "folder.png": ("is a directory", tmp_path / "folder.png"),
    }


def test_bad_files_raise_one_line_image_errors(tmp_path, fmnist_test):
    for name, (words, path) in bad_files(tmp_path, fmnist_test).items():
        for mode in ("auto", "raw", "photo"):
            with pytest.raises(ImageError) as info:
                to_array(path, mode)
            message = str(info.value)
            assert message.startswith(f"{path}: ") and words in message, (name, message)
            assert "\n" not in message


def test_bomb_check_leaves_pillow_settings_alone(tmp_path, fmnist_test):
    import warnings

    before_limit, before_filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    _, path = bad_files(tmp_path, fmnist_test)["bomb.png"]
    with pytest.raises(ImageError):
        open_image(path)
    assert Image.MAX_IMAGE_PIXELS == before_limit and warnings.filters == before_filters
    # between Pillow's warning and error thresholds: still refused (a warning is not enough)
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    (tmp_path / "warn.png").write_bytes(_png(side, side))
    with pytest.raises(ImageError, match=f"{side}x{side} PNG is .* pixels to decode"):
        open_image(tmp_path / "warn.png")


def test_raw_function_on_small_inputs():
    assert raw(Image.new("L", (28, 28), 9)).max() == 9
    assert raw(Image.new("1", (28, 28), 1)).max() == 255
