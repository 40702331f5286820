"""ImageNet-C corruptions: every name works, is deterministic per seed, and follows the published definitions."""

from __future__ import annotations

import hashlib
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from timm_assemble.errors import TimmAssembleError
from timm_assemble.evaluation import corruptions as C


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:48]
    base = np.stack([xx * 5, yy * 6, (xx + yy) * 3], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", C.ALL_CORRUPTIONS)
def test_every_corruption_is_deterministic_and_changes_the_image(name: str, image: np.ndarray) -> None:
    before = image.copy()
    for severity in (1, 5):
        out = C.corrupt(image, name, severity, 7)
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert out.flags.writeable and out.flags.c_contiguous and not np.shares_memory(out, image)
        assert np.array_equal(out, C.corrupt(image, name, severity, np.random.default_rng(7)))
    assert np.array_equal(image, before) and image.flags.writeable  # the caller's array, untouched
    assert not np.array_equal(C.corrupt(image, name, 5, 7), image)


@pytest.mark.parametrize("layout", ["mirrored", "bgr_view", "crop", "fortran"])
def test_any_memory_layout_gives_the_same_corruption(layout: str, image: np.ndarray) -> None:
    """corrupt() hands the corruption a read-only view of the caller's array, strides and all."""
    view = {
        "mirrored": image[:, ::-1],
        "bgr_view": image[..., ::-1],
        "crop": image[2:38, 3:45],
        "fortran": np.asfortranarray(image),
    }[layout]
    for name in C.ALL_CORRUPTIONS:
        assert np.array_equal(C.corrupt(view, name, 3, 5), C.corrupt(np.ascontiguousarray(view), name, 3, 5)), name


def test_random_corruptions_depend_on_the_seed_and_no_other_does(image: np.ndarray) -> None:
    for name in C.RANDOM_CORRUPTIONS:
        assert not np.array_equal(C.corrupt(image, name, 3, 1), C.corrupt(image, name, 3, 2)), name
    untouched = C._NO_DRAWS.bit_generator.state
    for name in set(C.ALL_CORRUPTIONS) - set(C.RANDOM_CORRUPTIONS):
        for severity in range(1, 6):
            assert np.array_equal(C.corrupt(image, name, severity, 1), C.corrupt(image, name, severity, 2)), name
    assert C._NO_DRAWS.bit_generator.state == untouched  # they were handed a generator and drew nothing from it


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise", "gaussian_blur", "contrast", "pixelate"])
def test_severity_increases_the_damage(name: str, image: np.ndarray) -> None:
    diffs = [np.abs(C.corrupt(image, name, s, 0).astype(int) - image).mean() for s in range(1, 6)]
    assert diffs == sorted(diffs) and diffs[-1] > diffs[0]


def test_contrast_matches_the_definition(image: np.ndarray) -> None:
    x = image / 255.0
    mean = x.mean(axis=(0, 1), keepdims=True)
    expected = np.uint8(np.clip((x - mean) * 0.05 + mean, 0, 1) * 255)
    assert np.array_equal(C.corrupt(image, "contrast", 5, 0), expected)


def test_jpeg_and_pixelate_match_pil(image: np.ndarray) -> None:
    buf = BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=7)
    assert np.array_equal(C.corrupt(image, "jpeg_compression", 5, 0), np.asarray(Image.open(buf).convert("RGB")))
    small = Image.fromarray(image).resize((12, 10), Image.BOX).resize((48, 40), Image.BOX)
    assert np.array_equal(C.corrupt(image, "pixelate", 5, 0), np.asarray(small))


def test_impulse_noise_flips_the_published_fraction() -> None:
    grey = np.full((64, 64, 3), 128, np.uint8)
    out = C.corrupt(grey, "impulse_noise", 5, 0)  # c = 0.27, half salt, half pepper
    assert abs((out == 255).mean() - 0.135) < 0.02 and abs((out == 0).mean() - 0.135) < 0.02


def test_gaussian_blur_preserves_a_flat_image() -> None:
    flat = np.full((40, 40, 3), 100, np.uint8)
    for name in ("gaussian_blur", "defocus_blur", "zoom_blur", "motion_blur"):
        assert np.abs(C.corrupt(flat, name, 3, 0).astype(int) - 100).max() <= 1, name


@pytest.mark.parametrize(("severity", "seed"), [(1, 1), (1, 6), (2, 3), (2, 6)])
def test_elastic_transform_reflects_any_number_of_times_at_the_border(severity: int, seed: int) -> None:
    """On a small image the affine shift can exceed the image: taps reflect again (OpenCV's BORDER_REFLECT_101,
    period 2n-2), never index past it, and a flat image stays flat."""
    out = C.corrupt(np.full((40, 40, 3), 128, np.uint8), "elastic_transform", severity, seed)
    assert out.shape == (40, 40, 3) and out.min() >= 127 and out.max() <= 128


def test_frost_overlays_ship_unmodified() -> None:
    expected = {
        "frost1.png": "aae1c580d67a272e25f02d3ae24181af0c69712c",
        "frost2.png": "cc9a719e118e3cd008657780ac1a9ec080af25df",
        "frost3.png": "961f49cf57e4bc24cd03428cba01b5a709a00286",
        "frost4.jpg": "07f29236db97467de9bd5843915a09160a7b67ab",
        "frost5.jpg": "e643718fde1eb19052f1646bb0dc0f1cbe2e99f2",
    }
    for name, sha in expected.items():
        assert hashlib.sha1((C._FROST_DIR / name).read_bytes()).hexdigest() == sha


def test_frost_scales_its_overlay_for_large_images() -> None:
    big = np.full((700, 1000, 3), 50, np.uint8)  # larger than every frost photograph
    assert C.corrupt(big, "frost", 1, 0).shape == big.shape


def test_parse_corruptions_and_severities() -> None:
    assert C.parse_corruptions("common") == list(C.COMMON_CORRUPTIONS)
    assert C.parse_corruptions("noise,gaussian_noise,spatter") == [
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "spatter",
    ]
    assert len(C.parse_corruptions("all")) == 19
    assert C.parse_severities("1-5") == [1, 2, 3, 4, 5]
    assert C.parse_severities("5,1,3") == [1, 3, 5]
    with pytest.raises(TimmAssembleError, match="unknown corruption 'gausian_noise'"):
        C.parse_corruptions("gausian_noise")
    for bad in ("0-3", "6", "x"):
        with pytest.raises(TimmAssembleError, match="severities"):
            C.parse_severities(bad)


def test_bad_inputs_raise_clear_errors(image: np.ndarray) -> None:
    with pytest.raises(TimmAssembleError, match="unknown corruption"):
        C.corrupt(image, "rain", 1, 0)
    with pytest.raises(TimmAssembleError, match="severity"):
        C.corrupt(image, "fog", 6, 0)
    with pytest.raises(TimmAssembleError, match="at least 32x32"):
        C.corrupt(image[:20], "fog", 1, 0)
    with pytest.raises(TimmAssembleError, match="RGB uint8"):
        C.corrupt(image.astype(np.float32), "fog", 1, 0)


def two_pass_chamfer_5x5(edges: np.ndarray) -> np.ndarray:
    """OpenCV's distanceTransform(DIST_L2, 5) as OpenCV computes it: a forward and a backward raster scan of
    the 5x5 chamfer mask in 16.16 fixed point, borders unreachable; pixel by pixel (slow, for small maps)."""
    a, b, c = 65536, round(1.4 * 65536), round(2.1969 * 65536)
    forward = ((-2, -1, c), (-2, 1, c), (-1, -2, c), (-1, -1, b), (-1, 0, a), (-1, 1, b), (-1, 2, c), (0, -1, a))
    h, w = edges.shape
    t = np.where(edges, 0, 2**40).astype(np.int64)
    for sign, rows, cols in ((1, range(h), range(w)), (-1, range(h - 1, -1, -1), range(w - 1, -1, -1))):
        for i in rows:
            for j in cols:
                for dy, dx, cost in forward:
                    y, x = i + sign * dy, j + sign * dx
                    if 0 <= y < h and 0 <= x < w and t[y, x] + cost < t[i, j]:
                        t[i, j] = t[y, x] + cost
    return t.astype(np.float32) * np.float32(1 / 65536)


@pytest.mark.parametrize("density", [0.0, 0.0005, 0.004, 0.03, 0.2])
def test_spatter_distance_transform_equals_the_two_pass_scan(density: float) -> None:
    rng = np.random.default_rng(int(density * 1e4))
    edges = rng.random((37, 61)) < density
    if density == 0.0:
        edges[5, 50] = True  # a lone edge pixel: long straight and knight-move paths
    exact = two_pass_chamfer_5x5(edges)
    for limit in (2, 4, 20):  # 2: no knight move fits under the limit
        assert np.array_equal(C._distance_5x5(edges, limit), np.minimum(exact, np.float32(limit)))


def pixelwise_canny(img: np.ndarray, low: int, high: int) -> np.ndarray:
    """OpenCV's Canny (L1 gradient) as OpenCV computes it, pixel by pixel (slow, for small images): 3x3 Sobel
    with replicated borders, non-maximum suppression in its fixed-point sectors, then hysteresis from every
    strong pixel through 8-connected weak ones with a stack."""
    h, w = img.shape
    p = np.pad(img.astype(np.int64), 1, mode="edge")
    mag = np.zeros((h + 2, w + 2), dtype=np.int64)
    gxs, gys = np.zeros((h, w), dtype=np.int64), np.zeros((h, w), dtype=np.int64)
    for i in range(h):
        for j in range(w):
            win = p[i : i + 3, j : j + 3]
            gxs[i, j] = (win[:, 2] - win[:, 0]) @ [1, 2, 1]
            gys[i, j] = (win[2] - win[0]) @ [1, 2, 1]
            mag[i + 1, j + 1] = abs(gxs[i, j]) + abs(gys[i, j])
    state = np.zeros((h, w), dtype=np.int8)  # 0 no edge, 1 weak, 2 strong
    for i in range(h):
        for j in range(w):
            m, gx, gy = mag[i + 1, j + 1], gxs[i, j], gys[i, j]
            if m <= low:
                continue
            ax, ay = abs(gx) * 13573, abs(gy) << 15
            if ay < ax:
                keep = m > mag[i + 1, j] and m >= mag[i + 1, j + 2]
            elif ay > (abs(gx) << 16) + ax:
                keep = m > mag[i, j + 1] and m >= mag[i + 2, j + 1]
            else:
                s = -1 if (gx < 0) != (gy < 0) else 1
                keep = m > mag[i, j + 1 - s] and m > mag[i + 2, j + 1 + s]
            if keep:
                state[i, j] = 2 if m > high else 1
    edges = state == 2
    stack = [tuple(ij) for ij in np.argwhere(edges)]
    while stack:
        i, j = stack.pop()
        for y in range(max(i - 1, 0), min(i + 2, h)):
            for x in range(max(j - 1, 0), min(j + 2, w)):
                if state[y, x] == 1 and not edges[y, x]:
                    edges[y, x] = True
                    stack.append((y, x))
    return edges


@pytest.mark.parametrize("pattern", ["noise", "blobs", "weak_spiral"])
def test_spatter_canny_equals_the_pixelwise_definition(pattern: str) -> None:
    rng = np.random.default_rng(len(pattern))
    if pattern == "noise":
        img = rng.integers(0, 256, (23, 31)).astype(np.uint8)
    elif pattern == "blobs":  # the liquid layer spatter feeds it: smoothed, thresholded noise
        liquid = C._gaussian(rng.normal(0.65, 0.3, (40, 44)), 2)
        img = (np.clip(np.where(liquid < 0.68, 0, liquid), 0, 1) * 255).astype(np.uint8)
    else:  # one strong edge feeding a long chain of weak ones: hysteresis must follow it to the end
        img = np.zeros((21, 21), dtype=np.uint8)
        y, x, dy, dx = 10, 10, 0, 1
        for length in range(1, 40):
            for _ in range(length // 2 + 1):
                img[y, x] = 20
                y, x = min(max(y + 2 * dy, 1), 19), min(max(x + 2 * dx, 1), 19)
            dy, dx = dx, -dy
        img[0, 0] = 255
    for low, high in ((50, 150), (10, 40), (0, 255)):
        assert np.array_equal(C._canny(img, low, high), pixelwise_canny(img, low, high))


def test_corruption_set_matches_the_images_resolution() -> None:
    from timm_assemble.evaluation.corruption_sets import set_for_resolution

    chosen = {side: set_for_resolution(side).name for side in (20, 32, 40, 64, 100, 160, 224, 299, 300, 500)}
    assert chosen == {
        20: "cifar-c", 32: "cifar-c", 40: "cifar-c", 64: "tiny-imagenet-c", 100: "tiny-imagenet-c",
        160: "imagenet-c", 224: "imagenet-c", 299: "imagenet-c-inception", 300: "imagenet-c", 500: "imagenet-c",
    }  # fmt: skip
    with pytest.raises(TimmAssembleError, match="unknown corruption set 'cifar10-c'; choose from imagenet-c, cifar-c"):
        C.corrupt(np.zeros((32, 32, 3), np.uint8), "fog", 1, 0, "cifar10-c")


# sha256 (first 16 hex digits) of `cv2.resize(cv2.imread(f), (0, 0), fx=s, fy=s)[..., ::-1]`, C-contiguous RGB bytes,
# from opencv-python-headless 4.11.0.86 (the environment of tests/fixtures/imagenet_c/README.md), 2026-12-06
CV2_FROST = {
    0.2: ("0feecc052950beb9", "3c026bc788b20cc9", "3c026bc788b20cc9", "9e396e6c26332940", "a0e95c89d7551746"),
    0.3: ("2392b7aa0804f235", "9aba29d54a4dff9a", "9aba29d54a4dff9a", "573aff74bb556e1f", "7ab3601780c82a19"),
}


@pytest.mark.parametrize("scale", CV2_FROST)
def test_frost_photographs_are_scaled_as_opencv_scales_them(scale: float) -> None:
    """cifar-c and tiny-imagenet-c crop frost from photographs shrunk by `cv2.resize` (bilinear, 11-bit fixed point)."""
    for index, expected in enumerate(CV2_FROST[scale]):
        scaled = np.ascontiguousarray(C._frost_image(index, scale).astype(np.uint8))
        assert hashlib.sha256(scaled.tobytes()).hexdigest()[:16] == expected, C._FROST_FILES[index]
