"""The one image reader of the package: any file Pillow opens becomes the 8-bit RGB (or L) image models expect.

Training, `predict`, `validate` and `robustness` all read through `open_image`, so one file gives the same
pixels everywhere. Pillow's own `convert("RGB")` is wrong for several common files, which is why this exists:

- 16-bit grayscale (`I;16`, `I;16B`, `I;16L`, and `I`, which Pillow uses for 16-bit PNGs) is clipped to
  white by `convert`; here it is scaled: 65535 -> 255 (an 8-bit image stored as 16-bit reads back exactly).
- transparency (`RGBA`, `LA`, `PA`, palette images with a transparent colour) is composited on white,
  as an image viewer shows it, instead of dropping the alpha channel and exposing whatever colour the
  transparent pixels happen to hold.
- the EXIF orientation tag is applied, so a phone photo is upright.

`1`, `L`, `P`, `CMYK` (Pillow's conversion, without colour management), `YCbCr`, `LAB`, `HSV` and `F`
(Pillow's conversion: values taken as 0-255) are converted by Pillow.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps
from timm.data.readers.img_extensions import get_img_extensions

from ..errors import TimmAssembleError

# what Pillow raises for truncated, corrupt or unsupported files
READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)

_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}


def open_image(source: str | os.PathLike | BinaryIO, mode: str = "RGB") -> Image.Image:
    """Decode `source` fully into an 8-bit image of `mode` ("RGB" or "L"); raises one of READ_ERRORS."""
    with Image.open(source) as img:
        img.load()
        return to_mode(img, mode)


def to_mode(img: Image.Image, mode: str = "RGB") -> Image.Image:
    """`img` upright, 8 bits per channel, alpha composited on white, in `mode`."""
    img = _upright(img)
    if img.mode in _SIXTEEN_BIT:
        wide = np.asarray(img).astype(np.int64).clip(0, 65535)
        img = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _ALPHA:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img if img.mode == mode else img.convert(mode)


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block leaves the image as stored."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about malformed EXIF it can still read
            return ImageOps.exif_transpose(img)
    except Exception:  # the pixels are fine, only the orientation tag is unreadable
        return img


def image_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; a folder stands for the image files in it and its subfolders (sorted)."""
    extensions = set(get_img_extensions())
    files: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        if not found:
            raise TimmAssembleError(f"folder {path} holds no image files ({', '.join(sorted(extensions))})")
        files.extend(found)
    return files
