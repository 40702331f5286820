"""Seconds to discover an ImageNet-shaped folder: our scan (`scan_image_folder`, the rules of every command) against
timm's folder reader (`timm.data.readers.reader_image_folder.find_images_and_targets`) on the same tree.

    python benchmarks/data_discovery.py [--classes 1000] [--files 200000] [--repeats 5] [--root DIR]

The tree (`<classes>` folders of empty `.JPEG` files, ImageNet's names `n0000xxxx_<i>.JPEG`) is built in a temporary
folder (or `--root`, kept for later runs) and removed afterwards. The two readers alternate, in a fresh random order
each repeat, so machine load and the page cache hit them alike (a first untimed pass of each warms the cache: a launch
scans a warm tree after the first epoch of any earlier run). Both must find the same files; the table gives each
one's median, min and the ratio ours / timm's. Run it on an otherwise idle machine.
"""

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def build_tree(root: Path, classes: int, files: int) -> None:
    """`classes` class folders sharing `files` empty images (ImageNet's naming), skipped when already built."""
    marker = root / f".built-{classes}-{files}"
    if marker.exists():
        return
    per_class, extra = divmod(files, classes)
    for c in range(classes):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class + (c < extra)):
            (folder / f"n{c:08d}_{i}.JPEG").touch()
    marker.touch()


def readers() -> dict[str, Callable[[Path], int]]:
    """Each reader's scan of a tree, returning how many images it found."""
    from timm.data.readers.reader_image_folder import find_images_and_targets

    from timm_assemble.data.images import scan_image_folder

    return {
        "ours": lambda root: len(scan_image_folder(root).samples),
        "timm": lambda root: len(find_images_and_targets(str(root))[0]),
    }


def measure(root: Path, repeats: int) -> dict[str, list[float]]:
    scans = readers()
    found = {name: scan(root) for name, scan in scans.items()}  # warm-up, and both must agree
    if len(set(found.values())) != 1:
        sys.exit(f"error: the readers found different image counts: {found}")
    times: dict[str, list[float]] = {name: [] for name in scans}
    order = random.Random(0)
    for _ in range(repeats):
        names = list(scans)
        order.shuffle(names)
        for name in names:
            start = time.perf_counter()
            scans[name](root)
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--root", type=Path, default=None, help="build (or reuse) the tree here and keep it")
    args = parser.parse_args()
    if args.classes < 1 or args.files < args.classes or args.repeats < 1:
        parser.error("need --classes >= 1, --files >= --classes and --repeats >= 1")
    root = args.root or Path(tempfile.mkdtemp(prefix="data-discovery-"))
    try:
        start = time.perf_counter()
        build_tree(root, args.classes, args.files)
        built = time.perf_counter() - start
        print(f"tree: {args.classes} classes, {args.files} files in {root} (built in {built:.1f} s)")
        times = measure(root, args.repeats)
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(times["timm"])
    print(f"\n| reader | median s | min s | ratio to timm | ({args.repeats} repeats, interleaved)")
    print("|---|---|---|---|")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"| {name} | {median:.3f} | {min(runs):.3f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
