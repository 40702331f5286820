"""`timm-assemble convert`: official TensorFlow checkpoint -> timm folder."""

from dataclasses import dataclass, field

from ..convert import OFFICIAL_MODELS, convert_checkpoint
from .args import Command


@dataclass
class ConvertOptions:
    """`timm-assemble convert` flags."""

    model: str | None = field(
        default=None,
        metadata=dict(help="architecture of the checkpoint", required=True, choices=list(OFFICIAL_MODELS)),
    )
    checkpoint: str | None = field(
        default=None,
        metadata=dict(
            help="checkpoint path without '.index' (e.g. .../model.ckpt-1000 for model.ckpt-1000.index)",
            required=True,
            metavar="PREFIX",
        ),
    )
    out: str | None = field(
        default=None, metadata=dict(help="output folder (must not exist)", required=True, metavar="DIR")
    )
    keep_background: bool = field(
        default=False, metadata=dict(help="keep the official background class (index 0): 1001 outputs instead of 1000")
    )
    overwrite: bool = field(default=False, metadata=dict(help="replace DIR if it exists"))
    verbose: bool = field(default=False, metadata=dict(help="list the ignored non-model variables"))


def run(opts: ConvertOptions) -> int:
    report = convert_checkpoint(
        opts.model,
        opts.checkpoint,
        opts.out,
        keep_background=opts.keep_background,
        overwrite=opts.overwrite,
        verbose=opts.verbose,
    )
    if not opts.verbose:
        print(f"wrote {report.out_dir} ({len(report.converted)} variables, {report.num_classes} classes)")
    return 0


COMMAND = Command(
    "convert",
    "convert an official TensorFlow checkpoint to timm weights",
    run,
    ConvertOptions,
    inputs=("checkpoint",),
    description="Convert an official Assemble-ResNet TensorFlow checkpoint (clovaai/assembled-cnn) into a "
    "folder that timm loads with create_model('local-dir:DIR', pretrained=True). TensorFlow is not needed.",
)
