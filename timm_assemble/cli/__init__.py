"""The `timm-assemble` command (also `python -m timm_assemble`): the command table and the one entry point.

Each subcommand is one module here with its options dataclass and `run`; the library code they call takes plain
arguments or an options object and never imports this package.
"""

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import DEBUG_ENV, exit_code
from ..fileio import reading
from ..processes import check_one_process, quiet_unless_main
from .args import ArgumentParser, Command, cache_inputs, declared_inputs

# module -> the Command(s) it defines, in `--help` order
_COMMAND_MODULES = (
    "train", "convert", "publish", "download", "weights", "validate", "robustness", "benchmark", "predict", "export",
    "teacher", "study",
)  # fmt: skip


# the commands that run as several processes under `accelerate launch` / torchrun; the others stop there
DATA_PARALLEL = ("train", "finetune", "study", "validate", "robustness")


def commands() -> list[Command]:
    """Every subcommand, in `--help` order."""
    found: list[Command] = []
    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        found += getattr(module, "COMMANDS", None) or [module.COMMAND]
    return found


def build_parser(prog: str = "timm-assemble") -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description="Assemble-ResNet models for timm: train, fine-tune, convert, publish, download, predict, evaluate.",
    )
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks (also: {DEBUG_ENV}=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands():
        command.add_to(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, program: str = "timm-assemble") -> int:
    """Run one subcommand; returns the exit code (2 for bad input, with one line on stderr)."""
    shown = program if not program.startswith("-m ") else f"python {program}"  # the name errors are signed with
    parser = build_parser(shown)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args([a for a in argv if a != "--debug"])  # --debug anywhere on the line
    args.debug = "--debug" in argv
    args.argv = [a for a in argv if a != "--debug"]  # the command line as typed, for jobs that record it
    args.program = program
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    quiet_unless_main()
    try:
        if args.command not in DATA_PARALLEL:
            check_one_process(f"{shown} {args.command}")
        with reading(*declared_inputs(args, getattr(args, "inputs", ())), *cache_inputs()):
            return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as err:
        return exit_code(f"{shown} {args.command}", err, args.debug)
