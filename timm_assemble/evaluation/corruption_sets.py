"""Corruption sets: each benchmark's resolution and per-severity constants, as the script that made it has them.

hendrycks/robustness generates every benchmark with a copy of the same 19 functions (`ImageNet-C/create_c/`), each
copy with its own constants and the image side written into it: `make_imagenet_c.py` (ImageNet-C, 224 px),
`make_cifar_c.py` (CIFAR-10-C and CIFAR-100-C, 32 px), `make_tinyimagenet_c.py` (Tiny-ImageNet-C, 64 px; its
functions are character for character those of `make_imagenet_64_c.py`, which made ImageNet 64x64-C) and
`make_imagenet_c_inception.py` (ImageNet-C at 299 px). `corruptions.py` has one implementation of each function;
a `CorruptionSet` is what differs between the copies. The tuples are the scripts' own `c = [...]` lists, in their
order and arithmetic (`244 * 0.7`, `32 * 0.08`), so that each can be checked against its script by eye. The scripts
also store their output differently: the ImageNet-sized ones save each corrupted image as a JPEG of quality 85
(`.save(save_path, quality=85, optimize=True)`), `make_cifar_c.py` stacks the uint8 arrays into `.npy` files,
losslessly; `jpeg_quality` says which, and on-the-fly corruption makes the same round trip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import TimmAssembleError

__all__ = ["CorruptionSet", "CORRUPTION_SETS", "resolve_corruption_set", "set_for_resolution"]


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per set
class CorruptionSet:
    """One benchmark's corruptions: its image side, its generator, its constants per corruption and severity."""

    name: str
    resolution: int  # the side of the square images its script corrupts
    resize: int  # its images' shorter side before the centre crop to `resolution` (its data loader's geometry)
    script: str  # hendrycks/robustness ImageNet-C/create_c/<script>
    benchmarks: str  # the published data sets made with it
    params: Mapping[str, tuple[Any, ...]]  # corruption -> its 5 severities' constants
    fractal_side: int  # fog's plasma fractal (`plasma_fractal(mapsize=...)`), grown to cover larger images
    frost_scale: float | None  # the frost photographs' `cv2.resize` factor before cropping (None: as they are)
    jpeg_quality: int  # how its script stored each corrupted image: PIL JPEG at this quality, 0 = losslessly (.npy)
    auto: bool = True  # chosen by default for images of about its resolution (see `set_for_resolution`)

    @property
    def geometry(self) -> str:
        """What is corrupted, in words."""
        crop = f"centre crop {self.resolution}" if self.resize != self.resolution else "square centre crop"
        return f"shorter side {self.resize} (bilinear), {crop}, corrupted at {self.resolution} px"


_IMAGENET_C = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),  # sigma, max_delta, iterations
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),  # disk radius, alias_blur
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),  # radius, sigma
    "zoom_blur": ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)),  # np.arange(1, stop, step)
    "fog": ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),  # strength, wibble decay
    "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),  # image weight, frost weight
    # flake loc, scale, zoom, threshold, blur radius, blur sigma, blend
    "snow": (
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ),
    # liquid loc, scale, sigma, threshold, intensity, mud
    "spatter": (
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),  # gain, offset
    "jpeg_compression": (25, 18, 15, 10, 7),  # quality
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    # alpha, sigma, affine jitter ("244 should have been 224, but ultimately nothing is incorrect")
    "elastic_transform": (
        (244 * 2, 244 * 0.7, 244 * 0.1),
        (244 * 2, 244 * 0.08, 244 * 0.2),
        (244 * 0.05, 244 * 0.01, 244 * 0.02),
        (244 * 0.07, 244 * 0.01, 244 * 0.02),
        (244 * 0.12, 244 * 0.01, 244 * 0.02),
    ),
}

_CIFAR_C = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "zoom_blur": ((1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)),
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    "spatter": (
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    "jpeg_compression": (80, 65, 58, 50, 40),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "elastic_transform": (
        (32 * 0, 32 * 0, 32 * 0.08),
        (32 * 0.05, 32 * 0.2, 32 * 0.07),
        (32 * 0.08, 32 * 0.06, 32 * 0.06),
        (32 * 0.1, 32 * 0.04, 32 * 0.05),
        (32 * 0.1, 32 * 0.03, 32 * 0.03),
    ),
}

_TINY_IMAGENET_C = {
    "gaussian_noise": (0.04, 0.08, 0.12, 0.15, 0.18),
    "shot_noise": (250, 100, 50, 30, 15),
    "impulse_noise": (0.01, 0.02, 0.05, 0.08, 0.14),
    "speckle_noise": (0.15, 0.2, 0.25, 0.3, 0.35),
    "gaussian_blur": (0.5, 0.75, 1, 1.25, 1.5),
    "glass_blur": ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
    "defocus_blur": ((0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)),
    "motion_blur": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
    "zoom_blur": ((1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)),
    "fog": ((0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)),
    "frost": ((1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)),
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.8),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.8),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6),
    ),
    "spatter": (
        (0.62, 0.1, 0.7, 0.7, 0.6, 0),
        (0.65, 0.1, 0.8, 0.7, 0.6, 0),
        (0.65, 0.3, 1, 0.69, 0.6, 0),
        (0.65, 0.1, 0.7, 0.68, 0.6, 1),
        (0.65, 0.1, 0.5, 0.67, 0.6, 1),
    ),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)),
    "jpeg_compression": (65, 58, 50, 40, 25),
    "pixelate": (0.9, 0.8, 0.7, 0.6, 0.5),
    "elastic_transform": (
        (64 * 0, 64 * 0, 64 * 0.08),
        (64 * 0.05, 64 * 0.3, 64 * 0.06),
        (64 * 0.1, 64 * 0.08, 64 * 0.06),
        (64 * 0.1, 64 * 0.03, 64 * 0.03),
        (64 * 0.16, 64 * 0.03, 64 * 0.02),
    ),
}

_IMAGENET_C_INCEPTION = {
    **_IMAGENET_C,
    "gaussian_noise": (0.09, 0.13, 0.19, 0.27, 0.40),
    "shot_noise": (50, 20, 10, 5, 3),
    "impulse_noise": (0.04, 0.07, 0.10, 0.18, 0.28),
    "speckle_noise": (0.16, 0.21, 0.36, 0.46, 0.61),
    "gaussian_blur": (1.5, 2.5, 3.5, 4.5, 6.5),
    "glass_blur": ((0.8, 1, 3), (1, 3, 1), (1.1, 2, 4), (1.2, 4, 2), (1.6, 5, 2)),
    "defocus_blur": ((4, 0.1), (5, 0.5), (7, 0.5), (10, 0.5), (12, 0.5)),
    "motion_blur": ((12, 4), (17, 6), (17, 9), (17, 13), (22, 16)),
    "fog": ((1.5, 2), (2, 2), (2.5, 1.8), (2.5, 1.6), (3, 1.5)),
    "spatter": (
        (0.65, 0.3, 4, 0.69, 0.9, 0),
        (0.65, 0.3, 3.5, 0.68, 0.9, 0),
        (0.65, 0.3, 3, 0.68, 0.8, 0),
        (0.65, 0.3, 1.2, 0.65, 1.8, 1),
        (0.67, 0.4, 1.2, 0.65, 1.8, 1),
    ),
    "jpeg_compression": (23, 16, 13, 8, 5),
    "pixelate": (0.5, 0.4, 0.3, 0.25, 0.2),
    "elastic_transform": (
        (360 * 2, 360 * 0.7, 360 * 0.1),
        (360 * 2, 360 * 0.08, 360 * 0.2),
        (360 * 0.05, 360 * 0.01, 360 * 0.02),
        (360 * 0.07, 360 * 0.01, 360 * 0.02),
        (360 * 0.12, 360 * 0.01, 360 * 0.02),
    ),
}

_SETS = (
    CorruptionSet("imagenet-c", 224, 256, "make_imagenet_c.py", "ImageNet-C", _IMAGENET_C, 256, None, 85),
    CorruptionSet("cifar-c", 32, 32, "make_cifar_c.py", "CIFAR-10-C, CIFAR-100-C", _CIFAR_C, 32, 0.2, 0),
    CorruptionSet("tiny-imagenet-c", 64, 64, "make_tinyimagenet_c.py", "Tiny-ImageNet-C, ImageNet 64x64-C",
                  _TINY_IMAGENET_C, 64, 0.3, 85),
    # Inception-size input, chosen by name or for images of exactly 299 px. Its loader crops the centre 87.5% and
    # resizes that to 299; shorter side 342 (= 299 / 0.875), centre 299 is the same region to within a pixel.
    CorruptionSet("imagenet-c-inception", 299, 342, "make_imagenet_c_inception.py", "ImageNet-C at 299 px",
                  _IMAGENET_C_INCEPTION, 512, None, 85, auto=False),
)  # fmt: skip
CORRUPTION_SETS: dict[str, CorruptionSet] = {s.name: s for s in _SETS}


def resolve_corruption_set(name: str | CorruptionSet) -> CorruptionSet:
    """The set called `name` (a `CorruptionSet` is returned as it is)."""
    if isinstance(name, CorruptionSet):
        return name
    if name not in CORRUPTION_SETS:
        raise TimmAssembleError(f"unknown corruption set {name!r}; choose from {', '.join(CORRUPTION_SETS)}")
    return CORRUPTION_SETS[name]


def set_for_resolution(side: int) -> CorruptionSet:
    """The set for images whose shorter side is `side` px: the set of exactly that resolution if there is one,
    otherwise the nearest on a log scale among the default sets (cifar-c, tiny-imagenet-c, imagenet-c), so
    ImageNet-sized photographs (~400 px) get imagenet-c and 40 px thumbnails cifar-c."""
    exact = [s for s in CORRUPTION_SETS.values() if s.resolution == side]
    if exact:
        return exact[0]
    candidates = [s for s in CORRUPTION_SETS.values() if s.auto]
    return min(candidates, key=lambda s: abs(math.log(side / s.resolution)))
