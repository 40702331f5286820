"""Error under the ImageNet-C corruptions, corruption error (CE), mCE and relative mCE.

CE of a corruption = the model's errors summed over severities / the reference's summed errors;
relative CE = the same over (error - clean error) (Hendrycks & Dietterich, ICLR 2019). The reference
(`reference_errors`) is a `--baseline` model scored on exactly the same corrupted images, or else the
published errors of the benchmark whose clean data this is, under its own corruption set: AlexNet's for
ImageNet under imagenet-c, RobustBench Standard's for CIFAR-10 under cifar-c. Images come either from pre-corrupted
folders (`--imagenet-c DIR`: ImageNet-C's DIR/<corruption>/<severity>/<class>/<image>, or CIFAR-10-C /
CIFAR-100-C's DIR/<corruption>.npy + DIR/labels.npy) or are corrupted on the fly, deterministically per
--seed, and go through the encoding their set's files went through (JPEG quality 85; none for CIFAR-C).

The corruptions are those of a corruption set (`--corruption-set`; `corruption_sets`): ImageNet-C's at
224 px, CIFAR-10-C's at 32, Tiny-ImageNet-C's at 64, ImageNet-C's Inception variant at 299, each with the
constants of the script that made that benchmark. By default the set whose resolution matches the data's
images (their median shorter side). On the fly, `--geometry corruption-set` (the default) makes the
images as the set's benchmark was made (ImageNet-C: shorter side 256, bilinear, centre crop 224; CIFAR-C:
32 px as they are), corrupts them there, and the model sees that image as it sees a file of the benchmark
(unchanged at its input size, else resized and centre-cropped to it); clean images take the same path
without the corruption. Numbers normalised by published errors are only comparable with them this way.
`--geometry model-input` corrupts the model's own eval resize/crop at its input size instead.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.datasets import split_folder
from ..errors import TimmAssembleError
from ..fileio import atomic_path
from .corruption_sets import CorruptionSet, resolve_corruption_set, set_for_resolution
from .corruptions import ALL_CORRUPTIONS, COMMON_CORRUPTIONS, corrupt, parse_corruptions, parse_severities
from .data import (
    ImageListDataset,
    NpyCorruptionFolder,
    images_shorter_side,
    index_image_folder,
    is_npy_corruption_folder,
    limit_samples,
    make_loader,
    resize_crop,
)
from .model import create_eval_model, model_data_config, model_from_options
from .options import EvalOptions, eval_options, resolve_device
from .reference_errors import ReferenceErrors, benchmark_dataset, published_reference
from .scoring import Scorer, Shard, run_scorers

GEOMETRIES = ("corruption-set", "model-input")
_ON_SAME = "CE relative to the baseline model on the same corrupted images"


class _CorruptedView:
    """Picklable per-image transform: geometry -> corruption of `corruption_set` -> JPEG round trip -> `after`."""

    def __init__(
        self, geometry, corruption: str, severity: int, seed: int, keys: list[int], jpeg_quality: int, after,
        corruption_set: str = "imagenet-c",
    ):  # fmt: skip
        self.geometry, self.corruption, self.severity = geometry, corruption, severity
        self.seed, self.keys, self.jpeg_quality, self.after = seed, keys, jpeg_quality, after
        self.corruption_id, self.corruption_set = ALL_CORRUPTIONS.index(corruption), corruption_set

    def __call__(self, img: Image.Image, index: int) -> Image.Image:
        rng = np.random.default_rng([self.seed, self.corruption_id, self.severity, self.keys[index]])
        out = corrupt(self.geometry(img), self.corruption, self.severity, rng, self.corruption_set)
        out = Image.fromarray(out)
        if self.jpeg_quality:
            buf = io.BytesIO()
            out.save(buf, "JPEG", quality=self.jpeg_quality)
            buf.seek(0)
            with Image.open(buf) as decoded:
                out = decoded.convert("RGB")
        return out if self.after is None else self.after(out, index)


class _Geometry:
    """Picklable wrapper: apply a transform (then `after`, if any), ignore the index."""

    def __init__(self, transform, after=None):
        self.transform, self.after = transform, after

    def __call__(self, img: Image.Image, index: int) -> Image.Image:
        out = self.transform(img)
        return out if self.after is None else self.after(out, index)


def set_crop(corruption_set: str | CorruptionSet = "imagenet-c") -> Callable[[Image.Image], Image.Image]:
    """A corruption set's geometry, what gets corrupted: ImageNet-C's is make_imagenet_c.py's
    `trn.Resize(256), trn.CenterCrop(224)`; a 32 px image stays as it is for cifar-c."""
    from torchvision import transforms

    cs = resolve_corruption_set(corruption_set)
    return transforms.Compose(
        [transforms.Resize(cs.resize, transforms.InterpolationMode.BILINEAR), transforms.CenterCrop(cs.resolution)]
    )


class _FitToInput:
    """Pre-corrupted (already cropped) images: resize + centre-crop to the input size only if they differ."""

    def __init__(self, size: tuple[int, int], interpolation: str):
        from timm.data.transforms import str_to_interp_mode
        from torchvision import transforms

        self.size = size  # (h, w)
        self.transform = transforms.Compose(
            [transforms.Resize(min(size), interpolation=str_to_interp_mode(interpolation)), transforms.CenterCrop(size)]
        )

    def __call__(self, img: Image.Image, index: int) -> Image.Image:
        return img if (img.height, img.width) == self.size else self.transform(img)


def _images_side(
    samples: list[tuple[str, int]] | None, npy: NpyCorruptionFolder | None, imagenet_c: str | None, name: str,
    severity: int, num_classes: int,
) -> int:  # fmt: skip
    """The shorter side of the data's images: the clean ones if given, else the pre-corrupted ones."""
    if samples is not None:
        return images_shorter_side([path for path, _ in samples])
    if npy is not None:
        return npy.shorter_side(name)
    what = f"ImageNet-C folder for {name} severity {severity}"
    index = index_image_folder(f"{imagenet_c}/{name}/{severity}", num_classes, what=what)
    return images_shorter_side([path for path, _ in index.samples])


def _off_protocol(cs: CorruptionSet, geometry: str, jpeg_quality: int) -> str:
    """How images corrupted on the fly differ from the files of the set's benchmark ('' if they do not): published
    errors were measured on those files."""
    if geometry != "corruption-set":
        return f"--geometry {geometry} corrupts the model's eval crop, not the set's images"
    if jpeg_quality != cs.jpeg_quality:
        stored = f"JPEG quality {cs.jpeg_quality}" if cs.jpeg_quality else "no JPEG"
        return f"--jpeg-quality {jpeg_quality} stores them otherwise than its files were ({stored})"
    return ""


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


def corruption_errors(
    errors: dict[str, dict[int, float]], reference: ReferenceErrors | None, why_none: str
) -> tuple[dict[str, float | None], str]:
    """CE per corruption (fraction, 1.0 = as bad as the reference, over the same severities) and a note: the
    reference's source, or why there is no CE (`why_none` when there is no reference)."""
    if reference is None:
        return {n: None for n in errors}, why_none
    ce: dict[str, float | None] = {}
    for name, per_sev in errors.items():
        base = reference.summed(name, sorted(per_sev))
        ce[name] = sum(per_sev.values()) / base if base else None
    if reference.means_only and any(sorted(per_sev) != [1, 2, 3, 4, 5] for per_sev in errors.values()):
        return ce, f"no CE: {reference.model} normalisation needs all severities 1-5 (only their mean is published)"
    unknown = ", ".join(n for n, v in ce.items() if v is None)
    if unknown and all(v is None for v in ce.values()):
        return ce, f"no CE: no {reference.model} errors for {unknown}"
    return ce, reference.source + (f"; no CE for {unknown}: no {reference.model} errors there" if unknown else "")


def relative_corruption_errors(
    errors: dict[str, dict[int, float]], clean_error: float | None, reference: ReferenceErrors | None
) -> dict[str, float | None]:
    """Relative CE per corruption: the error added by the corruption over the reference's added error, both
    summed over the same severities (a means-only reference's sum is 5 x its mean, all five severities)."""
    out: dict[str, float | None] = {}
    for name, per_sev in errors.items():
        base = None if reference is None else reference.summed(name, sorted(per_sev))
        if clean_error is None or base is None or reference.clean_error is None:
            out[name] = None
            continue
        added_by_reference = base - len(per_sev) * reference.clean_error
        added = sum(e - clean_error for e in per_sev.values())
        out[name] = added / added_by_reference if added_by_reference > 0 else None
    return out


def _scorers(opts: EvalOptions, baseline: str | None, dev: torch.device) -> list[Scorer]:
    """The model's scorer, then the baseline's if any: both see the same images (the model's geometry), each
    normalised its own way."""
    model = model_from_options(opts, opts.reset_classifier)
    data_config = model_data_config(model, opts.data_config_args(), opts.batch_size)
    scorers = [Scorer(model, data_config, dev, opts.amp_mode, opts.channels_last)]
    if baseline is not None:
        base_model = create_eval_model(baseline, opts.pretrained, opts.num_classes, None, opts.reset_classifier)
        if base_model.num_classes != model.num_classes:
            raise TimmAssembleError(
                f"baseline {baseline!r} predicts {base_model.num_classes} classes, the model {model.num_classes}"
            )
        base_config = {**model_data_config(base_model), **{k: data_config[k] for k in ("input_size", "crop_pct")}}
        scorers.append(Scorer(base_model, base_config, dev, opts.amp_mode, opts.channels_last))
    return scorers


def _pct(v: float | None) -> float | None:
    return None if v is None else round(100.0 * v, 4)


def _summarise(
    errors: dict[str, dict[int, float]], clean_error: float | None, reference: ReferenceErrors | None, why_none: str
) -> dict[str, Any]:
    """The normalised part of a result (%): CE and relative CE per corruption, mCE over the standard corruptions
    asked (all asked if none is), the 19-corruption mCE when all 19 ran, and which reference and why."""
    names = list(errors)
    ce, note = corruption_errors(errors, reference, why_none)
    relative = relative_corruption_errors(errors, clean_error, reference)
    reference = reference if any(v is not None for v in ce.values()) else None
    common = [n for n in names if n in COMMON_CORRUPTIONS] or names
    mce = _mean([ce[n] for n in common]) if all(ce[n] is not None for n in common) else None
    relative_mce = _mean([relative[n] for n in common]) if all(relative[n] is not None for n in common) else None
    all_19 = set(ALL_CORRUPTIONS) <= set(names) and all(ce[n] is not None for n in ALL_CORRUPTIONS)
    return {
        "ce": {n: _pct(v) for n, v in ce.items()},
        "ce_reference": None if reference is None else reference.name,
        "ce_reference_model": None if reference is None else reference.model,
        "ce_note": note,
        "mce": _pct(mce),
        "mce_over": common if mce is not None else [],
        "mce_is_standard_15": mce is not None and reference.published and set(COMMON_CORRUPTIONS) <= set(names),
        "mce_19": _pct(_mean([ce[n] for n in ALL_CORRUPTIONS])) if all_19 else None,
        "relative_ce": {n: _pct(v) for n, v in relative.items()},
        "relative_mce": _pct(relative_mce),
    }


def robustness(
    model_name: str,
    data_dir: str | None = None,
    *,
    imagenet_c: str | None = None,
    corruptions: str | list[str] = "common",
    severities: str | list[int] = "1-5",
    baseline: str | None = None,
    seed: int = 0,
    jpeg_quality: int | None = None,
    geometry: str = "corruption-set",
    corruption_set: str | None = None,
    shard: Shard | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Errors per corruption and severity, CE and relative CE per corruption, mCE (see the module docstring).

    `corruption_set` None: the set matching the data's images. `shard`: this process's share of the images when
    several evaluate together (`scoring.sharded_evaluation`); every process returns the whole result. `settings` are
    `EvalOptions` fields (weights, data config, batching, device, precision).
    """
    opts = eval_options(model_name, **settings)
    names = parse_corruptions(corruptions)
    sevs = parse_severities(severities)
    if data_dir is None and imagenet_c is None:
        raise TimmAssembleError("give --data-dir (corrupt on the fly) or --imagenet-c DIR (pre-corrupted folders)")
    if geometry not in GEOMETRIES:
        raise TimmAssembleError(f"--geometry must be one of {', '.join(GEOMETRIES)}, got {geometry!r}")
    if jpeg_quality is not None and not 0 <= jpeg_quality <= 100:
        raise TimmAssembleError(f"--jpeg-quality must be in 0..100 (0 = no JPEG round trip), got {jpeg_quality}")
    dev = resolve_device(opts.device) if shard is None else shard.device(resolve_device(opts.device))
    take = list if shard is None else shard.take  # this process's share of a list of images
    scorers = _scorers(opts, baseline, dev)
    data_config, n_classes = scorers[0].data_config, scorers[0].model.num_classes
    _, h, w = data_config["input_size"]
    fit = _FitToInput((h, w), data_config["interpolation"])  # how the model sees a file of the benchmark

    clean = None
    label_map = class_names = None
    split = None
    npy = (
        None
        if imagenet_c is None or not is_npy_corruption_folder(imagenet_c)
        else NpyCorruptionFolder(imagenet_c, n_classes)
    )
    if data_dir is not None:
        folder, split = split_folder(data_dir, opts.split)
        index = index_image_folder(folder, n_classes)
        label_map, class_names = index.label_map, index.class_names
        keyed = limit_samples(list(enumerate(index.samples)), opts.limit)
        keys, samples = [k for k, _ in keyed], [s for _, s in keyed]
    elif npy is not None:
        label_map = "labels.npy"
    if corruption_set is None:
        side = _images_side(samples if data_dir is not None else None, npy, imagenet_c, names[0], sevs[0], n_classes)
        cs, chosen = set_for_resolution(side), f"chosen by the data: images {side} px"
    else:
        cs, chosen = resolve_corruption_set(corruption_set), "chosen with --corruption-set"
    jpeg_quality = cs.jpeg_quality if jpeg_quality is None else jpeg_quality  # how the set's files were stored
    # what is corrupted, and what the model sees of it afterwards
    crop, after = (set_crop(cs), fit) if geometry == "corruption-set" else (resize_crop(data_config), None)
    shown = cs.geometry if geometry == "corruption-set" else f"the model's eval resize/crop to {h}x{w}, corrupted there"
    shown = shown if imagenet_c is None or data_dir is not None else None  # pre-corrupted files are as they are
    where = shown or f"the files of {imagenet_c} as they are"
    if shard is None or shard.rank == 0:
        print(f"corruption set {cs.name} ({cs.benchmarks}; {cs.script}), {chosen}; geometry: {where}", file=sys.stderr)
    if data_dir is not None:
        samples, keys = take(samples), take(keys)  # each image keeps its key: corrupted as in one process
        loader = make_loader(ImageListDataset(samples, _Geometry(crop, after)), opts.batch_size, opts.workers)
        clean = run_scorers(loader, scorers, "clean", shard)

    errors: dict[str, dict[int, float]] = {n: {} for n in names}
    base_errors: dict[str, dict[int, float]] | None = {n: {} for n in names} if baseline else None
    num_images: dict[str, dict[int, int]] = {n: {} for n in names}
    for name in names:
        for sev in sevs:
            if npy is not None:
                dataset = npy.dataset(name, sev, opts.limit, fit, take)
            elif imagenet_c is not None:
                folder = f"{imagenet_c}/{name}/{sev}"
                idx = index_image_folder(folder, n_classes, what=f"ImageNet-C folder for {name} severity {sev}")
                label_map, class_names = label_map or idx.label_map, class_names or idx.class_names
                dataset = ImageListDataset(take(limit_samples(idx.samples, opts.limit)), fit)
            else:
                view = _CorruptedView(crop, name, sev, seed, keys, jpeg_quality, after, cs.name)
                dataset = ImageListDataset(samples, view)
            loader = make_loader(dataset, opts.batch_size, opts.workers)
            results = run_scorers(loader, scorers, f"{name} s{sev}", shard)
            errors[name][sev] = results[0]["error"]
            num_images[name][sev] = results[0]["num_images"]
            if base_errors is not None:
                base_errors[name][sev] = results[1]["error"]

    if base_errors is not None:
        base_clean = None if clean is None else clean[1]["error"]
        reference: ReferenceErrors | None = ReferenceErrors("baseline", baseline, base_errors, base_clean, _ON_SAME)
        why_none = ""
    else:
        dataset_name = benchmark_dataset(label_map, class_names, n_classes)
        off = "" if imagenet_c is not None else _off_protocol(cs, geometry, jpeg_quality)
        reference, why_none = published_reference(dataset_name, cs.name, off)
    return {
        "model": model_name,
        "baseline": baseline,
        "source": ("cifar-c .npy files" if npy else "imagenet-c folders") if imagenet_c else "on-the-fly",
        "corruption_set": cs.name,
        "corruption_set_chosen": chosen,
        "geometry": None if shown is None else cs.name if geometry == "corruption-set" else geometry,
        "geometry_detail": shown,
        "data_dir": data_dir,
        "split": split,
        "imagenet_c": imagenet_c,
        "seed": seed if imagenet_c is None else None,
        "jpeg_quality": jpeg_quality if imagenet_c is None else None,
        "label_map": label_map,
        "input_size": list(data_config["input_size"]),
        "crop_pct": data_config["crop_pct"],
        "corruptions": names,
        "severities": sevs,
        "clean_top1": None if clean is None else round(clean[0]["top1"], 4),
        "clean_error": None if clean is None else _pct(clean[0]["error"]),
        "baseline_clean_error": _pct(clean[1]["error"]) if clean is not None and baseline else None,
        "num_images": num_images,
        "error": {n: {str(s): _pct(e) for s, e in per.items()} for n, per in errors.items()},
        "mean_error": {n: _pct(_mean(list(per.values()))) for n, per in errors.items()},
        "baseline_error": None
        if base_errors is None
        else {n: {str(s): _pct(e) for s, e in per.items()} for n, per in base_errors.items()},
        **_summarise(errors, None if clean is None else clean[0]["error"], reference, why_none),
    }


def format_table(result: dict[str, Any]) -> str:
    """Errors (%) per corruption and severity, mean error and CE, then the summary line."""
    sevs = result["severities"]
    head = f"{'corruption':<18}" + "".join(f"{'s' + str(s):>7}" for s in sevs) + f"{'mean':>8}{'CE':>8}{'rel CE':>8}"
    lines = [f"split '{result['split']}' of {result['data_dir']}"] if result.get("split") else []
    geometry = f"; geometry: {result['geometry_detail']}" if result.get("geometry_detail") else ""
    lines += [f"corruption set {result['corruption_set']} ({result['corruption_set_chosen']}){geometry}"]
    lines += [head, "-" * len(head)]
    for name in result["corruptions"]:
        errs = "".join(f"{result['error'][name][str(s)]:7.1f}" for s in sevs)
        ce, rel = result["ce"][name], result["relative_ce"][name]
        ce_cols = f"{'-' if ce is None else f'{ce:.1f}':>8}{'-' if rel is None else f'{rel:.1f}':>8}"
        lines.append(f"{name:<18}{errs}{result['mean_error'][name]:8.1f}{ce_cols}")
    summary = []
    if result["clean_error"] is not None:
        summary.append(f"clean error {result['clean_error']:.2f}%")
    if result["mce"] is not None:
        kind = "standard 15-corruption mCE" if result["mce_is_standard_15"] else f"mCE over {len(result['mce_over'])}"
        summary.append(f"{kind} (relative to {result['ce_reference_model']}) {result['mce']:.2f}")
    if result["relative_mce"] is not None:
        summary.append(f"relative mCE {result['relative_mce']:.2f}")
    if result["mce_19"] is not None:
        summary.append(f"19-corruption mCE (official assembled-cnn average) {result['mce_19']:.2f}")
    note = result["ce_note"]
    if result["mce"] is None and "no CE" in note:  # why there is no mCE
        summary.append(note[note.index("no CE") :])
    lines.append("; ".join(summary))
    return "\n".join(lines)


def plot_ce(result: dict[str, Any], path: str) -> None:
    """Bar chart of CE per corruption (or of mean error when no reference is available)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = result["corruptions"]
    has_ce = all(result["ce"][n] is not None for n in names)
    values = [result["ce"][n] if has_ce else result["mean_error"][n] for n in names]
    fig = Figure(figsize=(max(6.0, 0.55 * len(names) + 2), 4.2))
    FigureCanvasAgg(fig)  # an Agg canvas for this figure only: no global backend switch
    ax = fig.subplots()
    colours = ["tab:blue" if n in COMMON_CORRUPTIONS else "tab:gray" for n in names]
    ax.bar(range(len(names)), values, color=colours)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    if has_ce:
        ax.set_ylabel("CE (%), 100 = the reference")
        ax.axhline(100, color="black", lw=0.8, ls=":", label=f"reference ({result['ce_reference_model']})")
        if result["mce"] is not None:
            ax.axhline(result["mce"], color="tab:red", ls="--", label=f"mCE {result['mce']:.1f}")
        ax.legend(loc="best", fontsize=8)
    else:
        ax.set_ylabel("mean top-1 error over severities (%)")
    ax.set_title(f"{result['model']}: corruption robustness")
    ax.set_ylim(0, max(values + [100.0 if has_ce else 0.0]) * 1.1 or 1.0)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")


__all__ = [
    "GEOMETRIES",
    "corruption_errors",
    "format_table",
    "set_crop",
    "plot_ce",
    "relative_corruption_errors",
    "robustness",
]
