"""The `timm-assemble` command. Each capability module contributes one subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .cliargs import ArgumentParser
from .errors import DEBUG_ENV, exit_code

# Modules that expose `add_parser(subparsers)`; the parser they add sets `func(args) -> int`.
_SUBCOMMAND_MODULES: tuple[str, ...] = (
    "timm_assemble.training.cli",
    "timm_assemble.convert.cli",
    "timm_assemble.hub.publish",
    "timm_assemble.hub.download",
    "timm_assemble.hub.weights_cli",
    "timm_assemble.evaluation.validate",
    "timm_assemble.evaluation.robustness",
    "timm_assemble.evaluation.benchmark",
    "timm_assemble.predict",
    "timm_assemble.deploy_cli",
    "timm_assemble.training.teacher",
)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="timm-assemble",
        description="Assemble-ResNet models for timm: train, fine-tune, convert, publish, download, predict, evaluate.",
    )
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks (also: {DEBUG_ENV}=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _SUBCOMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args([a for a in argv if a != "--debug"])  # --debug anywhere on the line
    args.debug = "--debug" in argv
    args.argv = argv  # the command line as typed, for jobs that record it
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as err:
        return exit_code(f"timm-assemble {args.command}", err, args.debug)


if __name__ == "__main__":
    sys.exit(main())
