"""Seconds per image per severity of every corruption of every corruption set: this checkout against an old copy
and/or against the hendrycks script that made the set (`make_imagenet_c.py`, `make_cifar_c.py`, ...) itself.

    python benchmarks/corruption_speed.py --sets all --corruptions all [--images 3] [--repeats 3] [--size N]
        [--baseline-src OLD/timm_assemble/evaluation/corruptions.py]
        [--reference-dir CREATE_C --reference-python REFVENV/bin/python]

(CREATE_C: the scripts, from a clone of https://github.com/hendrycks/robustness, e.g. `for f in make_imagenet_c
make_cifar_c make_tinyimagenet_c make_imagenet_c_inception; do git -C robustness show
HEAD:ImageNet-C/create_c/$f.py > CREATE_C/$f.py; done`; REFVENV: a venv as in tests/fixtures/imagenet_c/README.md.)
Each set runs on images of its own resolution (`--size` overrides).
The baseline module is loaded from its file path (importlib), so any old checkout works as long as its
`corrupt(image, name, severity, seed)` has today's signature (for a set other than imagenet-c, with the set as a
fifth argument). The reference needs its own environment (numpy < 2, scikit-image 0.20, OpenCV, Wand): this script
re-runs itself under `--reference-python` as a worker process per set, where `benchmarks/corruption_reference.py`
loads the set's script unmodified and the same images (a .npy file);
it times each call it is sent and answers with the seconds. All implementations run on the same images and
seeds, interleaved block by block (one block: one implementation, one corruption, all images and severities; the
blocks of a repeat in a fresh random order), so machine load hits them alike while each runs warm, as in a real run.
Images are natural-looking (smoothed noise with edges, fixed seed). Each cell is the median over repeats of the mean
over images and severities 1-5. Run it on an otherwise idle machine.
"""

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

Corrupt = Callable[[np.ndarray, str, int, int], np.ndarray]


def load_baseline(path: Path) -> Corrupt:
    """The old corruptions module's `corrupt`, imported by file path inside this package (relative imports resolve)."""
    import importlib.util

    from timm_assemble.evaluation import corruptions

    spec = importlib.util.spec_from_file_location("timm_assemble.evaluation._baseline_corruptions", path)
    if spec is None or spec.loader is None:
        sys.exit(f"error: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "_FROST_DIR") or not module._FROST_DIR.is_dir():
        module._FROST_DIR = corruptions._FROST_DIR  # an old copy outside a checkout: use our frost photographs
    return module.corrupt


def test_images(count: int, size: int) -> np.ndarray:
    """Smooth colour fields with hard edges: not flat, not white noise (both are unfair to some corruptions)."""
    import scipy.ndimage as ndi

    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        field = ndi.gaussian_filter(rng.random((size, size, 3)), (6, 6, 0))
        field = (field - field.min()) / (field.max() - field.min())
        field[size // 3 : size // 2, :, 0] = 1.0
        images.append((field * 255).astype(np.uint8))
    return np.stack(images)


Timer = Callable[[int, str, int, int], float]  # (image index, corruption, severity, seed) -> seconds


def in_process(corrupt: Corrupt, images: np.ndarray) -> Timer:
    def timer(index: int, name: str, severity: int, seed: int) -> float:
        start = time.perf_counter()
        corrupt(images[index], name, severity, seed)
        return time.perf_counter() - start

    return timer


class ReferenceWorker:
    """The reference in its own environment: a child process (this script, `--reference-worker`, under
    `--reference-python`) that runs and times each call it is sent, so its calls interleave with ours."""

    def __init__(self, args: argparse.Namespace, script: Path, images_path: Path) -> None:
        command = [str(args.reference_python), __file__, "--reference-worker", str(images_path)]
        command += ["--reference-src", str(script)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self, index: int, name: str, severity: int, seed: int) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{index} {name} {severity} {seed}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            sys.exit(f"error: the reference worker stopped (exit {self.process.wait()}) at {name} severity {severity}")
        return float(answer)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()


def serve_reference(args: argparse.Namespace) -> None:
    """Worker side: time the reference on each `index name severity seed` line of stdin, answer on stdout."""
    from corruption_reference import load  # this script's folder is on sys.path

    answers, sys.stdout = sys.stdout, sys.stderr  # whatever the reference prints stays off the answers
    timer = in_process(load(args.reference_src.resolve()), np.load(args.reference_worker))
    for line in sys.stdin:
        index, name, severity, seed = line.split()
        print(timer(int(index), name, int(severity), int(seed)), file=answers, flush=True)


def seconds(timers: list[Timer], names: list[str], count: int, repeats: int) -> list[dict[str, float]]:
    """Per implementation, corruption -> seconds per image per severity. Each repeat runs every implementation on
    all images and severities in one block (warm, as in a real run), the blocks in a fresh random order."""
    for timer in timers:  # warm caches (frost photographs, lazy imports)
        for name in names:
            timer(0, name, 1, 0)
    out: list[dict[str, float]] = [{} for _ in timers]
    order, turns = random.Random(0), list(range(len(timers)))
    for name in names:
        runs: list[list[float]] = [[] for _ in timers]
        for _ in range(repeats):
            order.shuffle(turns)
            for k in turns:
                spent = sum(
                    timers[k](i, name, severity, 100 * i + severity) for i in range(count) for severity in range(1, 6)
                )
                runs[k].append(spent / (count * 5))
        for k in range(len(timers)):
            out[k][name] = statistics.median(runs[k])
    return out


def print_table(
    set_name: str, size: int, names: list[str], ours: dict, baseline: dict | None, reference: dict | None, args
) -> None:
    """Markdown table: one row per corruption and the total; ratios > 1 mean this checkout is faster."""
    print(
        f"\n{set_name}: seconds per image per severity, {size} px, median of {args.repeats} repeats over "
        f"{args.images} images x severities 1-5\n"
    )
    header = ["corruption", "this checkout"]
    header += ["baseline", "baseline / this"] if baseline else []
    header += ["reference", "reference / this"] if reference else []
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    columns = [{**d, "total": sum(d[n] for n in names)} if d else None for d in (ours, baseline, reference)]
    for name in [*names, "total"]:
        cells = [name, f"{columns[0][name]:.4f}"]
        for other in columns[1:]:
            cells += [f"{other[name]:.4f}", f"{other[name] / columns[0][name]:.2f}x"] if other else []
        print("| " + " | ".join(cells if name != "total" else [f"**{c}**" for c in cells]) + " |")


def time_set(args: argparse.Namespace, corruption_set, names: list[str], baseline: Corrupt | None) -> None:
    """One set's table: this checkout, the baseline (if any) and the set's own script (if `--reference-dir`)."""
    from functools import partial

    from timm_assemble.evaluation import corruptions

    size = args.size or corruption_set.resolution
    images = test_images(args.images, size)
    extra = () if corruption_set.name == "imagenet-c" else (corruption_set.name,)
    timers = [in_process(partial(corruptions.corrupt, corruption_set=corruption_set), images)]
    timers += [in_process(lambda *a: baseline(*a, *extra), images)] if baseline else []
    with tempfile.TemporaryDirectory() as tmp:
        reference = None
        if args.reference_dir:
            np.save(Path(tmp) / "images.npy", images)
            reference = ReferenceWorker(args, args.reference_dir / corruption_set.script, Path(tmp) / "images.npy")
            timers.append(reference)
        try:
            timed = seconds(timers, names, len(images), args.repeats)
        finally:
            if reference is not None:
                reference.close()
    print_table(
        corruption_set.name,
        size,
        names,
        timed[0],
        timed[1] if baseline else None,
        timed[-1] if reference else None,
        args,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, help="an old corruptions.py")
    parser.add_argument("--reference-dir", type=Path, help="hendrycks' ImageNet-C/create_c: the sets' make_*_c.py")
    parser.add_argument("--reference-src", type=Path, help=argparse.SUPPRESS)  # internal: the worker's script
    parser.add_argument("--reference-python", type=Path, default=Path(sys.executable), help="its interpreter")
    parser.add_argument("--sets", default="all", help="corruption sets, comma-separated, or all (default)")
    parser.add_argument("--corruptions", default="common", help="names or groups (default: the 15 common)")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, help="image side (default: each set's own resolution)")
    parser.add_argument("--reference-worker", type=Path, help=argparse.SUPPRESS)  # internal: the reference half
    args = parser.parse_args()
    if args.reference_worker:
        serve_reference(args)
        return
    if args.baseline_src is not None and not args.baseline_src.is_file():
        sys.exit(f"error: --baseline-src {args.baseline_src} is not a file")
    if args.baseline_src is None and args.reference_dir is None:
        sys.exit("error: give --baseline-src and/or --reference-dir")
    from timm_assemble.errors import TimmAssembleError
    from timm_assemble.evaluation import corruptions
    from timm_assemble.evaluation.corruption_sets import CORRUPTION_SETS, resolve_corruption_set

    try:
        sets = (
            list(CORRUPTION_SETS.values())
            if args.sets == "all"
            else [resolve_corruption_set(name.strip()) for name in args.sets.split(",")]
        )
        names = corruptions.parse_corruptions(args.corruptions)
    except TimmAssembleError as err:
        sys.exit(f"error: {err}")
    if args.reference_dir is not None:
        missing = [s.script for s in sets if not (args.reference_dir / s.script).is_file()]
        if missing:
            sys.exit(f"error: --reference-dir {args.reference_dir} lacks {', '.join(missing)}")
        if args.size:
            sys.exit("error: each reference script works on its own resolution only (leave out --size)")
    baseline = load_baseline(args.baseline_src) if args.baseline_src else None
    for corruption_set in sets:
        time_set(args, corruption_set, names, baseline)


if __name__ == "__main__":
    main()
