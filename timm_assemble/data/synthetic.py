"""A small procedurally generated image-classification dataset, written as an ImageFolder of PNGs.

Why: tests, demos and the embedded fine-tuning default need labelled images with a real visual
signal, without a download. Each class is a (shape, colour) pair drawn at a random position, scale
and rotation on a noisy, randomly tinted background with distractor strokes, so a network has to
learn something but a small one learns it in a few hundred steps. Everything is seeded: the same
arguments always give byte-identical files.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import TimmAssembleError
from ..fileio import atomic_new_dir

__all__ = ["SHAPES", "COLOURS", "class_names", "make_synthetic_image_folder"]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring", "star", "stripes", "diamond")
COLOURS: dict[str, float] = {  # name -> hue in [0, 1)
    "red": 0.0,
    "orange": 0.08,
    "yellow": 0.16,
    "green": 0.33,
    "cyan": 0.5,
    "blue": 0.62,
    "purple": 0.76,
    "pink": 0.9,
}
_MARKER = ".synthetic.json"
_FORMAT_VERSION = 1


def _class_specs(num_classes: int) -> list[tuple[str, str]]:
    """(shape, colour) per class; consecutive classes differ in both shape and colour."""
    n_shape, colour_names = len(SHAPES), list(COLOURS)
    n_colour = len(colour_names)
    if not 2 <= num_classes <= n_shape * n_colour:
        raise TimmAssembleError(
            f"synthetic dataset: num_classes must be between 2 and {n_shape * n_colour}, got {num_classes}"
        )
    specs = []
    for i in range(num_classes):
        shape, j = i % n_shape, i // n_shape
        specs.append((SHAPES[shape], colour_names[(shape + j) % n_colour]))
    return specs


def class_names(num_classes: int) -> list[str]:
    """Folder (= label) names like `00_red_circle`; the prefix keeps ImageFolder order = class index."""
    return [f"{i:02d}_{colour}_{shape}" for i, (shape, colour) in enumerate(_class_specs(num_classes))]


def _rgb(hue: float, sat: float, val: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, min(max(sat, 0.0), 1.0), min(max(val, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _polygon(cx: float, cy: float, radius: float, angle: float, n: int, inner: float | None = None):
    """Regular polygon (or star when `inner` is the inner radius ratio) as a list of points."""
    pts = []
    steps = 2 * n if inner is not None else n
    for k in range(steps):
        r = radius * (inner if inner is not None and k % 2 else 1.0)
        a = angle + 2 * math.pi * k / steps
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, angle: float, fill):
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "ring":
        width = max(2, int(r * 0.35))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=width)
    elif shape == "square":
        draw.polygon(_polygon(cx, cy, r * 1.1, angle + math.pi / 4, 4), fill=fill)
    elif shape == "diamond":
        # a tall rhombus: distinct from a rotated square by its aspect ratio
        ca, sa = math.cos(angle * 0.25), math.sin(angle * 0.25)
        pts = [(0, -r * 1.2), (r * 0.6, 0), (0, r * 1.2), (-r * 0.6, 0)]
        draw.polygon([(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts], fill=fill)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, r * 1.15, angle, 3), fill=fill)
    elif shape == "star":
        draw.polygon(_polygon(cx, cy, r * 1.2, angle, 5, inner=0.45), fill=fill)
    elif shape == "cross":
        w = r * 0.32
        ca, sa = math.cos(angle), math.sin(angle)
        for dx, dy in ((1.0, w / r), (w / r, 1.0)):
            pts = [(-dx * r, -dy * r), (dx * r, -dy * r), (dx * r, dy * r), (-dx * r, dy * r)]
            draw.polygon([(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts], fill=fill)
    elif shape == "stripes":
        # three parallel bars: a texture-like class
        w = r * 0.22
        ca, sa = math.cos(angle), math.sin(angle)
        for off in (-0.6, 0.0, 0.6):
            pts = [(-r, off * r - w), (r, off * r - w), (r, off * r + w), (-r, off * r + w)]
            draw.polygon([(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts], fill=fill)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(shape)


def _render(shape: str, hue: float, image_size: int, rng: np.random.Generator) -> Image.Image:
    """One image: tinted noisy background, two distractor strokes, the class shape on top."""
    s = image_size
    bg_hue = rng.random()
    bg = np.array(_rgb(bg_hue, rng.uniform(0.0, 0.25), rng.uniform(0.35, 0.85)), dtype=np.float32)
    # smooth gradient + pixel noise
    ramp = np.linspace(-1.0, 1.0, s, dtype=np.float32)
    gx, gy = np.meshgrid(ramp, ramp)
    theta = rng.uniform(0, 2 * math.pi)
    grad = (gx * math.cos(theta) + gy * math.sin(theta))[..., None] * rng.uniform(0, 40)
    arr = bg[None, None, :] + grad + rng.normal(0, 12, size=(s, s, 3)).astype(np.float32)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(2):
        p = rng.uniform(0, s, size=4)
        grey = int(rng.uniform(30, 225))
        draw.line([(p[0], p[1]), (p[2], p[3])], fill=(grey, grey, grey), width=max(1, s // 32))
    r = rng.uniform(0.18, 0.32) * s
    cx, cy = rng.uniform(r, s - r), rng.uniform(r, s - r)
    fill = _rgb(hue + rng.uniform(-0.03, 0.03), rng.uniform(0.65, 1.0), rng.uniform(0.7, 1.0))
    _draw_shape(draw, shape, cx, cy, r, rng.uniform(0, 2 * math.pi), fill)
    # light noise over the whole image so the shape edges are not perfectly clean
    out = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, size=(s, s, 3))
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


def make_synthetic_image_folder(
    root: str | os.PathLike,
    num_classes: int = 8,
    images_per_class: int | Mapping[str, int] = 40,
    image_size: int = 64,
    seed: int = 0,
    splits: Sequence[str] = ("train", "val"),
) -> Path:
    """Write a deterministic synthetic ImageFolder under `root` and return `root`.

    Layout: `root/<split>/<class>/<index>.png` for each split, or `root/<class>/<index>.png`
    when `splits` is empty (a single folder, e.g. for a `--val-fraction` test).
    `images_per_class` is one count for every split or a `{split: count}` mapping.
    If `root` already holds a dataset made with the same arguments it is reused as is; if it
    exists with anything else in it, that is an error (nothing is overwritten). The folder is
    written to a temporary sibling and renamed into place, so an interrupted run leaves no
    half-written dataset.
    """
    root = Path(root)
    if image_size < 16:
        raise TimmAssembleError(f"synthetic dataset: image_size must be at least 16, got {image_size}")
    specs = _class_specs(num_classes)
    splits = tuple(splits)
    counts = {
        split: int(images_per_class[split] if isinstance(images_per_class, Mapping) else images_per_class)
        for split in (splits or ("",))
    }
    if any(c < 1 for c in counts.values()):
        raise TimmAssembleError(f"synthetic dataset: images_per_class must be >= 1, got {images_per_class}")
    params = dict(
        version=_FORMAT_VERSION,
        num_classes=num_classes,
        images_per_class=counts,
        image_size=image_size,
        seed=seed,
        splits=list(splits),
    )
    marker = root / _MARKER
    if root.exists():
        if marker.is_file() and json.loads(marker.read_text()) == params:
            return root
        if any(root.iterdir()):
            raise TimmAssembleError(
                f"synthetic dataset: {root} exists and is not an identical synthetic dataset; "
                "choose an empty or new folder"
            )
        root.rmdir()
    names = class_names(num_classes)
    try:
        with atomic_new_dir(root) as tmp:
            for split_idx, split in enumerate(splits or ("",)):
                for cls_idx, ((shape, colour), name) in enumerate(zip(specs, names, strict=True)):
                    cls_dir = tmp / split / name if split else tmp / name
                    cls_dir.mkdir(parents=True)
                    for i in range(counts[split]):
                        rng = np.random.default_rng([seed, split_idx, cls_idx, i])
                        _render(shape, COLOURS[colour], image_size, rng).save(cls_dir / f"{i:05d}.png")
            (tmp / _MARKER).write_text(json.dumps(params, indent=1))
    except FileExistsError:
        # another process finished the same dataset first: use it if it is the same one
        if not (marker.is_file() and json.loads(marker.read_text()) == params):
            raise
    return root
