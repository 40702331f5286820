"""The ImageNet-C corruptions (Hendrycks & Dietterich, ICLR 2019), reimplemented with numpy, scipy and PIL.

Why our own: the usual package (`imagecorruptions` 1.1.2) no longer imports on numpy 2 /
scikit-image 0.26, and its maintained forks pull in OpenCV and numba. Each function here follows the
function of the same name in hendrycks/robustness' generators (`ImageNet-C/create_c/make_*_c.py`, the code that
made the released files), and reproduces it with the constants of a corruption set (`corruption_sets`: imagenet-c,
cifar-c, tiny-imagenet-c, imagenet-c-inception; the scripts differ in those only). `tests/test_corruption_reference.py`
pins every corruption, severity and set against its script run unmodified (numpy 1.26, scikit-image 0.20, OpenCV
4.11, ImageMagick 6.9): bit-identical except motion_blur and snow, within one grey level (ImageMagick's quantum
arithmetic), and cifar-c's defocus_blur (OpenCV's DFT rounding, see the test).

* Randomness comes from a `numpy.random.Generator` passed in, drawn in the reference's order with the
  reference's distributions, so every image is reproducible from (seed, corruption, severity, image)
  whatever the worker layout. The released ImageNet-C files used the legacy global `np.random` stream,
  so individual images differ from them while following the same distributions.
* The reference's library calls are reproduced, not approximated: scikit-image's `gaussian` ->
  `scipy.ndimage.gaussian_filter` (what it calls); OpenCV's `filter2D` (defocus_blur) -> an FFT
  correlation with BORDER_REFLECT_101, as OpenCV does for large kernels; `warpAffine` (elastic_transform)
  -> its fixed-point coordinates and float32 bilinear table; `Canny`, the 5x5 `distanceTransform`,
  `blur`, `equalizeHist` (spatter) -> their integer / fixed-point arithmetic; ImageMagick's
  `MotionBlurImage` (motion_blur, snow) -> its one-sided Gaussian line kernel as shift-and-add with
  edge pixels repeated, truncated to 8 bits; scipy's order-1 `zoom` (zoom_blur, snow) -> the same
  coordinates and weights, computed only for the pixels kept; the reference's pixel swap in glass_blur
  is a copy on numpy views (`x[h, w], x[h', w'] = x[h', w'], x[h, w]` copies one pixel onto the other),
  and so is ours.
* Any image size >= 32 px works with any set (each script hard-codes its own side). Pixel-sized constants (blur
  radii, elastic displacements) are kept as the set defines them, as in the official Assemble-ResNet 256 px
  evaluation set; the fog fractal and frost overlay grow to cover images larger than the set's.

Each corruption takes an RGB uint8 HxWx3 array and returns float values in [0, 255] (uint8 where the
reference's own result is an 8-bit image); `corrupt` casts to uint8 by truncation, as ImageNet-C's generator
does before saving.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import TimmAssembleError
from .corruption_sets import CorruptionSet, resolve_corruption_set

__all__ = [
    "COMMON_CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "ALL_CORRUPTIONS",
    "CORRUPTION_GROUPS",
    "RANDOM_CORRUPTIONS",
    "corrupt",
    "parse_corruptions",
    "parse_severities",
]

COMMON_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
# ImageNet-C's four held-out "validation" corruptions.
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = COMMON_CORRUPTIONS + EXTRA_CORRUPTIONS
CORRUPTION_GROUPS: dict[str, tuple[str, ...]] = {
    "common": COMMON_CORRUPTIONS,
    "extra": EXTRA_CORRUPTIONS,
    "all": ALL_CORRUPTIONS,
    "noise": COMMON_CORRUPTIONS[0:3],
    "blur": COMMON_CORRUPTIONS[3:7],
    "weather": COMMON_CORRUPTIONS[7:11],
    "digital": COMMON_CORRUPTIONS[11:15],
}
# The corruptions that draw random numbers. The others are handed `_NO_DRAWS` instead of a generator made from the
# seed: making one costs about 25 us, a few percent of pixelate or jpeg_compression. A test holds them to it.
RANDOM_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost", "fog",
    "elastic_transform", "speckle_noise", "spatter",
)  # fmt: skip
_NO_DRAWS = np.random.default_rng(0)
_FROST_DIR = Path(__file__).resolve().parent / "frost"
# defocus_blur's transforms below this many pixels a plane go to numpy's FFT: torch's is faster only on large ones
_TORCH_FFT_AREA = 200 * 200
_FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")


def _ndi():
    """scipy.ndimage, imported lazily: scipy is only needed for corruption robustness."""
    try:
        import scipy.ndimage as ndi
    except ImportError as err:
        raise TimmAssembleError("image corruptions need scipy: pip install 'timm-assemble[robustness]'") from err
    return ndi


def parse_corruptions(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    """Corruption names from a comma-separated list of names and/or group names, in order, deduplicated."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        group = CORRUPTION_GROUPS.get(item, (item,))
        for name in group:
            if name not in ALL_CORRUPTIONS:
                raise TimmAssembleError(
                    f"unknown corruption {name!r}; choose from {', '.join(ALL_CORRUPTIONS)} "
                    f"or a group: {', '.join(CORRUPTION_GROUPS)}"
                )
            if name not in names:
                names.append(name)
    if not names:
        raise TimmAssembleError("no corruption given")
    return names


def parse_severities(spec: str | list[int]) -> list[int]:
    """Severities from '1-5', '1,3,5' or '3'; each must be in 1..5."""
    if isinstance(spec, str):
        out: list[int] = []
        try:
            for part in (p.strip() for p in spec.split(",") if p.strip()):
                if "-" in part:
                    lo, hi = (int(v) for v in part.split("-", 1))
                    out.extend(range(lo, hi + 1))
                else:
                    out.append(int(part))
        except ValueError as err:
            raise TimmAssembleError(f"severities must look like '1-5' or '1,3,5', got {spec!r}") from err
    else:
        out = [int(s) for s in spec]
    if not out or any(s < 1 or s > 5 for s in out):
        raise TimmAssembleError(f"severities must be integers in 1..5, got {spec!r}")
    return sorted(set(out))


# --------------------------------------------------------------------------- helpers


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """scikit-image's `gaussian` (channel_axis=-1 for HxWxC): blur the spatial axes only."""
    sigmas = (sigma, sigma, 0) if x.ndim == 3 else sigma
    return _ndi().gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def _gray(x: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, as OpenCV's RGB2GRAY."""
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def _zoom_taps(size: int, zoom: float, keep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Taps of `scipy.ndimage.zoom(order=1)` along one axis for the `keep` centre outputs: (i0, i1, w0, w1)."""
    out_size = int(round(size * zoom))
    scale = (size - 1) / (out_size - 1) if out_size > 1 else 1.0  # scipy: (in - 1) / (out - 1), grid_mode=False
    coord = np.arange((out_size - keep) // 2, (out_size - keep) // 2 + keep) * scale
    i0 = np.floor(coord).astype(np.intp)
    w0 = 1.0 - (coord - i0)
    return i0, np.minimum(i0 + 1, size - 1), w0, 1.0 - w0  # scipy's spline weights: the last is 1 - the others


def _clipped_zoom(img: np.ndarray, zoom: float, work: np.ndarray | None = None) -> np.ndarray:
    """The reference's `clipped_zoom` on a (..., H, W) array: scipy's order-1 zoom of the centre crop, centre kept.

    Only the kept rows and columns are interpolated, with scipy's coordinates and weights, separably (rows,
    then columns) in float64 and cast to the input dtype: equal to scipy's four-tap sum up to float64 rounding.
    `work`, float64 of shape (4, *img.shape), is scratch space that a caller zooming many times can reuse.
    """
    h, w = img.shape[-2:]
    ch, cw = int(np.ceil(h / zoom)), int(np.ceil(w / zoom))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = img[..., top : top + ch, left : left + cw].astype(np.float64)
    r0, r1, wy0, wy1 = _zoom_taps(ch, zoom, h)
    c0, c1, wx0, wx1 = _zoom_taps(cw, zoom, w)
    rows, other, out, more = np.empty((4, *img.shape)) if work is None else work
    rows, other = rows[..., :cw], other[..., :cw]
    np.multiply(np.take(crop, r0, axis=-2, out=rows, mode="clip"), wy0[:, None], out=rows)
    np.multiply(np.take(crop, r1, axis=-2, out=other, mode="clip"), wy1[:, None], out=other)
    rows += other
    np.multiply(np.take(rows, c0, axis=-1, out=out, mode="clip"), wx0, out=out)
    np.multiply(np.take(rows, c1, axis=-1, out=more, mode="clip"), wx1, out=more)
    out += more
    return out.astype(img.dtype)


def _motion_blur(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick 6's MotionBlurImage on an 8-bit image, as shift-and-add: a one-sided Gaussian line of
    2 * radius + 1 taps along `angle` (degrees), tap i at (ceil(i sin - 0.5), ceil(i cos - 0.5)), edge pixels
    repeated; truncated to 8 bits, which matches the PNG ImageMagick returns to the reference better than
    rounding (the rest differ by one level: ImageMagick's own quantum arithmetic)."""
    width = 2 * radius + 1
    kernel = np.exp(-(np.arange(width, dtype=np.float64) ** 2) / (2.0 * sigma * sigma))
    kernel = (kernel / kernel.sum()).astype(np.float32)
    sin, cos = math.sin(math.radians(angle)), math.cos(math.radians(angle))
    offsets = [(math.ceil(i * sin - 0.5), math.ceil(i * cos - 0.5)) for i in range(width)]
    pad = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    h, w = x.shape[:2]
    padded = np.pad(x.astype(np.float32), ((pad, pad), (pad, pad)) + ((0, 0),) * (x.ndim - 2), mode="edge")
    out = np.zeros(x.shape, dtype=np.float32)
    for k, (dy, dx) in zip(kernel, offsets, strict=True):
        out += k * padded[pad + dy : pad + dy + h, pad + dx : pad + dx + w]
    return np.clip(np.floor(out), 0, 255)


@functools.lru_cache(maxsize=16)
def _disk_spectrum(radius: float, alias_blur: float, shape: tuple[int, int]) -> np.ndarray:
    """FFT (at `shape`) of the reference's `disk(radius, alias_blur)` for defocus_blur, flipped for correlation:
    an aliased disk normalised in float32, then OpenCV's float32 GaussianBlur (3x3, or 5x5 above radius 8)."""
    import scipy.fft

    ndi = _ndi()
    span = np.arange(-8, 9) if radius <= 8 else np.arange(-radius, radius + 1)
    xx, yy = np.meshgrid(span, span)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    disk /= disk.sum()
    ksize = 3 if radius <= 8 else 5
    taps = np.exp(-((np.arange(ksize) - (ksize - 1) / 2) ** 2) / (2 * alias_blur**2))
    taps /= taps.sum()
    disk = ndi.correlate1d(ndi.correlate1d(disk, taps, axis=0, mode="mirror"), taps, axis=1, mode="mirror")
    return scipy.fft.rfft2(disk[::-1, ::-1].astype(np.float64), shape)


def _gaussian_reflect(x: np.ndarray, sigma: float, truncate: float) -> np.ndarray:
    """`gaussian_filter(x, sigma, mode='reflect', truncate=truncate)` of a 2-D array (elastic_transform's fields).

    The reflected signal is periodic over twice the image, so the filter is a circular convolution of that
    period with the kernel folded onto it: for long kernels (severity 1: 1025 taps on 224 px, severity 2: 119)
    that is done by FFT, equal up to float64 rounding, instead of scipy's direct sum over every tap.
    """
    ndi = _ndi()
    radius = int(truncate * sigma + 0.5)
    if sigma <= 1e-15:  # scipy leaves such an axis as it is (the small sets' elastic_transform severity 1)
        return x
    for axis in (0, 1):
        n = x.shape[axis]
        if radius < 16:
            x = ndi.gaussian_filter1d(x, sigma, axis=axis, mode="reflect", truncate=truncate)
            continue
        taps = np.arange(-radius, radius + 1)
        weights = np.exp(-0.5 / (sigma * sigma) * taps.astype(np.float64) ** 2)
        folded = np.bincount(taps % (2 * n), weights=weights / weights.sum(), minlength=2 * n)
        shape = [1, 1]
        shape[axis] = n + 1
        spectrum = np.fft.rfft(np.concatenate([x, np.flip(x, axis)], axis=axis), axis=axis)
        spectrum *= np.fft.rfft(folded).reshape(shape)
        x = np.take(np.fft.irfft(spectrum, 2 * n, axis=axis), np.arange(n), axis=axis)
    return x


def _warp_affine(image: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """OpenCV's `warpAffine` (INTER_LINEAR, BORDER_REFLECT_101) of a float32 CxHxW image by the 2x3 `forward` map.

    As OpenCV does it: the inverse map from `invertAffineTransform`, source coordinates in fixed point
    (1/1024 px, rounded, then 1/32 px), bilinear weights from its float32 1/32-px table, taps reflected
    one by one at the border, and the four products summed in float32.
    """
    c, h, w = image.shape
    (m0, m1, m2), (m3, m4, m5) = forward.tolist()
    det = m0 * m4 - m1 * m3
    det = 1.0 / det if det != 0 else 0.0
    m0, m1, m3, m4 = m4 * det, -m1 * det, -m3 * det, m0 * det
    m2, m5 = -m0 * m2 - m1 * m5, -m3 * m2 - m4 * m5
    cols, rows = np.arange(w), np.arange(h)
    fixed_x = np.rint((m1 * rows + m2) * 1024).astype(np.int64)[:, None] + np.rint(m0 * cols * 1024).astype(np.int64)
    fixed_y = np.rint((m4 * rows + m5) * 1024).astype(np.int64)[:, None] + np.rint(m3 * cols * 1024).astype(np.int64)
    sx, sy = ((fixed_x + 16) >> 5).ravel(), ((fixed_y + 16) >> 5).ravel()  # 1/32 px
    fx, fy = (sx & 31).astype(np.float32) / np.float32(32), (sy & 31).astype(np.float32) / np.float32(32)

    def reflect(i: np.ndarray, n: int) -> np.ndarray:  # OpenCV's borderInterpolate, any number of bounces
        if n == 1:
            return np.zeros_like(i)
        i = np.abs(i) % (2 * n - 2)
        return np.where(i >= n, 2 * n - 2 - i, i)

    x0, x1 = reflect(sx >> 5, w), reflect((sx >> 5) + 1, w)
    y0, y1 = reflect(sy >> 5, h) * w, reflect((sy >> 5) + 1, h) * w
    flat, one = image.reshape(c, h * w), np.float32(1)
    out = np.take(flat, y0 + x0, axis=1) * ((one - fy) * (one - fx))
    out += np.take(flat, y0 + x1, axis=1) * ((one - fy) * fx)
    out += np.take(flat, y1 + x0, axis=1) * (fy * (one - fx))
    out += np.take(flat, y1 + x1, axis=1) * (fy * fx)
    return out.reshape(c, h, w)


def _roll(a: np.ndarray, shift: int, axis: int) -> np.ndarray:
    """`np.roll` of a 2-D array along one axis, without its general machinery (most of a small fractal's time)."""
    n = a.shape[axis]
    k = n - shift % n
    return np.concatenate((a[k:], a[:k]) if axis == 0 else (a[:, k:], a[:, :k]), axis=axis)


def _plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height map in [0, 1] on a `size` x `size` grid (`size` a power of two)."""
    grid = np.zeros((size, size), dtype=np.float64)
    step, wibble = size, 100.0

    def noisy_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        # squares: centre of each square = mean of its four corners + noise
        corners = grid[0:size:step, 0:size:step]
        total = corners + _roll(corners, -1, axis=0)
        total = total + _roll(total, -1, axis=1)
        grid[half:size:step, half:size:step] = noisy_mean(total)
        # diamonds: edge midpoints = mean of the two adjacent corners and two adjacent centres
        centres = grid[half:size:step, half:size:step]
        corners = grid[0:size:step, 0:size:step]
        total = centres + _roll(centres, 1, axis=0) + corners + _roll(corners, -1, axis=1)
        grid[0:size:step, half:size:step] = noisy_mean(total)
        total = centres + _roll(centres, 1, axis=1) + corners + _roll(corners, -1, axis=0)
        grid[half:size:step, 0:size:step] = noisy_mean(total)
        step //= 2
        wibble /= decay
    grid -= grid.min()
    return grid / grid.max()


@functools.lru_cache(maxsize=4 * len(_FROST_FILES))
def _frost_image(index: int, scale: float | None) -> np.ndarray:
    """Frost photograph `index` as float64 RGB, scaled as `cv2.resize(frost, (0, 0), fx=scale, fy=scale)` if given."""
    with Image.open(_FROST_DIR / _FROST_FILES[index]) as img:
        rgb = np.asarray(img.convert("RGB"))
    return (rgb if scale is None else _cv_resize_linear(rgb, scale)).astype(np.float64)


def _cv_linear_taps(size: int, scale: float, clip: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's INTER_LINEAR taps along one axis for 8-bit images: (i0, i1, w0, w1), weights in 11-bit fixed point
    from float32 fractions; `clip` (columns) zeroes the fraction of taps outside the image, as OpenCV does."""
    out = int(np.rint(size * scale))  # cvRound, half to even
    f = ((np.arange(out) + 0.5) * (1.0 / scale) - 0.5).astype(np.float32)
    i = np.floor(f).astype(np.intp)
    f -= i.astype(np.float32)
    if clip:
        f[(i < 0) | (i >= size - 1)] = 0
    w0 = np.rint((np.float32(1) - f) * np.float32(2048)).astype(np.int64)
    w1 = np.rint(f * np.float32(2048)).astype(np.int64)
    return np.clip(i, 0, size - 1), np.clip(i + 1, 0, size - 1), w0, w1


def _cv_resize_linear(img: np.ndarray, scale: float) -> np.ndarray:
    """OpenCV's `resize(img, (0, 0), fx=scale, fy=scale)` (INTER_LINEAR) of a uint8 HxWxC image, bit for bit:
    integer rows, then columns as OpenCV's vertical pass, `((w0 * (r0 >> 4)) >> 16) + ((w1 * (r1 >> 4)) >> 16)`
    rounded by 2 bits."""
    h, w, c = img.shape
    x0, x1, a0, a1 = _cv_linear_taps(w, scale, clip=True)
    y0, y1, b0, b1 = _cv_linear_taps(h, scale, clip=False)
    src = img.astype(np.int64)
    rows = (src[:, x0] * a0[:, None] + src[:, x1] * a1[:, None]) >> 4
    out = ((rows[y0] * b0[:, None, None]) >> 16) + ((rows[y1] * b1[:, None, None]) >> 16)
    return np.clip((out + 2) >> 2, 0, 255).astype(np.uint8)


def _canny(img: np.ndarray, low: int, high: int) -> np.ndarray:
    """OpenCV's `Canny` (3x3 Sobel with replicated borders, L1 magnitude, its fixed-point direction sectors,
    8-connected hysteresis) on a uint8 image -> bool edges.

    Gradients fit int16 (|g| <= 1020); the sector tests (|gy| << 15 against |gx| * 13573 and
    (|gx| << 16) + |gx| * 13573) run in int32 on the pixels above `low` only, the only ones that can be
    edges. Hysteresis grows the strong edges into touching weak ones until none is added.
    """
    h, w = img.shape
    row = w + 2
    p = _pad1(img, np.int16, reflect=False)
    d = p[:, 2:] - p[:, :-2]  # Sobel, separably: [-1, 0, 1] along x, [1, 2, 1] along y (and transposed)
    gx = d[:-2] + d[2:]
    gx += d[1:-1] << 1
    d = p[2:] - p[:-2]
    gy = d[:, :-2] + d[:, 2:]
    gy += d[:, 1:-1] << 1
    mag = np.zeros((h + 2, row), dtype=np.int16)  # zero border: never above `low`, never a larger neighbour
    inner = mag[1:-1, 1:-1]
    np.abs(gx, out=inner)
    inner += np.abs(gy)
    mag = mag.ravel()
    at = np.flatnonzero(mag > low)  # flat indices into the padded map
    at_inner = at - (at // row) * 2 - (row - 1)  # the same pixels in gx, gy
    gx, gy = gx.ravel()[at_inner].astype(np.int32), gy.ravel()[at_inner].astype(np.int32)
    ax, ay = np.abs(gx), np.abs(gy)
    ay <<= 15
    tan22 = ax * 13573  # round(tan(22.5 deg) * 2**15), as OpenCV
    horizontal = ay < tan22
    vertical = ay > (ax << 16) + tan22
    anti = (gx ^ gy) < 0  # gradient along the anti-diagonal
    # neighbours across the gradient: (0, +-1), (+-1, 0), (-+1, +-1) or (+-1, +-1)
    step = np.where(horizontal, 1, np.where(vertical, row, np.where(anti, row - 1, row + 1)))
    m = mag[at]
    after = mag[at + step]
    axial = horizontal | vertical  # OpenCV keeps ties with the right / lower neighbour on these only
    keep = np.flatnonzero((m > mag[at - step]) & ((m > after) | (axial & (m == after))))
    at, m = at[keep], m[keep]
    edges = np.zeros(mag.size, dtype=bool)
    strong = m > high
    edges[at[strong]] = True
    weak = at[~strong]
    around = np.array([-row - 1, -row, 1 - row, -1, 1, row - 1, row, row + 1])
    while weak.size:
        linked = edges[weak[:, None] + around].any(axis=1)
        if not linked.any():
            break
        edges[weak[linked]] = True
        weak = weak[~linked]
    return edges.reshape(h + 2, row)[1:-1, 1:-1]


# OpenCV's 5x5 chamfer steps in 16.16 fixed point: (dy, dx) of each line direction and its step cost
_CHAMFER_5X5 = (
    ((0, 1), 65536), ((1, 0), 65536),
    ((1, 1), round(1.4 * 65536)), ((1, -1), round(1.4 * 65536)),
    ((1, 2), round(2.1969 * 65536)), ((2, 1), round(2.1969 * 65536)),
    ((1, -2), round(2.1969 * 65536)), ((2, -1), round(2.1969 * 65536)),
)  # fmt: skip


def _distance_5x5(edges: np.ndarray, limit: int) -> np.ndarray:
    """OpenCV's `distanceTransform(DIST_L2, 5)` clipped at `limit` px: float32 distance to the nearest edge pixel.

    OpenCV's two-pass 5x5 chamfer scan gives every pixel the cheapest path from an edge pixel in steps of
    its mask (1, 1.4 and 2.1969 in 16.16 fixed point); a cheapest path uses at most two step directions
    and stays inside the image, so that is a min-plus convolution of the edge map with the eight line
    distances k * cost along (0, 1), (1, 0), (1, +-1), (1, +-2), (2, +-1), taken one after the other. Each
    line pass is done by doubling (shifts of 1, 2, 4, ... steps, both signs) up to the step count that
    `limit` can need: exact integers below `limit`, and at least `limit` where the true distance is.
    The passes shift whole padded rows as one flat array: with `limit` or more padding columns between one
    row's end and the next row's start, a path that wraps around costs more than `limit`.
    """
    h, w = edges.shape
    fixed_limit = limit * 65536
    plan = [(dy, dx, cost, (fixed_limit // cost).bit_length()) for (dy, dx), cost in _CHAMFER_5X5]
    plan = [step for step in plan if step[3]]  # a step costlier than `limit` never helps
    reach = max((1 << (levels - 1)) * max(abs(dy), abs(dx)) for dy, dx, _, levels in plan)
    side = max(reach, (limit + 1) // 2)
    row = w + 2 * side
    t = np.full((h + 2 * reach + 2, row), 2**30, dtype=np.int32)  # beyond any path cost below the limit
    top = reach + 1  # one spare row above and below: a shift of `reach` rows and columns stays in the array
    t[top : top + h, side : side + w][edges] = 0
    flat = t.ravel()
    start, size = top * row, h * row
    band = flat[start : start + size]  # the image rows, side padding included
    near = np.empty_like(band)
    for dy, dx, cost, levels in plan:
        for level in range(levels):
            shift = (dy * row + dx) << level
            np.minimum(flat[start + shift : start + shift + size], flat[start - shift : start - shift + size], out=near)
            near += cost << level
            np.minimum(band, near, out=band)
    inner = t[top : top + h, side : side + w]
    return np.minimum(inner.astype(np.float32) * np.float32(1.0 / 65536), np.float32(limit))


def _fill_border(p: np.ndarray, pad: int, reflect: bool) -> None:
    """Fill the `pad`-wide border of `p`'s last two axes from its interior, in place: mirrored without the edge
    pixel (OpenCV's BORDER_REFLECT_101; the interior must be wider than `pad`) or replicated (BORDER_REPLICATE).
    Rows first, then columns over the full height, so the corners come out as OpenCV's and np.pad's."""
    for axis in (-2, -1):
        q = np.moveaxis(p, axis, 0)
        n = q.shape[0]
        if reflect:
            q[:pad], q[n - pad :] = q[2 * pad : pad : -1], q[n - pad - 2 : n - 2 * pad - 2 : -1]
        else:
            q[:pad], q[n - pad :] = q[pad], q[n - pad - 1]


def _pad1(x: np.ndarray, dtype: type, reflect: bool) -> np.ndarray:
    """2-D `x` as `dtype` with a one-pixel border (see `_fill_border`). np.pad's general machinery costs more
    than the 3x3 filters it pads for."""
    h, w = x.shape
    p = np.empty((h + 2, w + 2), dtype=dtype)
    p[1:-1, 1:-1] = x
    _fill_border(p, 1, reflect)
    return p


def _box3(x: np.ndarray, dtype: type) -> np.ndarray:
    """Sum over each 3x3 neighbourhood in `dtype`, borders as OpenCV's BORDER_REFLECT_101."""
    p = _pad1(x, dtype, reflect=True)
    rows = p[:-2] + p[1:-1]
    rows += p[2:]
    out = rows[:, :-2] + rows[:, 1:-1]
    out += rows[:, 2:]
    return out


def _emboss(x: np.ndarray) -> np.ndarray:
    """spatter's `cv2.filter2D(x, CV_8U, [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])` on uint8: integer sums (within
    -1020..1275, so int16), saturated."""
    p = _pad1(x, np.int16, reflect=True)
    out = p[2:, 2:] - p[:-2, :-2]
    out <<= 1
    out += p[1:-1, 1:-1]
    out += p[1:-1, 2:]
    out += p[2:, 1:-1]
    out -= p[:-2, 1:-1]
    out -= p[1:-1, :-2]
    return np.clip(out, 0, 255, out=out)


def _equalize_hist(img: np.ndarray) -> np.ndarray:
    """OpenCV's equalizeHist for uint8 (its float32 scale, rounded to nearest)."""
    hist = np.bincount(img.ravel(), minlength=256)
    first = int(np.flatnonzero(hist)[0])
    total = img.size
    if hist[first] == total:
        return np.full_like(img, first)
    scale = np.float32(255.0) / np.float32(total - hist[first])
    cdf = np.cumsum(hist) - hist[first]
    lut = np.clip(np.rint(cdf.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    lut[: first + 1] = 0
    return lut[img]


# --------------------------------------------------------------------------- corruptions


def gaussian_noise(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    out = rng.normal(size=x.shape, scale=c)
    out += x / 255.0
    np.clip(out, 0, 1, out=out)
    out *= 255
    return out


def shot_noise(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    out = rng.poisson(x / 255.0 * c) / c
    np.clip(out, 0, 1, out=out)
    out *= 255
    return out


def impulse_noise(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    """Salt-and-pepper on a fraction `c` of all values, half salt, half pepper (scikit-image 's&p')."""
    x = x / 255.0
    flipped = rng.random(x.shape) <= c
    salted = rng.random(x.shape) <= 0.5
    x[flipped & salted] = 1.0
    x[flipped & ~salted] = 0.0
    return x * 255


def speckle_noise(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    x = x / 255.0
    out = rng.normal(size=x.shape, scale=c)
    out *= x
    out += x
    np.clip(out, 0, 1, out=out)
    out *= 255
    return out


def gaussian_blur(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    return np.clip(_gaussian(x / 255.0, c), 0, 1) * 255


def _glass_sources(h: int, w: int, delta: int, offsets: np.ndarray) -> np.ndarray:
    """Flat source index of every pixel after one sweep of the reference's `x[h, w], x[h', w'] = x[h', w'], x[h, w]`.

    On numpy views that statement copies x[h', w'] onto x[h, w] and leaves x[h', w'] as it is (ImageNet-C
    was generated that way). The sweep runs over rows, then columns, downwards from (h - delta, w - delta), so
    a pixel copied from a later-swept one (a larger flat index inside the swept box) takes its already-updated
    value: following those links to their end (pointer doubling) gives every pixel's source without a loop.
    """
    rows, cols = np.arange(h - delta, delta, -1), np.arange(w - delta, delta, -1)
    swept = (rows[:, None] * w + cols[None, :]).ravel()  # in sweep order, as the offsets are drawn
    source = swept + offsets[:, 1] * w + offsets[:, 0]  # offsets are (dx, dy)
    inside = np.zeros(h * w, dtype=bool)
    inside[swept] = True
    chained = (source > swept) & inside[source]
    link = np.arange(h * w)
    link[swept[chained]] = source[chained]
    while True:
        jumped = link[link]
        if np.array_equal(jumped, link):
            break
        link = jumped
    first = np.arange(h * w)
    first[swept] = source
    return first[link]


def glass_blur(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    """Reference `glass_blur`: blur, move each pixel from a random neighbour (copy semantics), blur again."""
    sigma, delta, iterations = c
    x = np.uint8(_gaussian(x / 255.0, sigma) * 255)
    h, w = x.shape[:2]
    swept = (h - 2 * delta) * (w - 2 * delta)
    order = np.arange(h * w)
    for offsets in rng.integers(-delta, delta, size=(iterations, swept, 2)):
        order = order[_glass_sources(h, w, delta, offsets)]
    x = x.reshape(h * w, -1)[order].reshape(h, w, -1)
    return np.clip(_gaussian(x / 255.0, sigma), 0, 1) * 255


def defocus_blur(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    """Reference `defocus_blur`: correlate each channel with `disk` (see `_disk_spectrum`).

    The reference's `cv2.filter2D` correlates kernels this large through the DFT, with BORDER_REFLECT_101;
    so do we: a float64 FFT over the mirror-padded image (its wrap-around only touches the first k - 1 rows
    and columns, which are cut), rounded to 1e-12 so that flat regions stay exact. OpenCV runs it on its
    thread pool; large transforms (ImageNet-C's) go to torch's FFT here (3-4x faster than scipy's inverse) on
    torch's intra-op threads (1 in a DataLoader worker), small ones to numpy's, which costs far less a call.
    """
    import scipy.fft
    import torch

    radius, alias_blur = c
    k, (h, w) = (17 if radius <= 8 else 2 * radius + 1), x.shape[:2]  # the kernel's size, as `disk` makes it
    pad = k // 2
    shape = tuple(scipy.fft.next_fast_len(n + 2 * pad, real=True) for n in (h, w))
    padded = np.empty((3, *shape))  # the transform's size, zero beyond the mirror-padded image
    rows, cols = h + 2 * pad, w + 2 * pad
    padded[:, rows:] = 0
    padded[:, :rows, cols:] = 0
    image = padded[:, :rows, :cols]
    image[:, pad : pad + h, pad : pad + w] = np.moveaxis(x, -1, 0)
    _fill_border(image, pad, reflect=True)
    image /= 255.0
    if shape[0] * shape[1] < _TORCH_FFT_AREA:  # small (cifar-c, tiny-imagenet-c): torch's per-call cost dominates
        full = np.fft.irfft2(np.fft.rfft2(padded) * _disk_spectrum(radius, alias_blur, shape), shape)
    else:
        spectrum = torch.fft.rfft2(torch.from_numpy(padded))
        spectrum *= torch.from_numpy(_disk_spectrum(radius, alias_blur, shape))
        full = torch.fft.irfft2(spectrum, shape).numpy()
    out = np.multiply(full[:, k - 1 : k - 1 + h, k - 1 : k - 1 + w], 1e12)
    np.rint(out, out=out)
    out /= 1e12
    np.clip(out, 0, 1, out=out)
    out *= 255
    return np.moveaxis(out, 0, -1)  # corrupt()'s cast to uint8 makes it channels-last and contiguous


def motion_blur(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    return _motion_blur(x, *c, rng.uniform(-45, 45))


def zoom_blur(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    zooms = np.arange(1, *c)
    x = np.moveaxis((x / 255.0).astype(np.float32), -1, 0)  # channels first: contiguous rows to interpolate
    out, work = np.zeros_like(x), np.empty((4, *x.shape))
    for z in zooms:
        out += _clipped_zoom(x, z, work)
    return np.moveaxis(np.clip((x + out) / (len(zooms) + 1), 0, 1) * 255, 0, -1)


def snow(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    loc, scale, zoom, threshold, radius, sigma, blend = c
    x = x.astype(np.float32) / 255.0
    flakes = rng.normal(size=x.shape[:2], loc=loc, scale=scale)
    flakes = _clipped_zoom(flakes, zoom)
    flakes[flakes < threshold] = 0
    flakes = (np.clip(flakes, 0, 1) * 255).astype(np.uint8)  # the layer is an 8-bit image in ImageNet-C
    flakes = _motion_blur(flakes, radius, sigma, rng.uniform(-135, -45))
    flakes = (flakes / 255.0)[..., None]
    x = blend * x + (1 - blend) * np.maximum(x, _gray(x)[..., None] * 1.5 + 0.5)
    return np.clip(x + flakes + np.rot90(flakes, k=2), 0, 1) * 255


def frost(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    """Blend with a random crop of one of ImageNet-C's frost photographs (scaled up if the image is larger)."""
    keep, amount = c
    overlay = _frost_image(int(rng.integers(len(_FROST_FILES))), cs.frost_scale)
    h, w = x.shape[:2]
    fh, fw = overlay.shape[:2]
    if fh <= h or fw <= w:
        scale = max(h / fh, w / fw) * 1.1
        size = (int(np.ceil(fw * scale)), int(np.ceil(fh * scale)))
        img = Image.fromarray(overlay.astype(np.uint8)).resize(size, Image.BICUBIC)
        overlay = np.asarray(img, dtype=np.float64)
        fh, fw = overlay.shape[:2]
    top, left = int(rng.integers(0, fh - h)), int(rng.integers(0, fw - w))
    return np.clip(keep * x + amount * overlay[top : top + h, left : left + w], 0, 255)


def fog(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    strength, decay = c
    h, w = x.shape[:2]
    size = max(cs.fractal_side, 1 << (max(h, w) - 1).bit_length())
    x = x / 255.0
    peak = x.max()
    x = x + strength * _plasma_fractal(size, decay, rng)[:h, :w][..., None]
    return np.clip(x * peak / (peak + strength), 0, 1) * 255


def brightness(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    hsv = rgb_to_hsv(x / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1) * 255


def contrast(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    x = x / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    x -= means
    x *= c
    x += means
    np.clip(x, 0, 1, out=x)
    x *= 255
    return x


def saturate(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    gain, offset = c
    hsv = rgb_to_hsv(x / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * gain + offset, 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1) * 255


def jpeg_compression(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    buf = BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=c)
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def pixelate(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    h, w = x.shape[:2]
    img = Image.fromarray(x).resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.BOX)
    return np.asarray(img)


def elastic_transform(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    """Random affine warp, then a smoothed random displacement field (ImageNet-C's constants are 244-based)."""
    alpha, sigma, jitter = c
    ndi = _ndi()
    image = np.moveaxis(x.astype(np.float32) / 255.0, -1, 0)  # channels first: contiguous planes
    h, w = x.shape[:2]
    # affine from three points around the centre, each moved by up to `jitter` px ((x, y) order, float32)
    centre = np.array([w // 2, h // 2], dtype=np.float32)
    half = min(h, w) // 3
    src = np.array([centre + half, [centre[0] + half, centre[1] - half], centre - half], dtype=np.float32)
    dst = src + rng.uniform(-jitter, jitter, size=src.shape).astype(np.float32)
    forward = np.linalg.solve(np.hstack([src, np.ones((3, 1), np.float32)]).astype(np.float64), dst.astype(np.float64))
    image = _warp_affine(image, forward.T)  # dst = forward.T @ [x, y, 1]
    dx = (_gaussian_reflect(rng.uniform(-1, 1, size=(h, w)), sigma, truncate=3) * alpha).astype(np.float32)
    dy = (_gaussian_reflect(rng.uniform(-1, 1, size=(h, w)), sigma, truncate=3) * alpha).astype(np.float32)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = np.stack([yy + dy, xx + dx])
    out = np.stack([ndi.map_coordinates(plane, coords, order=1, mode="reflect") for plane in image], -1)
    return np.clip(out, 0, 1) * 255


def spatter(x: np.ndarray, c: Any, rng: np.random.Generator, cs: CorruptionSet) -> np.ndarray:
    """Water droplets (severities 1-3) or mud (4-5) from a thresholded, smoothed noise layer."""
    loc, scale, sigma, threshold, intensity, mud = c
    x = x.astype(np.float32) / 255.0
    liquid = _gaussian(rng.normal(size=x.shape[:2], loc=loc, scale=scale), sigma)
    liquid[liquid < threshold] = 0
    if not mud:
        liquid = (liquid * 255).astype(np.int64).astype(np.uint8)  # 8 bits wrap around above 255, as numpy casts
        dist = _distance_5x5(_canny(liquid, 50, 150), 20)  # cv2.threshold(THRESH_TRUNC) at 20
        dist = (_box3(dist, np.float64) * (1.0 / 9)).astype(np.float32).astype(np.uint8)  # cv2.blur
        dist = _emboss(_equalize_hist(dist))
        dist = ((_box3(dist, np.int16) + 4) // 9).astype(np.float32)  # cv2.blur of uint8 rounds (sum / 9 never ties)
        m = liquid.astype(np.float32) * dist
        peak = m.max()
        if peak > 0:
            m /= peak
            m *= intensity
        colour = np.array([175, 238, 238], dtype=np.float32) / 255.0  # pale turquoise water
        out = np.empty_like(x)
        for channel, value in enumerate(colour):  # a channel at a time: numpy broadcasts over 3 channels slowly
            np.multiply(m, value, out=out[..., channel])
        out += x
        np.clip(out, 0, 1, out=out)
        out *= 255
        return out
    m = _gaussian((liquid > threshold).astype(np.float32), intensity)
    m[m < 0.8] = 0
    colour = np.array([63, 42, 20], dtype=np.float32) / 255.0  # mud brown
    clear = 1 - m
    out = np.empty_like(x)
    for channel, value in enumerate(colour):
        np.multiply(x[..., channel], clear, out=out[..., channel])
        out[..., channel] += m * value
    np.clip(out, 0, 1, out=out)
    out *= 255
    return out


_FUNCTIONS: dict[str, Callable[[np.ndarray, Any, np.random.Generator, CorruptionSet], np.ndarray]] = {
    f.__name__: f
    for f in (
        gaussian_noise, shot_noise, impulse_noise, defocus_blur, glass_blur, motion_blur, zoom_blur,
        snow, frost, fog, brightness, contrast, elastic_transform, pixelate, jpeg_compression,
        speckle_noise, gaussian_blur, spatter, saturate,
    )
}  # fmt: skip


def corrupt(
    image: np.ndarray | Image.Image,
    name: str,
    severity: int,
    rng: np.random.Generator | int,
    corruption_set: str | CorruptionSet = "imagenet-c",
) -> np.ndarray:
    """Apply corruption `name` at `severity` (1-5) with the constants of `corruption_set` (see `corruption_sets`:
    imagenet-c, cifar-c, tiny-imagenet-c, imagenet-c-inception) to an RGB image -> uint8 HxWx3.

    `rng` is a numpy Generator or an int seed; the same seed gives the same output.
    """
    cs = resolve_corruption_set(corruption_set)
    if name not in _FUNCTIONS:
        raise TimmAssembleError(f"unknown corruption {name!r}; choose from {', '.join(ALL_CORRUPTIONS)}")
    if severity not in (1, 2, 3, 4, 5):
        raise TimmAssembleError(f"severity must be an integer in 1..5, got {severity!r}")
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise TimmAssembleError(f"corrupt() needs an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    if min(image.shape[:2]) < 32:
        raise TimmAssembleError(f"images must be at least 32x32 px to corrupt, got {image.shape[1]}x{image.shape[0]}")
    if name not in RANDOM_CORRUPTIONS:
        rng = _NO_DRAWS
    elif not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    image = image.view()
    image.flags.writeable = False  # the caller's pixels: a corruption reads them and makes its own arrays
    out = _FUNCTIONS[name](image, cs.params[name][severity - 1], rng, cs)
    if out.dtype == np.uint8:  # already 8-bit (pixelate, jpeg_compression)
        return np.array(out, order="C")
    return np.clip(out, 0, 255, out=out if out.flags.writeable else None).astype(np.uint8, order="C")
