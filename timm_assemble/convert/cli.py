"""`timm-assemble convert`: official TensorFlow checkpoint -> timm folder (thin layer over the Python API)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ..cliargs import add_dataclass_arguments, from_args
from . import OFFICIAL_MODELS, convert_checkpoint


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


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help="convert an official TensorFlow checkpoint to timm weights",
        description="Convert an official Assemble-ResNet TensorFlow checkpoint (clovaai/assembled-cnn) into a "
        "folder that timm loads with create_model('local-dir:DIR', pretrained=True). TensorFlow is not needed.",
    )
    add_dataclass_arguments(parser, ConvertOptions)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    args = from_args(ConvertOptions, args)
    report = convert_checkpoint(
        args.model,
        args.checkpoint,
        args.out,
        keep_background=args.keep_background,
        overwrite=args.overwrite,
        verbose=args.verbose,
    )
    if not args.verbose:
        print(f"wrote {report.out_dir} ({len(report.converted)} variables, {report.num_classes} classes)")
    return 0
