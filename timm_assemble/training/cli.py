"""Command lines of `train.py` and `finetune.py`: parse flags into a TrainConfig and run the engine."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence

from ..cliargs import ArgumentParser
from ..errors import DEBUG_ENV, exit_code
from .config import DEMO_PRESET, TrainConfig, add_config_arguments, config_from_args, format_config

DESCRIPTIONS = {
    "train": "Train an Assemble-ResNet (or any timm model) from scratch with the paper's recipe. "
    "Run with `accelerate launch train.py ...` for any number of GPUs/nodes.",
    "finetune": "Fine-tune a pretrained Assemble-ResNet on your classes and export a hub-ready model. "
    "With no data arguments it runs a small built-in demo on generated images.",
}


def build_parser(mode: str) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=f"{mode}.py", description=DESCRIPTIONS[mode], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_config_arguments(parser, mode)
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks (also: {DEBUG_ENV}=1)")
    return parser


def parse_config(mode: str, argv: Sequence[str] | None = None) -> tuple[TrainConfig, bool]:
    """The resolved config and whether only printing was asked for."""
    args = build_parser(mode).parse_args(argv)
    no_data = not any(k in vars(args) for k in ("data_dir", "dataset", "synthetic"))
    if mode == "finetune" and no_data and args.preset is None and args.config is None:
        args.preset = DEMO_PRESET  # the embedded default: built-in data, runs anywhere in a few minutes
    return config_from_args(args, mode), args.print_config


def main(mode: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of the top-level scripts; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("timm", "accelerate", "PIL", "huggingface_hub", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        cfg, print_only = parse_config(mode, argv)
        if print_only:
            print(format_config(cfg), end="")
            return 0
        from .engine import run  # heavy imports only when training

        launcher = ["accelerate", "launch"] if "ACCELERATE_MIXED_PRECISION" in os.environ else ["python"]
        run(cfg, command=shlex.join([*launcher, f"{mode}.py", *argv]))
    except (Exception, KeyboardInterrupt) as err:
        return exit_code(f"{mode}.py", err, debug)
    return 0
