"""The training jobs' command lines: flags -> TrainConfig -> the engine.

One parser serves every way of starting a job: `timm-assemble train|finetune`, `python -m timm_assemble
train|finetune`, `accelerate launch -m timm_assemble train|finetune`, and the checkout's `train.py` /
`finetune.py` (`accelerate launch train.py`).
"""

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence

from ..errors import DEBUG_ENV, exit_code
from ..fileio import reading
from ..processes import quiet_unless_main
from ..training.config import (
    DEMO_PRESET,
    FIELDS,
    FINETUNE_DEFAULTS,
    TrainConfig,
    format_config,
    list_presets,
    resolve_config,
)
from .args import ArgumentParser, Command, add_dataclass_arguments, cache_inputs, declared_inputs

MODES = ("train", "finetune")
DESCRIPTIONS = {
    "train": "Train an Assemble-ResNet (or any timm model) from scratch with the paper's recipe. "
    "Run with `accelerate launch -m timm_assemble train ...` for any number of GPUs/nodes.",
    "finetune": "Fine-tune a pretrained Assemble-ResNet on your classes and export a hub-ready model. "
    "With no data arguments it runs a small built-in demo on generated images.",
}
# what a training job reads (besides its -c file), kept from being replaced by its outputs
INPUTS = ("data_dir", "model", "pretrained", "initial_checkpoint", "teacher", "teacher_weights", "teacher_logits")
HELP = {"train": "train from scratch with the paper's recipe", "finetune": "fine-tune on your images (or a demo)"}


def add_config_arguments(parser: argparse.ArgumentParser, mode: str) -> None:
    """One flag per config field (`--lr-base`, `--no-channels-last`, ...); only typed flags override."""
    defaults = TrainConfig(**(FINETUNE_DEFAULTS if mode == "finetune" else {"mode": mode}))
    parser.add_argument("--preset", default=None, help=f"recipe preset ({', '.join(list_presets())})")
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        metavar="FILE",
        help="config file: TOML (e.g. a saved --print-config) or the args.yaml of a timm train.py run",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    add_dataclass_arguments(parser, TrainConfig, defaults=defaults, only_typed=True)


def resolve(mode: str, args: argparse.Namespace) -> TrainConfig:
    """The config of parsed flags; `finetune` with no data and no preset/config runs the built-in demo."""
    no_data = not any(k in vars(args) for k in ("data_dir", "dataset", "synthetic"))
    if mode == "finetune" and no_data and args.preset is None and args.config is None:
        args.preset = DEMO_PRESET  # the embedded default: built-in data, runs anywhere in a few minutes
    overrides = {k: v for k, v in vars(args).items() if k in FIELDS and k not in ("mode", "preset")}
    if "scale" in overrides:
        overrides["scale"] = tuple(overrides["scale"])
    return resolve_config(mode, overrides, preset=args.preset, config_file=args.config)


def build_parser(mode: str, prog: str | None = None) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=prog or f"{mode}.py", description=DESCRIPTIONS[mode])
    add_config_arguments(parser, mode)
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks (also: {DEBUG_ENV}=1)")
    return parser


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
    """Print or run the job the parsed flags describe; TimmAssembleError is left to the caller.

    `program` names the job as typed, subcommand included (`timm-assemble finetune`, `-m timm_assemble
    finetune`, `finetune.py`); `argv` are the flags after it.
    """
    cfg = resolve(mode, args)
    if args.print_config:
        print(format_config(cfg), end="")
        return 0
    from ..training.engine import run  # heavy imports only when training

    quiet_logging()
    with reading((args.config, "--config"), *declared_inputs(cfg, INPUTS), *cache_inputs()):
        run(cfg, command=launch_command(program, sys.argv[1:] if argv is None else argv))
    return 0


def quiet_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("timm", "accelerate", "PIL", "huggingface_hub", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(mode: str, argv: Sequence[str] | None = None, program: str | None = None) -> int:
    """Entry point of the checkout's `train.py` / `finetune.py`; returns the exit code."""
    program = program or f"{mode}.py"
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_unless_main()
    try:
        return run_parsed(mode, build_parser(mode, program).parse_args(argv), program, argv)
    except (Exception, KeyboardInterrupt) as err:
        return exit_code(program, err, debug="--debug" in argv)


def _command(mode: str) -> Command:
    def run(args: argparse.Namespace) -> int:
        argv = list(args.argv)
        return run_parsed(mode, args, f"{args.program} {mode}", argv[argv.index(mode) + 1 :])

    return Command(
        mode, HELP[mode], run, description=DESCRIPTIONS[mode], add_arguments=lambda p: add_config_arguments(p, mode)
    )


COMMANDS = tuple(_command(mode) for mode in MODES)
