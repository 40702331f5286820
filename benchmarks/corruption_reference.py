"""hendrycks' corruption generators (`make_imagenet_c.py`, `make_cifar_c.py`, `make_tinyimagenet_c.py`,
`make_imagenet_c_inception.py`: the code that made ImageNet-C, CIFAR-10-C, Tiny-ImageNet-C and ImageNet-C at 299 px),
run unmodified as a library: the one harness behind `tests/fixtures/<set>/reference.npz` and the reference column
of `benchmarks/corruption_speed.py`.

It needs the reference's own environment (numpy < 2, scikit-image 0.20, OpenCV, Wand on ImageMagick 6, scipy,
matplotlib, Pillow) and imports nothing from timm_assemble, so it runs in a venv without it. The reference
files are not part of this repository; take them from a clone of https://github.com/hendrycks/robustness, e.g.:

    git -C robustness show HEAD:ImageNet-C/create_c/make_cifar_c.py > mcc.py
    REFVENV/bin/python benchmarks/corruption_reference.py --set cifar-c --reference-src mcc.py OUT.npz

writes the set's fixture (see tests/fixtures/<set>/README.md for what it holds). How a file runs unmodified:
its text up to `# /////////////// End Distortions` is executed (not the dataset-writing code after it), with
empty stand-ins for torch and torchvision (only their data loaders use them); its `np.random` calls and
`sk.util.random_noise` draw from one `numpy.random.Generator`, seeded per call as our `corrupt(..., seed)`;
scikit-image 0.19's translation of the removed `multichannel=True` to `channel_axis=-1`; `frost` reads the
photographs from `timm_assemble/evaluation/frost/` (byte-identical to the reference's five).
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy

FROST_DIR = Path(__file__).resolve().parents[1] / "timm_assemble" / "evaluation" / "frost"
STOP = "# /////////////// End Distortions"
# set -> (generator file, image side, fixture row step): the sets of timm_assemble.evaluation.corruption_sets
SETS = {
    "imagenet-c": ("make_imagenet_c.py", 224, 4),
    "cifar-c": ("make_cifar_c.py", 32, 2),
    "tiny-imagenet-c": ("make_tinyimagenet_c.py", 64, 4),
    "imagenet-c-inception": ("make_imagenet_c_inception.py", 299, 16),
}
# the order of timm_assemble.evaluation.corruptions.ALL_CORRUPTIONS, whose index enters the fixture's seeds
NAMES = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)  # fmt: skip


class _Random:
    """The reference's `np.random.normal / uniform / poisson / randint`, drawn from `rng` (set per call)."""

    rng: numpy.random.Generator

    def normal(self, loc=0.0, scale=1.0, size=None):
        return self.rng.normal(loc, scale, size)

    def uniform(self, low=0.0, high=1.0, size=None):
        return self.rng.uniform(low, high, size)

    def poisson(self, lam=1.0, size=None):
        return self.rng.poisson(lam, size)

    def randint(self, low, high=None, size=None):
        return self.rng.integers(low, high, size)


def _execute(src: Path) -> dict:
    """The reference file's namespace: its text up to the dataset loop, torch and torchvision stubbed while it runs."""
    text = src.read_text()
    if STOP not in text:
        sys.exit(f"error: {src} is not one of hendrycks' make_*_c.py (no {STOP!r} line)")
    stubs = "torch", "torch.utils", "torch.utils.data", "torchvision", "torchvision.datasets", "torchvision.transforms"
    saved = {name: sys.modules.get(name) for name in stubs}
    torch, utils, data = (types.ModuleType(name) for name in stubs[:3])
    torch.utils, utils.data, data.Dataset = utils, data, object
    sys.modules.update(zip(stubs, (torch, utils, data, *(types.ModuleType(name) for name in stubs[3:])), strict=True))
    namespace = {"__name__": src.stem}
    try:
        exec(compile(text[: text.index(STOP)], str(src), "exec"), namespace)
    finally:  # scipy probes sys.modules["torch"]: the stubs must not outlive the import
        for name, module in saved.items():
            sys.modules.pop(name) if module is None else sys.modules.__setitem__(name, module)
    return namespace


def load(src: Path) -> Callable[[numpy.ndarray, str, int, int], numpy.ndarray]:
    """`corrupt(image, name, severity, seed) -> uint8`: the reference function `name` on an RGB uint8 array, its
    random numbers from `numpy.random.default_rng(seed)`, cast as `DistortImageFolder` casts before saving."""
    import skimage.color
    import skimage.util
    from PIL import Image

    namespace, shim = _execute(src), _Random()
    gaussian = namespace["gaussian"]

    def gaussian_019(image, *args, multichannel=False, **kwargs):
        return gaussian(image, *args, channel_axis=-1 if multichannel else None, **kwargs)

    class Numpy(types.ModuleType):
        random = shim

        def __getattr__(self, name):
            return getattr(numpy, name)

    noise = skimage.util.random_noise
    namespace["gaussian"], namespace["np"] = gaussian_019, Numpy("numpy")
    namespace["sk"] = types.SimpleNamespace(
        util=types.SimpleNamespace(random_noise=lambda *a, **k: noise(*a, seed=shim.rng, **k)), color=skimage.color
    )
    warnings.simplefilter("ignore")
    os.chdir(FROST_DIR)  # frost() opens ./frostN.*

    def corrupt(image: numpy.ndarray, name: str, severity: int, seed: int) -> numpy.ndarray:
        shim.rng = numpy.random.default_rng(seed)
        return numpy.uint8(namespace[name](Image.fromarray(image), severity))

    return corrupt


def fixture_images(side: int) -> numpy.ndarray:
    """scikit-image's astronaut, coffee and chelsea at `side` px: ImageNet-C's geometry at 224 (shorter side 256
    bilinear, centre 224), otherwise shorter side `side` (bilinear, antialiased), centre `side` x `side`."""
    import skimage.data
    from PIL import Image

    out = []
    for sample in (skimage.data.astronaut, skimage.data.coffee, skimage.data.chelsea):
        img = Image.fromarray(sample()).convert("RGB")
        scale = (256 if side == 224 else side) / min(img.size)
        img = img.resize((round(img.size[0] * scale), round(img.size[1] * scale)), Image.BILINEAR)
        left, top = (img.size[0] - side) // 2, (img.size[1] - side) // 2
        out.append(numpy.asarray(img.crop((left, top, left + side, top + side))))
    return numpy.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=SETS, default="imagenet-c", help="the corruption set (default: imagenet-c)")
    parser.add_argument("--reference-src", type=Path, required=True, help="the set's make_*_c.py")
    parser.add_argument("output", type=Path, help="the .npz to write (must not exist)")
    args = parser.parse_args()
    script, side, step = SETS[args.set]
    if args.reference_src.name != script:
        print(f"note: {args.set} is made by {script}; running {args.reference_src}", file=sys.stderr)
    if args.output.exists():
        sys.exit(f"error: {args.output} exists")
    output = args.output.resolve()  # load() changes the working directory
    corrupt, images = load(args.reference_src.resolve()), fixture_images(side)
    rows = numpy.unique(numpy.r_[0:side:step, side - 1])
    arrays = {"images": images, "rows": rows}
    for number, name in enumerate(NAMES):
        out = numpy.zeros((len(images), 5, len(rows), len(rows), 3), numpy.uint8)
        for i, img in enumerate(images):
            for s in range(1, 6):
                out[i, s - 1] = corrupt(img, name, s, 1000 * i + 10 * number + s)[rows][:, rows]
        arrays[name] = out
        print(name, flush=True)
    numpy.savez_compressed(output, **arrays)


if __name__ == "__main__":
    main()
