"""The dataclass-driven flags every subcommand uses: types, booleans, kwargs, tuples, bounds."""

import argparse
from dataclasses import dataclass, field

import pytest

from timm_assemble.cli.args import add_dataclass_arguments, check_bounds, from_args
from timm_assemble.errors import TimmAssembleError


@dataclass
class Options:
    path: str = field(metadata=dict(help="input", positional=True))
    lr: float = field(default=0.1, metadata=dict(help="learning rate", bounds="(0, inf)"))
    keep: float = field(default=0.9, metadata=dict(help="keep-prob", bounds="(0, 1]"))
    size: int | None = field(default=None, metadata=dict(help="size", bounds="[1, inf)"))
    fast: bool = field(default=False, metadata=dict(help="go fast"))
    scale: tuple[float, float] = field(default=(0.08, 1.0), metadata=dict(help="range", bounds="(0, 1]"))
    kwargs: dict = field(default_factory=dict, metadata=dict(help="extra"))
    mode: str = field(default="a", metadata=dict(help="mode", choices=("a", "b")))
    hidden: int = field(default=3, metadata=dict(help="not a flag", cli=False))


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="t")
    add_dataclass_arguments(parser, Options)
    return from_args(Options, parser.parse_args(argv))


def test_flags_round_trip_into_the_dataclass():
    opts = parse(["x.jpg", "--lr", "0.5", "--size", "7", "--fast", "--scale", "0.1", "1", "--kwargs", "width=8"])
    assert opts == Options("x.jpg", lr=0.5, size=7, fast=True, scale=(0.1, 1.0), kwargs={"width": 8})
    assert parse(["y"]) == Options("y")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "-1"], "argument --lr: must be > 0, got -1"),
        (["--keep", "1.5"], "argument --keep: must be in (0, 1], got 1.5"),
        (["--size", "abc"], "argument --size: expected int, got 'abc'"),
        (["--scale", "0", "1"], "argument --scale: must be in (0, 1], got 0"),
        (["--mode", "c"], "argument --mode: invalid choice"),
        (["--hidden", "4"], "unrecognized arguments: --hidden"),
    ],
)
def test_bad_values_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(["x", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bounds_are_checked_for_values_from_files_too():
    with pytest.raises(TimmAssembleError, match=r"^run.toml: lr must be > 0, got -2$"):
        check_bounds(Options("x", lr=-2.0), source="run.toml")


@dataclass
class Command:
    images: list[str] = field(default_factory=list, metadata=dict(help="files", positional=True, metavar="IMAGE"))
    model: str | None = field(default=None, metadata=dict(help="model", required=True))
    models: list[str] | None = field(default=None, metadata=dict(help="peers"))


def test_required_flags_and_list_arguments(capsys):
    parser = argparse.ArgumentParser(prog="t")
    add_dataclass_arguments(parser, Command)
    opts = from_args(Command, parser.parse_args(["a.jpg", "b.jpg", "--model", "m", "--models", "x", "y"]))
    assert opts == Command(["a.jpg", "b.jpg"], "m", ["x", "y"])
    with pytest.raises(SystemExit):
        parser.parse_args(["a.jpg"])
    assert "the following arguments are required: --model" in capsys.readouterr().err
