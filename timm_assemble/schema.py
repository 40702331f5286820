"""One schema checker for the JSON files we read back (provenance.json, config.json, train_state.json, ...).

A file written by an older version, edited by hand or tampered with must fail with one line naming the file,
the field and what it should be, before any code indexes into it: `provenance.json: result.model.safetensors.
sha256 must be 64 hex digits, got 'abc'`, never a KeyError later. A schema is plain data:

- a type (`int`, `float`, `str`, `bool`, `dict`, `list`): the value's type (`bool` is not an `int`, an `int`
  is a `float`),
- a dict `{key: schema}`: an object with those keys (`Maybe(schema)` for a key that may be absent);
  other keys are allowed (files from newer versions),
- `ListOf(schema)` / `MapOf(schema, keys=check)`: every item / value, with a check on every key,
- `Check(schema, test, what)`: the schema, then `test(value)` must hold ("what" it should be).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import TimmAssembleError

_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false", dict: "an object",
          list: "a list"}  # fmt: skip


@dataclass(frozen=True)
class Maybe:
    schema: Any


@dataclass(frozen=True)
class ListOf:
    schema: Any


@dataclass(frozen=True)
class MapOf:
    schema: Any
    keys: Callable[[str], bool] = lambda key: True
    keys_what: str = "a name"


@dataclass(frozen=True)
class Check:
    schema: Any
    test: Callable[[Any], bool]
    what: str


SHA256 = Check(str, lambda v: re.fullmatch(r"[0-9a-f]{64}", v) is not None, "64 hex digits")
PLAIN_NAME = "a file name inside the folder (no '/', '..' or leading '.')"


def is_plain_name(name: str) -> bool:
    """A file name that stays inside its folder: no separator, no '..', not hidden, not empty."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".") and "\0" not in name


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(value: Any, schema: Any, path: str) -> str | None:
    """The first problem of `value` against `schema`, as 'FIELD must be ..., got ...', or None."""
    at = path or "the file"
    if isinstance(schema, type):
        ok = isinstance(value, schema) and not (schema in (int, float) and isinstance(value, bool))
        ok = ok or (schema is float and isinstance(value, int) and not isinstance(value, bool))
        return None if ok else f"{at} must be {_NAMES.get(schema, schema.__name__)}, got {_short(value)}"
    if isinstance(schema, Check):
        return _problem(value, schema.schema, path) or (
            None if schema.test(value) else f"{at} must be {schema.what}, got {_short(value)}"
        )
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            return f"{at} must be a list, got {_short(value)}"
        return next((p for i, v in enumerate(value) if (p := _problem(v, schema.schema, f"{path}[{i}]"))), None)
    if isinstance(schema, (dict, MapOf)) and not isinstance(value, dict):
        return f"{at} must be an object, got {_short(value)}"
    if isinstance(schema, MapOf):
        for key, item in value.items():
            if not schema.keys(key):
                return f"{at} has key {_short(key)}, which is not {schema.keys_what}"
            if problem := _problem(item, schema.schema, f"{path}.{key}" if path else key):
                return problem
        return None
    for key, sub in schema.items():
        where = f"{path}.{key}" if path else key
        if key not in value:
            if isinstance(sub, Maybe):
                continue
            return f"{where} is missing"
        if problem := _problem(value[key], sub.schema if isinstance(sub, Maybe) else sub, where):
            return problem
    return None


def check_schema(value: Any, schema: Any, where: str) -> Any:
    """`value` if it matches `schema`; else one TimmAssembleError: '`where`: FIELD must be ..., got ...'."""
    problem = _problem(value, schema, "")
    if problem is not None:
        raise TimmAssembleError(f"{where}: {problem}")
    return value
