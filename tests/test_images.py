"""The one image reader: every Pillow mode becomes the 8-bit RGB a numpy computation says it should be."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import timm_assemble  # noqa: F401
from timm_assemble.data.images import image_files, open_image
from timm_assemble.errors import TimmAssembleError
from timm_assemble.predict import predict

RNG = np.random.default_rng(0)
GRAY8 = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
RGB8 = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (6, 5), dtype=np.uint8)


def _on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None].astype(np.float64) / 255
    return rgb * a + 255 * (1 - a)


def _gray3(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


def _sixteen(fmt: str) -> tuple[Image.Image, np.ndarray]:
    """An 8-bit image stored with 16 bits (x * 257): must read back as exactly x."""
    wide = GRAY8.astype(np.uint16) * 257
    if fmt == "I":
        return Image.fromarray(wide.astype(np.int32), "I"), _gray3(GRAY8)
    img = Image.new(fmt, (5, 6))
    img.frombytes(wide.astype(">u2" if fmt == "I;16B" else "<u2").tobytes())
    return img, _gray3(GRAY8)


def _palette(transparent: bool) -> tuple[Image.Image, np.ndarray]:
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    index = GRAY8
    img = Image.fromarray(index, "P")
    img.putpalette(palette.reshape(-1).tolist())
    expected = palette[index].astype(np.float64)
    if transparent:
        img.info["transparency"] = int(index[0, 0])  # one palette entry is fully transparent
        expected[index == index[0, 0]] = 255
    return img, expected


def _cmyk() -> tuple[Image.Image, np.ndarray]:
    cmyk = RNG.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    c, k = cmyk[..., :3].astype(np.float64), cmyk[..., 3:].astype(np.float64)
    return Image.fromarray(cmyk, "CMYK"), (255 - c) * (255 - k) / 255  # uncalibrated, as Pillow converts


CASES = {
    "RGB": lambda: (Image.fromarray(RGB8, "RGB"), RGB8),
    "L": lambda: (Image.fromarray(GRAY8, "L"), _gray3(GRAY8)),
    "1": lambda: (Image.fromarray(GRAY8 > 127).convert("1"), _gray3(np.where(GRAY8 > 127, 255, 0))),
    "I;16": lambda: _sixteen("I;16"),
    "I;16B": lambda: _sixteen("I;16B"),
    "I": lambda: _sixteen("I"),
    "P": lambda: _palette(False),
    "P+transparency": lambda: _palette(True),
    "CMYK": _cmyk,
    "LA": lambda: (Image.fromarray(np.stack([GRAY8, ALPHA], -1), "LA"), _on_white(_gray3(GRAY8), ALPHA)),
    "RGBA": lambda: (Image.fromarray(np.dstack([RGB8, ALPHA]), "RGBA"), _on_white(RGB8, ALPHA)),
}


@pytest.mark.parametrize("mode", CASES)
def test_every_mode_reads_as_numpy_says(mode, tmp_path):
    img, expected = CASES[mode]()
    path = tmp_path / ("x.tiff" if mode in ("I;16B", "I", "CMYK") else "x.png")  # PNG has no such modes
    img.save(path)
    with Image.open(path) as stored:
        assert stored.mode.startswith(mode.split("+")[0][:1]), stored.mode  # the file really is of that mode
    got = np.asarray(open_image(path), dtype=np.float64)
    assert got.shape == (6, 5, 3)
    np.testing.assert_allclose(got, expected, atol=1)  # rounding only


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    img, expected = _sixteen("I;16")
    img.save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as stored:
        assert np.asarray(stored.convert("RGB")).min() == 255  # what plain Pillow gives: all white
    np.testing.assert_array_equal(np.asarray(open_image(tmp_path / "g16.png")), expected)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(RGB8, "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display rotated 90 degrees clockwise
    img.save(tmp_path / "o.png", exif=exif)
    got = np.asarray(open_image(tmp_path / "o.png"))
    np.testing.assert_array_equal(got, np.rot90(RGB8, k=-1))


def test_grayscale_mode_for_one_channel_models(tmp_path):
    Image.fromarray(np.dstack([RGB8, ALPHA]), "RGBA").save(tmp_path / "a.png")
    got = open_image(tmp_path / "a.png", mode="L")
    assert got.mode == "L" and got.size == (5, 6)


@pytest.mark.slow
def test_sixteen_bit_prediction_equals_eight_bit(tmp_path):
    gray = np.kron(RNG.integers(0, 256, (8, 8), dtype=np.uint8), np.ones((4, 4), dtype=np.uint8))  # 32 x 32
    Image.fromarray(gray, "L").save(tmp_path / "g8.png")
    wide = Image.new("I;16", (32, 32))
    wide.frombytes((gray.astype(np.uint16) * 257).astype("<u2").tobytes())
    wide.save(tmp_path / "g16.png")
    torch.manual_seed(0)
    model = timm.create_model(
        "assemble_resnet50", width=8, num_classes=3, pretrained_cfg_overlay=dict(input_size=(3, 32, 32), crop_pct=1.0)
    ).eval()
    eight, sixteen = predict(model, [tmp_path / "g8.png", tmp_path / "g16.png"], top_k=3)
    assert eight["predictions"] == sixteen["predictions"]


def test_a_folder_stands_for_its_images(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.jpg"):
        Image.fromarray(RGB8).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    assert image_files([tmp_path]) == [tmp_path / "b.png", tmp_path / "sub" / "a.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(TimmAssembleError, match="holds no image files"):
        image_files([tmp_path / "empty"])
