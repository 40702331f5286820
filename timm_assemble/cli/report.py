"""The end of every reporting command: the table on stdout, then the JSON and the plot the user asked for.

With `--json -` standard output carries the JSON alone (the table and the other lines go to stderr), so it can be
piped into `jq`. Control characters in what is printed (a label name from a model folder's config) are escaped:
terminal escape sequences never reach the terminal.
"""

import json
import re
import sys
from collections.abc import Callable
from dataclasses import field
from typing import Any

from ..fileio import atomic_write, check_output, is_stdout

# the `--json OUT` flag of every reporting command
JSON_FIELD = field(default=None, metadata=dict(help="write the results as JSON ('-': stdout)", metavar="OUT"))


def check_outputs(opts: Any) -> None:
    """Before the work: `--json` and `--plot` must be paths the one writer may replace (or stdout for the JSON),
    none of them one of the command's declared inputs (`--json model.safetensors` would replace the weights)."""
    for flag in ("json", "plot"):
        path = getattr(opts, flag, None)
        if path and not (flag == "json" and is_stdout(path)):
            check_output(path, f"--{flag}")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every control character but newline and tab written as an escape (`\x1b`)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def write_json(path: str, payload: Any) -> None:
    """Write `payload` as JSON atomically (a crash or a full disk leaves the previous file); `-` or /dev/stdout
    print it after the table (the one writer decides, so a device or link is refused there, not here)."""
    atomic_write(path, json.dumps(payload, indent=2) + "\n")
    if not is_stdout(path):
        print(f"wrote {path}")


def report(
    result: Any,
    table: str,
    json_path: str | None = None,
    plot_path: str | None = None,
    plot: Callable[[Any, str], None] | None = None,
) -> int:
    """Print `table` (to stderr when the JSON goes to stdout); write `result` as JSON and draw `plot(result, path)`
    where asked. Returns exit code 0."""
    lines = sys.stderr if json_path and is_stdout(json_path) else sys.stdout
    print(printable(table), file=lines)
    if json_path:
        write_json(json_path, result)
    if plot_path and plot is not None:
        plot(result, plot_path)
        print(f"wrote {plot_path}", file=lines)
    return 0
