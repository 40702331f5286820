"""`timm-assemble convert`: official TensorFlow checkpoint -> timm folder (thin layer over the Python API)."""

from __future__ import annotations

import argparse

from . import OFFICIAL_MODELS, convert_checkpoint


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help="convert an official TensorFlow checkpoint to timm weights",
        description="Convert an official Assemble-ResNet TensorFlow checkpoint (clovaai/assembled-cnn) into a "
        "folder that timm loads with create_model('local-dir:DIR', pretrained=True). TensorFlow is not needed.",
    )
    parser.add_argument("--model", required=True, choices=list(OFFICIAL_MODELS), help="architecture of the checkpoint")
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="PREFIX",
        help="checkpoint path without '.index' (e.g. .../model.ckpt-1000 for model.ckpt-1000.index)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist)")
    parser.add_argument(
        "--keep-background",
        action="store_true",
        help="keep the official background class (index 0): 1001 outputs instead of 1000",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    parser.add_argument("--verbose", action="store_true", help="list the ignored non-model variables")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
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
