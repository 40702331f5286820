"""hendrycks' `make_imagenet_c.py` (the code that made ImageNet-C), run unmodified as a library: the one harness
behind `tests/fixtures/imagenet_c/reference.npz` and the reference column of `benchmarks/corruption_speed.py`.

It needs the reference's own environment (numpy < 2, scikit-image 0.20, OpenCV, Wand on ImageMagick 6, scipy,
matplotlib, Pillow) and imports nothing from timm_assemble, so it runs in a venv without it. The reference
file is not part of this repository; write it anywhere, e.g. from the fetched snapshot:

    git -C /work/.mirror/hendrycks+robustness/repo show HEAD:ImageNet-C/create_c/make_imagenet_c.py > /tmp/mic.py
    /work/refvenv/bin/python benchmarks/imagenet_c_reference.py --reference-src /tmp/mic.py OUT.npz

writes the fixture (see tests/fixtures/imagenet_c/README.md for what it holds). How the file runs unmodified:
its text up to `# /////////////// Further Setup` is executed (not the dataset-writing loop), with empty
stand-ins for torch and torchvision (only its data loader uses them); its `np.random` calls and
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
STOP = "# /////////////// Further Setup"
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
        sys.exit(f"error: {src} is not make_imagenet_c.py (no {STOP!r} line)")
    stubs = "torch", "torch.utils", "torch.utils.data", "torchvision", "torchvision.datasets", "torchvision.transforms"
    saved = {name: sys.modules.get(name) for name in stubs}
    torch, utils, data = (types.ModuleType(name) for name in stubs[:3])
    torch.utils, utils.data, data.Dataset = utils, data, object
    sys.modules.update(zip(stubs, (torch, utils, data, *(types.ModuleType(name) for name in stubs[3:])), strict=True))
    namespace = {"__name__": "make_imagenet_c"}
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


def fixture_images() -> numpy.ndarray:
    """scikit-image's astronaut, coffee and chelsea at ImageNet-C's geometry (shorter side 256 bilinear, centre 224)."""
    import skimage.data
    from PIL import Image

    out = []
    for sample in (skimage.data.astronaut, skimage.data.coffee, skimage.data.chelsea):
        img = Image.fromarray(sample()).convert("RGB")
        scale = 256 / min(img.size)
        img = img.resize((round(img.size[0] * scale), round(img.size[1] * scale)), Image.BILINEAR)
        left, top = (img.size[0] - 224) // 2, (img.size[1] - 224) // 2
        out.append(numpy.asarray(img.crop((left, top, left + 224, top + 224))))
    return numpy.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-src", type=Path, required=True, help="make_imagenet_c.py")
    parser.add_argument("output", type=Path, help="the .npz to write (must not exist)")
    args = parser.parse_args()
    if args.output.exists():
        sys.exit(f"error: {args.output} exists")
    output = args.output.resolve()  # load() changes the working directory
    corrupt, images = load(args.reference_src.resolve()), fixture_images()
    rows = numpy.unique(numpy.r_[0:224:4, 223])
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
