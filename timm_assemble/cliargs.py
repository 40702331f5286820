"""Command-line flags generated from one dataclass: the one CLI convention of every subcommand.

Each subcommand describes its options as a dataclass; every field becomes one flag (`--lr-base`,
`--no-channels-last`), its help text and bounds come from the field's metadata, and the parsed flags turn
back into an instance of the dataclass. The dataclass is then the one source of defaults, of `--help` and
of validation (the same bounds check runs on values read from config files).

Field metadata keys: `help` (required), `cli` (False: no flag), `positional` (True: a positional
argument; a list field takes one or more), `required` (True: a flag the user must give), `choices`, `bounds`
(an interval such as "(0, inf)" or "[0, 1)": checked at parse time, exit 2), `metavar`, `flags` (extra
spellings, e.g. ("-o",)). A `bool` field gives `--name` and `--no-name`; a `list` field takes one or more
values, a `tuple[X, X]` field exactly two, a `dict` field KEY=VALUE pairs.
"""

import argparse
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

from timm.utils import ParseKwargs

from .errors import TimmAssembleError


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`prog: error: ... (see prog --help)`, exit 2), not a usage dump."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every field (works with postponed annotations)."""
    return typing.get_type_hints(cls)


def base_type(annotation: Any) -> Any:
    """`X` for `X | None` / `Optional[X]`, else the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def parse_bounds(spec: str) -> tuple[float, float, bool, bool]:
    """'(0, inf)' -> (0.0, inf, lower closed?, upper closed?)."""
    low, high = (part.strip() for part in spec.strip()[1:-1].split(","))
    return float(low), float(high), spec.strip()[0] == "[", spec.strip()[-1] == "]"


def bounds_error(value: float, spec: str) -> str | None:
    """Why `value` is outside the interval `spec`, or None when it is inside."""
    low, high, low_closed, high_closed = parse_bounds(spec)
    inside = (value >= low if low_closed else value > low) and (value <= high if high_closed else value < high)
    if inside and not (isinstance(value, float) and math.isnan(value)):
        return None
    if math.isinf(high):
        return f"must be {'>=' if low_closed else '>'} {low:g}, got {value:g}"
    return f"must be in {spec}, got {value:g}"


def _checked(convert: type, spec: str | None):
    """An argparse `type` that converts and checks the bounds (argparse turns the ValueError into exit 2)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {convert.__name__}, got {text!r}") from None
        problem = bounds_error(value, spec) if spec else None
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = convert.__name__
    return parse


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_dataclass_arguments(
    parser: argparse.ArgumentParser, cls: type, defaults: Any = None, only_typed: bool = False
) -> None:
    """One argument per field of dataclass `cls`.

    `defaults`: an instance whose values are shown in `--help` (default: the class defaults).
    `only_typed`: flags the user did not type are absent from the namespace (for layering presets/configs).
    """
    types_by_name = field_types(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        default = getattr(defaults, f.name) if defaults is not None else field_default(f)
        kwargs: dict[str, Any] = dict(help=f"{meta['help']} (default: {default})")
        if meta.get("positional"):
            kwargs["help"] = meta["help"]
            parser.add_argument(f.name, **kwargs, **_type_kwargs(types_by_name[f.name], meta))
            continue
        kwargs["dest"] = f.name
        kwargs["default"] = argparse.SUPPRESS if only_typed else default
        if meta.get("required"):
            kwargs.update(help=meta["help"], required=True)
        flags = (flag_name(f.name), *meta.get("flags", ()))
        parser.add_argument(*flags, **kwargs, **_type_kwargs(types_by_name[f.name], meta))


def _type_kwargs(annotation: Any, meta: typing.Mapping[str, Any]) -> dict[str, Any]:
    typ = base_type(annotation)
    origin = typing.get_origin(typ)
    extra: dict[str, Any] = {}
    if "metavar" in meta:
        extra["metavar"] = meta["metavar"]
    if typ is bool:
        return dict(action=argparse.BooleanOptionalAction)
    if typ is dict or origin is dict:
        return dict(nargs="*", action=ParseKwargs, metavar=meta.get("metavar", "KEY=VALUE"))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(typ) if a is not Ellipsis]
        fixed = origin is tuple and Ellipsis not in typing.get_args(typ)
        return dict(nargs=len(args) if fixed else "+", type=_checked(args[0], meta.get("bounds")), **extra)
    if "choices" in meta:
        extra["choices"] = meta["choices"]
    return dict(type=_checked(typ if typ in (int, float, Path) else str, meta.get("bounds")), **extra)


def field_default(f: dataclasses.Field) -> Any:
    """The field's default value (None for a required field)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """An instance of `cls` from the parsed flags (fields absent from `args` keep their defaults)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names}
    for name, value in values.items():
        if isinstance(value, list) and typing.get_origin(base_type(field_types(cls)[name])) is tuple:
            values[name] = tuple(value)
    values.update(extra)
    obj = cls(**values)
    check_bounds(obj)
    return obj


def check_bounds(obj: Any, source: str | None = None) -> None:
    """Raise a one-line TimmAssembleError for the first field outside its `bounds` (e.g. from a config file)."""
    for f in dataclasses.fields(obj):
        spec = f.metadata.get("bounds")
        value = getattr(obj, f.name)
        if spec is None or value is None:
            continue
        for item in value if isinstance(value, (tuple, list)) else (value,):
            problem = bounds_error(item, spec)
            if problem:
                where = f"{source}: {f.name}" if source else flag_name(f.name)
                raise TimmAssembleError(f"{where} {problem}")
