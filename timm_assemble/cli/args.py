"""Command-line flags generated from an options dataclass: the one CLI convention of every subcommand.

Every field of the dataclass becomes one flag (`--lr-base`, `--no-channels-last`) with its help text, choices
and bounds from the field's metadata (see `timm_assemble.options`); the parsed flags turn back into an
instance of the dataclass. A `bool` field gives `--name` and `--no-name`; a `list` field takes one or more
values, a `tuple[X, X]` field exactly two, a `dict` field KEY=VALUE pairs; a field with metadata `const` takes an
optional value (bare `--name` is `const`, `--no-name` is metadata `off`).
"""

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

from timm.utils import ParseKwargs

from ..options import base_type, bounds_error, check_bounds, field_default, field_types, flag_name

# `--max-image-pixels`, shared by the commands that decode user images
PIXELS_FIELD = dataclasses.field(
    default=None,
    metadata=dict(
        help="refuse images declaring more pixels than this, before decoding (default: Pillow's ~89 M)",
        bounds="[1, inf)",
        metavar="N",
    ),
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`prog: error: ... (see prog --help)`, exit 2), not a usage dump."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


class _SpelledFlag(argparse.BooleanOptionalAction):
    """`--flag` / `--no-flag`, and `--flag WORD` for an older spelling that sets several fields at once
    (`--amp bf16` = `--amp --amp-dtype bfloat16`): field metadata `spellings` maps WORD to those fields."""

    def __init__(self, option_strings: list[str], dest: str, spellings: dict[str, dict[str, Any]], **kwargs: Any):
        super().__init__(option_strings, dest, **kwargs)
        self.nargs, self.spellings = "?", spellings

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001 (argparse's API)
        if values is None:
            super().__call__(parser, namespace, values, option_string)
        elif option_string.startswith("--no-") or values not in self.spellings:
            parser.error(f"argument {option_string}: takes no value, or one of {', '.join(self.spellings)}")
        else:
            for name, value in self.spellings[values].items():
                setattr(namespace, name, value)


class _OptionalValue(argparse.Action):
    """`--flag VALUE`, bare `--flag` (field metadata `const`) and `--no-flag` (metadata `off`): timm's switch
    and our value in one flag, so `--pretrained` means the same on every command."""

    _BARE = object()  # what argparse passes when the flag has no value

    def __init__(self, option_strings: list[str], dest: str, const: Any, off: Any, **kwargs: Any):
        negatives = [f"--no-{s[2:]}" for s in option_strings if s.startswith("--")]
        super().__init__([*option_strings, *negatives], dest, nargs="?", const=self._BARE, **kwargs)
        self.bare, self.off = const, off

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001 (argparse's API)
        if option_string.startswith("--no-"):
            if values is not self._BARE:
                parser.error(f"argument {option_string}: takes no value")
            values = self.off
        setattr(namespace, self.dest, self.bare if values is self._BARE else values)


def _type_kwargs(annotation: Any, meta: typing.Mapping[str, Any]) -> dict[str, Any]:
    typ = base_type(annotation)
    origin = typing.get_origin(typ)
    extra: dict[str, Any] = {}
    if "metavar" in meta:
        extra["metavar"] = meta["metavar"]
    if "choices" in meta:
        extra["choices"] = meta["choices"]  # argparse checks each value of a list flag against them too
    if "const" in meta:
        return dict(action=_OptionalValue, const=meta["const"], off=meta.get("off"), type=str, **extra)
    if typ is bool:
        if "spellings" in meta:
            return dict(action=_SpelledFlag, spellings=meta["spellings"], **extra)
        return dict(action=argparse.BooleanOptionalAction)
    if typ is dict or origin is dict:
        return dict(nargs="*", action=ParseKwargs, metavar=meta.get("metavar", "KEY=VALUE"))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(typ) if a is not Ellipsis]
        fixed = origin is tuple and Ellipsis not in typing.get_args(typ)
        return dict(nargs=len(args) if fixed else "+", type=_checked(args[0], meta.get("bounds")), **extra)
    return dict(type=_checked(typ if typ in (int, float, Path) else str, meta.get("bounds")), **extra)


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


@dataclasses.dataclass(frozen=True)
class Command:
    """One subcommand: its options dataclass (the flags) and what runs with the parsed options.

    `run` gets an instance of `options`. A command with `subcommands` only dispatches to them; one with
    `add_arguments` builds its own flags and `run` gets the argparse namespace (the training jobs, whose config
    layers presets and files under the typed flags). `inputs` names the fields that hold what the command reads
    (paths, or model names whose `local-dir:` folder is read): no output may replace them (`fileio.reading`).
    """

    name: str
    help: str
    run: typing.Callable[[Any], int | None] | None = None
    options: type | None = None
    description: str | None = None
    subcommands: tuple["Command", ...] = ()
    add_arguments: typing.Callable[[argparse.ArgumentParser], None] | None = None
    inputs: tuple[str, ...] = ()

    def add_to(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        """Add this command (and its subcommands) to `subparsers`."""
        parser = subparsers.add_parser(self.name, help=self.help, description=self.description or self.help)
        parser.set_defaults(inputs=self.inputs)
        if self.subcommands:
            nested = parser.add_subparsers(dest=f"{self.name}_command", metavar="ACTION", required=True)
            for sub in self.subcommands:
                sub.add_to(nested)
            return parser
        if self.add_arguments is not None:
            self.add_arguments(parser)
            parser.set_defaults(func=self.run)
            return parser
        add_dataclass_arguments(parser, self.options)
        parser.set_defaults(func=lambda args: self.run(from_args(self.options, args)))
        return parser


# fields naming a model (`local-dir:DIR` reads DIR), or a weights file (read as given); other values are names
MODEL_FIELDS = ("model", "models", "teacher", "baseline", "pretrained")


def cache_inputs() -> list[tuple[str, str]]:
    """What the weights caches hold now (each entry of ours and of the Hub's): declared as inputs, so no output
    replaces a cached model; the cache's own code fills ours (`fileio.owning`). The roots are not inputs
    themselves: a cache pointed at a working folder (`TIMM_ASSEMBLE_CACHE=.`) still takes outputs beside its
    entries."""
    from huggingface_hub import constants

    from ..weights.cache import CACHE_ENV, cache_root

    roots = ((cache_root(), f"the weights cache (${CACHE_ENV})"), (Path(constants.HF_HUB_CACHE), "the Hub cache"))
    return [(str(entry), how) for root, how in roots if root.is_dir() for entry in sorted(root.iterdir())]


def declared_inputs(values: Any, names: typing.Iterable[str]) -> list[tuple[str, str]]:
    """(path, flag) of what a command reads: the fields `names` of `values` (parsed flags or a config) that hold a
    path; of a model field, its `local-dir:` folder or an existing weights file (a registry or Hub name: none)."""
    found = []
    for name in names:
        given = getattr(values, name, None)
        for value in given if isinstance(given, list | tuple) else [given]:
            value = "" if value is None else str(value)
            if name in MODEL_FIELDS and not (value.startswith("local-dir:") or Path(value).exists()):
                value = ""
            value = value.removeprefix("local-dir:")
            if value:
                found.append((value, flag_name(name)))
    return found
