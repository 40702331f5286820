"""Convert the official TensorFlow Assemble-ResNet checkpoints to timm weights, without TensorFlow.

`convert_checkpoint` reads the checkpoint's index, checks the claimed width, classes and channels against
sane bounds and every official variable's name, shape and stored size against the architecture (built on
PyTorch's `meta` device: shapes only, no memory), and only then builds the real timm model, streams the
tensors one at a time into it and writes a Hub-ready folder (model.safetensors, config.json, README.md).
A crafted index therefore costs a fraction of a second, whatever it claims. Peak memory is about one
model plus one tensor.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from timm.data import ImageNetInfo

from ..errors import TimmAssembleError
from ..fileio import check_dir_target, reading, sha256_file
from ..model_stats import model_stats
from ..progress import track
from ..tensor_checks import check_finite
from ..weights.card import OFFICIAL_CODE_URL, CardSpec, render_model_card
from ..weights.hub_folder import export_hub_folder
from .mapping import (
    DENSE_KERNEL,
    NUM_OFFICIAL_CLASSES,
    OFFICIAL_MODELS,
    STEM_KERNEL,
    build_mapping,
    check_mapping,
    transform,
)
from .tensor_bundle import TensorBundleReader

__all__ = ["OFFICIAL_MODELS", "ConversionReport", "TensorBundleReader", "convert_checkpoint"]

PRETRAINED_TAG = "clova_in1k"
DEFAULT_WIDTH = 64
MAX_WIDTH = 1024  # 16x the official width: ~10 G parameters for ResNet-50, far beyond any released model
MAX_CLASSES = 1_000_000
MAX_IN_CHANS = 64
BACKGROUND_LABEL = "background"


@dataclass
class ConversionReport:
    """What a conversion read and wrote."""

    model_name: str
    out_dir: Path
    width: int
    num_classes: int
    converted: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    sha256: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _command(model_name: str, prefix: Path, out_dir: Path, keep_background: bool) -> str:
    args = ["timm-assemble", "convert", "--model", model_name, "--checkpoint", str(prefix), "--out", str(out_dir)]
    if keep_background:
        args.append("--keep-background")
    return shlex.join(args)


def _model_card(
    report: ConversionReport, model: torch.nn.Module, prefix: Path, keep_background: bool, command: str
) -> str:
    """The converted folder's README.md, by the one card renderer: what was read, how, and the input hashes."""
    hashes = "\n".join(f"| `{name}` | `{digest}` |" for name, digest in report.sha256.items())
    classes = (
        "1001 classes: index 0 is the background class, 1-1000 the ImageNet classes (TF-slim order)"
        if keep_background
        else "1000 ImageNet classes (the official background class, index 0, was dropped)"
    )
    provenance = f"""Converted from the official TensorFlow checkpoint by `timm-assemble convert` (pure Python reader,
every tensor's CRC-32C verified).

- Source checkpoint: `{prefix.name}` ({len(report.converted)} model variables converted,
  {len(report.ignored)} non-model variables ignored)
- Classifier: {classes}
- Conversion: conv kernels HWIO -> OIHW, dense kernel [in, out] -> [out, in], BN gamma/beta/moving
  statistics -> weight/bias/running_mean/running_var
- Command: `{command}`

| input file | sha256 |
| --- | --- |
{hashes}"""
    model_args = {"width": report.width} if report.width != DEFAULT_WIDTH else {}
    config = dict(architecture=report.model_name, num_classes=report.num_classes, model_args=model_args,
                  pretrained_cfg=model.pretrained_cfg)  # fmt: skip
    spec = CardSpec(
        repo_id=None,
        title=f"{report.model_name}.{PRETRAINED_TAG} (converted)",
        config=config,
        summary=f"Official ImageNet weights of {report.model_name} from [clovaai/assembled-cnn]({OFFICIAL_CODE_URL}) "
        "(Lee et al., 2020), converted to timm. Preprocessing is the official one: RGB pixels 0..255 minus the "
        "ImageNet means (123.68, 116.78, 103.94), no division by a standard deviation, bilinear resize, "
        "evaluation at 256x256.",
        provenance=provenance,
        datasets=("imagenet-1k",),
        timm_name=report.model_name if report.width == DEFAULT_WIDTH else None,
        num_params=sum(p.numel() for p in model.parameters()),
        stats=model_stats(model, tuple(model.pretrained_cfg["input_size"])),
    )
    return render_model_card(spec)


def _label_names(num_classes: int) -> list[str]:
    names = list(ImageNetInfo().label_names())
    return [BACKGROUND_LABEL, *names] if num_classes == len(names) + 1 else names


def claimed_architecture(
    reader: TensorBundleReader, shapes: dict[str, tuple[int, ...]], keep_background: bool
) -> tuple[int, int, int]:
    """Width, input channels and classes the checkpoint claims (stem and classifier shapes), within sane bounds."""
    for required in (STEM_KERNEL, DENSE_KERNEL):
        if required not in shapes:
            raise TimmAssembleError(
                f"{reader.index_path}: not an official Assemble-ResNet checkpoint (no variable {required!r} "
                f"among its {len(shapes)} variables)"
            )
    stem, dense = shapes[STEM_KERNEL], shapes[DENSE_KERNEL]
    for name, shape, rank, layout in (
        (STEM_KERNEL, stem, 4, "[kh, kw, in, width]"),
        (DENSE_KERNEL, dense, 2, "[in, classes]"),
    ):
        if len(shape) != rank:
            raise TimmAssembleError(
                f"{reader.index_path}: {name} has shape {list(shape)}; an official checkpoint stores it as {layout}"
            )
    width, in_chans = stem[3], stem[2]
    for what, value, high in (("width", width, MAX_WIDTH), ("input channels", in_chans, MAX_IN_CHANS)):
        if not 1 <= value <= high:
            raise TimmAssembleError(
                f"{reader.index_path}: {STEM_KERNEL} {list(stem)} claims {what} {value}, outside 1..{high}: "
                "not an Assemble-ResNet checkpoint (or a damaged one)"
            )
    if not 1 <= dense[1] <= MAX_CLASSES:
        raise TimmAssembleError(
            f"{reader.index_path}: {DENSE_KERNEL} {list(dense)} claims {dense[1]} classes, outside 1..{MAX_CLASSES}"
        )
    check_stored_sizes(reader, (STEM_KERNEL, DENSE_KERNEL))  # a shape that advice is derived from is the data's
    if not keep_background and dense[1] != NUM_OFFICIAL_CLASSES:
        raise TimmAssembleError(_background_advice(dense[1]))
    num_classes = dense[1] if keep_background else dense[1] - 1
    return width, in_chans, num_classes


def _background_advice(classes: int) -> str:
    """Why a classifier of `classes` outputs cannot drop the official background class, and what converts it."""
    official = f"the official {NUM_OFFICIAL_CLASSES} (background + {NUM_OFFICIAL_CLASSES - 1} ImageNet classes)"
    if classes == NUM_OFFICIAL_CLASSES - 1:
        return (
            f"the checkpoint's classifier has {classes} classes, not {official}: it has no background class to "
            "drop; pass --keep-background to convert all of them as they are"
        )
    return (
        f"the checkpoint's classifier has {classes} classes, not {official}, so index 0 is not known to be a "
        f"background class; pass --keep-background to convert all {classes} classes as they are"
    )


def check_stored_sizes(reader: TensorBundleReader, mapping: Iterable[str]) -> None:
    """Each model variable's stored byte count must be what its dtype and shape need (checked before any read)."""
    for name in mapping:
        entry = reader.entry(name)
        if entry.dtype is None or entry.dtype.kind != "f":
            raise TimmAssembleError(f"{name!r}: dtype {entry.dtype_name} is not a floating point weight")
        need = math.prod(entry.shape) * entry.dtype.itemsize
        if entry.size != need:
            raise TimmAssembleError(
                f"{name!r} in {reader.index_path}: stored size {entry.size} bytes does not match "
                f"{entry.dtype_name}{list(entry.shape)} ({need} bytes)"
            )


def convert_checkpoint(
    model_name: str,
    prefix: str | Path,
    out_dir: str | Path,
    keep_background: bool = False,
    overwrite: bool = False,
    verbose: bool = False,
) -> ConversionReport:
    """Convert the official checkpoint `prefix` (path without `.index`) into a timm folder `out_dir`.

    The background class (index 0 of the official 1001) is dropped unless `keep_background`. Raises
    `TimmAssembleError` naming the problem for unreadable or mismatching checkpoints; nothing is written
    then, and an existing `out_dir` is only replaced with `overwrite`.
    """
    start = time.perf_counter()
    if model_name not in OFFICIAL_MODELS:
        raise TimmAssembleError(f"unknown model {model_name!r}; choose one of {', '.join(OFFICIAL_MODELS)}")
    prefix, out_dir = Path(prefix), check_dir_target(out_dir)
    if out_dir.exists() and not overwrite:
        raise TimmAssembleError(f"output folder {out_dir} already exists; pass --overwrite to replace it")
    reader = TensorBundleReader(prefix)
    shapes = {name: reader.entry(name).shape for name in reader}
    width, in_chans, num_classes = claimed_architecture(reader, shapes, keep_background)
    model_args = {} if width == DEFAULT_WIDTH else {"width": width}
    if in_chans != 3:
        model_args["in_chans"] = in_chans
    name = f"{model_name}.{PRETRAINED_TAG}"
    with torch.device("meta"):  # shapes only: the checkpoint is checked before it may cost memory
        skeleton = timm.create_model(name, num_classes=num_classes, **model_args)
    mapping = build_mapping(skeleton)
    report = ConversionReport(model_name, out_dir, width, num_classes)
    skeleton_shapes = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    report.ignored = check_mapping(mapping, shapes, skeleton_shapes, model_name, not keep_background)
    check_stored_sizes(reader, mapping)
    model = timm.create_model(name, num_classes=num_classes, **model_args).eval()
    state = model.state_dict()
    with torch.no_grad():
        for name, target in track(mapping.items(), "converting"):
            state[target.key].copy_(torch.from_numpy(transform(target, reader.read(name), not keep_background)))
            report.converted.append(name)
        for key, value in state.items():
            if key.endswith("num_batches_tracked"):
                value.zero_()
    check_finite(((name, state[target.key]) for name, target in mapping.items()), f"checkpoint {prefix}")
    inputs = [reader.index_path, *reader.shard_paths]
    report.sha256 = {path.name: sha256_file(path) for path in inputs}
    command = _command(model_name, prefix, out_dir, keep_background)
    has_imagenet_labels = num_classes in (1000, 1001)
    with reading(*((path, "checkpoint file") for path in inputs)):  # the writer keeps them from being replaced
        export_hub_folder(
            model,
            out_dir,
            model_args=model_args or None,  # timm < 1.0.31 records no factory kwargs by itself
            label_names=_label_names(num_classes) if has_imagenet_labels else None,
            model_card=_model_card(report, model, prefix, keep_background, command),
            overwrite=overwrite,
        )
    report.seconds = time.perf_counter() - start
    if verbose:
        print(f"converted {len(report.converted)} variables of {prefix} into {out_dir} ({report.seconds:.1f} s)")
        print(f"ignored {len(report.ignored)} non-model variables" + (":" if report.ignored else ""))
        for name in report.ignored:
            print(f"    {name}")
    return report
