"""Input images: formats, EXIF orientation, modes, bombs, corrupt files and non-images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from studio.core.jobs import UserFacingError
from studio.media import images_in


def _gradient(w: int = 40, h: int = 24) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float64)
    y = np.linspace(0, 255, h, dtype=np.float64)
    rgb = np.stack([np.tile(x, (h, 1)), np.tile(y[:, None], (1, w)), np.full((h, w), 90.0)], -1)
    return Image.fromarray(rgb.astype(np.uint8))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp", ".tif"])
def test_formats_open_as_rgb(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    _gradient().save(path)
    loaded = images_in.open_image(path)
    assert loaded.image.mode == "RGB" and loaded.size == (40, 24) and loaded.alpha is None


def test_exif_orientation_is_applied(tmp_path):
    image = _gradient(40, 24)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    loaded = images_in.open_image(path)
    assert loaded.size == (24, 40)
    # The left column of the stored image (dark red) is the top row once upright.
    top = np.asarray(loaded.image)[0, :, 0].astype(int)
    assert top.max() < 40


def test_rgba_keeps_alpha_aside_and_puts_it_back(tmp_path):
    image = _gradient().convert("RGBA")
    alpha = Image.linear_gradient("L").resize(image.size)
    image.putalpha(alpha)
    path = tmp_path / "cut.png"
    image.save(path)
    loaded = images_in.open_image(path)
    assert loaded.image.mode == "RGB" and loaded.alpha is not None
    assert "transparency" in loaded.warnings[0]
    back = loaded.with_alpha(Image.new("RGB", (20, 12)))
    assert back.mode == "RGBA" and back.size == (20, 12)
    opaque = _gradient().convert("RGBA")
    opaque.save(tmp_path / "opaque.png")
    assert images_in.open_image(tmp_path / "opaque.png").alpha is None  # nothing to keep


def test_grayscale_palette_and_cmyk(tmp_path):
    _gradient().convert("L").save(tmp_path / "g.png")
    _gradient().convert("P").save(tmp_path / "p.png")
    Image.new("CMYK", (10, 10), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    gray = images_in.open_image(tmp_path / "g.png").image
    assert gray.mode == "RGB"
    assert np.array_equal(np.asarray(gray)[..., 0], np.asarray(gray)[..., 2])
    assert images_in.open_image(tmp_path / "p.png").image.mode == "RGB"
    red = np.asarray(images_in.open_image(tmp_path / "c.jpg").image).mean(axis=(0, 1))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60  # C0 M100 Y100 K0 is red


def test_16_bit_is_scaled_not_clipped(tmp_path):
    arr = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    Image.fromarray(arr).save(tmp_path / "deep.png")  # a 16-bit grayscale PNG
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")
    out = np.asarray(images_in.open_image(tmp_path / "deep.png").image)[..., 0]
    assert out.min() == 0 and out.max() == 255 and len(np.unique(out)) > 50
    Image.fromarray(arr).save(tmp_path / "deep.tif")
    assert np.asarray(images_in.open_image(tmp_path / "deep.tif").image).max() == 255


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    _gradient(200, 100).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with pytest.raises(UserFacingError, match="decompression bombs|too large"):
        images_in.open_image(tmp_path / "big.png")


def test_corrupt_and_foreign_files_are_refused(tmp_path):
    buf = io.BytesIO()
    _gradient(200, 200).save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "notes.png").write_text("hello")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(UserFacingError, match="damaged or incomplete"):
        images_in.open_image(tmp_path / "cut.png")
    for name in ("notes.png", "empty.jpg"):
        with pytest.raises(UserFacingError, match="not an image"):
            images_in.open_image(tmp_path / name)
    with pytest.raises(UserFacingError, match="does not exist"):
        images_in.open_image(tmp_path / "missing.png")
    with pytest.raises(UserFacingError, match="folder"):
        images_in.open_image(tmp_path)


def test_masks_and_folders_and_max_side(tmp_path):
    mask = Image.new("LA", (10, 10), (0, 0))
    mask.paste((255, 255), (0, 0, 5, 10))
    mask.save(tmp_path / "m.png")
    m = images_in.open_mask(tmp_path / "m.png", (20, 20))
    assert m.size == (20, 20) and m.getpixel((2, 2)) == 255 and m.getpixel((15, 2)) == 0
    _gradient().save(tmp_path / "b.jpg")
    (tmp_path / "x.txt").write_text("no")
    assert [p.name for p in images_in.list_images(tmp_path)] == ["b.jpg", "m.png"]
    assert images_in.fit_max_side(_gradient(400, 200), 100).size == (100, 50)
    assert images_in.fit_max_side(_gradient(40, 20), 100).size == (40, 20)
