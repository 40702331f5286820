"""Seconds per image per severity of every ImageNet-C corruption, this checkout against a baseline copy.

    python benchmarks/corruption_speed.py --baseline-src /path/to/old/timm_assemble/evaluation/corruptions.py
        [--corruptions common] [--images 3] [--repeats 3] [--size 224]

The baseline module is loaded from its file path (importlib), so any old checkout works as long as its
`corrupt(image, name, severity, seed)` has today's signature. Both run in this one process, interleaved
call by call (new, old, new, old, ...) on the same natural-looking images (smoothed noise with edges,
fixed seed) and seeds, so machine load hits both alike. Each cell is the median over repeats of the mean
over images and severities 1-5. Run it on an otherwise idle machine.
"""

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from timm_assemble.evaluation import corruptions


def load_baseline(path: Path) -> ModuleType:
    """The old corruptions module, imported by file path inside this package (its relative imports resolve)."""
    spec = importlib.util.spec_from_file_location("timm_assemble.evaluation._baseline_corruptions", path)
    if spec is None or spec.loader is None:
        sys.exit(f"error: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "_FROST_DIR") or not module._FROST_DIR.is_dir():
        module._FROST_DIR = corruptions._FROST_DIR  # an old copy outside a checkout: use our frost photographs
    return module


def test_images(count: int, size: int) -> list[np.ndarray]:
    """Smooth colour fields with hard edges: not flat, not white noise (both are unfair to some corruptions)."""
    import scipy.ndimage as ndi

    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        field = ndi.gaussian_filter(rng.random((size, size, 3)), (6, 6, 0))
        field = (field - field.min()) / (field.max() - field.min())
        field[size // 3 : size // 2, :, 0] = 1.0
        images.append((field * 255).astype(np.uint8))
    return images


def time_call(module: ModuleType, image: np.ndarray, name: str, severity: int, seed: int) -> float:
    start = time.perf_counter()
    module.corrupt(image, name, severity, seed)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, required=True, help="an old corruptions.py")
    parser.add_argument("--corruptions", default="common", help="names or groups (default: the 15 common)")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    if not args.baseline_src.is_file():
        sys.exit(f"error: --baseline-src {args.baseline_src} is not a file")
    baseline = load_baseline(args.baseline_src)
    names = corruptions.parse_corruptions(args.corruptions)
    images = test_images(args.images, args.size)
    for module in (corruptions, baseline):  # warm caches (frost photographs, lazy imports)
        for name in names:
            module.corrupt(images[0], name, 1, 0)
    print(
        f"seconds per image per severity, {args.size} px, median of {args.repeats} repeats over "
        f"{args.images} images x severities 1-5\n"
    )
    print("| corruption | this checkout | baseline | speed-up |")
    print("|---|---|---|---|")
    totals = [0.0, 0.0]
    for name in names:
        runs: list[list[float]] = [[], []]
        for _ in range(args.repeats):
            spent = [0.0, 0.0]
            for i, image in enumerate(images):
                for severity in range(1, 6):
                    for k, module in enumerate((corruptions, baseline)):
                        spent[k] += time_call(module, image, name, severity, 100 * i + severity)
            for k in (0, 1):
                runs[k].append(spent[k] / (len(images) * 5))
        new, old = statistics.median(runs[0]), statistics.median(runs[1])
        totals[0] += new
        totals[1] += old
        print(f"| {name} | {new:.4f} | {old:.4f} | {old / new:.2f}x |")
    print(f"| **total** | **{totals[0]:.3f}** | **{totals[1]:.3f}** | **{totals[1] / totals[0]:.2f}x** |")


if __name__ == "__main__":
    main()
