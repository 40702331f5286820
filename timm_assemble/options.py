"""Option dataclasses: the field metadata every options object of the package uses, and its checks.

Options of a job are a dataclass; each field's metadata says what it means (`help`), which values are valid
(`bounds`, an interval such as "(0, inf)" or "[0, 1)"; `choices`) and how the command line spells it (`flags`,
`positional`, `required`, `cli`, `metavar`: read by `timm_assemble.cli.args`). The same bounds check runs on
values from flags, config files and API calls, so a value is judged the same wherever it came from.
"""

import dataclasses
import math
import types
import typing
from typing import Any

from .errors import TimmAssembleError


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


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def field_default(f: dataclasses.Field) -> Any:
    """The field's default value (None for a required field)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


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
