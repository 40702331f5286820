"""The `timm-assemble` command. Each capability module contributes one subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .errors import TimmAssembleError

# Modules that expose `add_parser(subparsers)`; the parser they add sets `func(args) -> int`.
_SUBCOMMAND_MODULES: tuple[str, ...] = (
    "timm_assemble.training.cli",
    "timm_assemble.convert.cli",
    "timm_assemble.hub.publish",
    "timm_assemble.hub.download",
    "timm_assemble.evaluation.validate",
    "timm_assemble.evaluation.robustness",
    "timm_assemble.evaluation.benchmark",
    "timm_assemble.predict",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="timm-assemble",
        description="Assemble-ResNet models for timm: train, fine-tune, convert, publish, download, predict, evaluate.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _SUBCOMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command line as typed, for jobs that record it
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except TimmAssembleError as err:
        print(f"timm-assemble {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
