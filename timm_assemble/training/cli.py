"""Command lines of the training jobs: parse flags into a TrainConfig and run the engine.

The same parser serves every way of starting a job: `timm-assemble train|finetune`, `python -m` /
`accelerate launch -m timm_assemble.train|finetune`, and the checkout's `train.py` / `finetune.py` shims.
"""

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence

from ..cliargs import ArgumentParser
from ..errors import DEBUG_ENV, exit_code
from .config import DEMO_PRESET, TrainConfig, add_config_arguments, config_from_args, format_config

MODES = ("train", "finetune")
DESCRIPTIONS = {
    "train": "Train an Assemble-ResNet (or any timm model) from scratch with the paper's recipe. "
    "Run with `accelerate launch -m timm_assemble.train ...` for any number of GPUs/nodes.",
    "finetune": "Fine-tune a pretrained Assemble-ResNet on your classes and export a hub-ready model. "
    "With no data arguments it runs a small built-in demo on generated images.",
}
HELP = {"train": "train from scratch with the paper's recipe", "finetune": "fine-tune on your images (or a demo)"}


def build_parser(mode: str, prog: str | None = None) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=prog or f"{mode}.py", description=DESCRIPTIONS[mode])
    add_config_arguments(parser, mode)
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks (also: {DEBUG_ENV}=1)")
    return parser


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """The `train` and `finetune` subcommands of `timm-assemble` (same flags as the modules)."""
    for mode in MODES:
        parser = subparsers.add_parser(mode, help=HELP[mode], description=DESCRIPTIONS[mode])
        add_config_arguments(parser, mode)
        parser.set_defaults(func=lambda args, mode=mode: run_parsed(mode, args, f"timm-assemble {mode}", args.argv))


def resolve(mode: str, args: argparse.Namespace) -> TrainConfig:
    """The config of parsed flags; `finetune` with no data and no preset/config runs the built-in demo."""
    no_data = not any(k in vars(args) for k in ("data_dir", "dataset", "synthetic"))
    if mode == "finetune" and no_data and args.preset is None and args.config is None:
        args.preset = DEMO_PRESET  # the embedded default: built-in data, runs anywhere in a few minutes
    return config_from_args(args, mode)


def parse_config(mode: str, argv: Sequence[str] | None = None) -> tuple[TrainConfig, bool]:
    """The resolved config and whether only printing was asked for."""
    args = build_parser(mode).parse_args(argv)
    return resolve(mode, args), args.print_config


def launch_command(program: str, argv: Sequence[str]) -> str:
    """The command line as it was run (`accelerate launch` sets ACCELERATE_MIXED_PRECISION in the job)."""
    if program.startswith("timm-assemble "):
        launcher = []
    elif "ACCELERATE_MIXED_PRECISION" in os.environ:
        launcher = ["accelerate", "launch"]
    else:
        launcher = ["python"]
    return shlex.join([*launcher, *shlex.split(program), *argv])


def run_parsed(mode: str, args: argparse.Namespace, program: str, argv: Sequence[str] | None = None) -> int:
    """Print or run the job the parsed flags describe; TimmAssembleError is left to the caller."""
    cfg = resolve(mode, args)
    if args.print_config:
        print(format_config(cfg), end="")
        return 0
    from .engine import run  # heavy imports only when training

    quiet_logging()
    argv = sys.argv[1:] if argv is None else argv
    if program.startswith("timm-assemble ") and argv and argv[0] == mode:
        argv = argv[1:]  # `program` names the subcommand already
    run(cfg, command=launch_command(program, argv))
    return 0


def quiet_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("timm", "accelerate", "PIL", "huggingface_hub", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(mode: str, argv: Sequence[str] | None = None, program: str | None = None) -> int:
    """Entry point of `python -m timm_assemble.MODE` and the checkout's MODE.py; returns the exit code.

    `program` is how the job was named on the command line (`-m timm_assemble.finetune`, `finetune.py`).
    """
    program = program or f"{mode}.py"
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = f"python {program}" if program.startswith("-m ") else program
    try:
        return run_parsed(mode, build_parser(mode, prog).parse_args(argv), program, argv)
    except (Exception, KeyboardInterrupt) as err:
        return exit_code(prog, err, debug="--debug" in argv)
