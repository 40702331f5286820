"""The end of every reporting command: the table on stdout, then the JSON and the plot the user asked for."""

import json
import sys
from collections.abc import Callable
from typing import Any

from ..fileio import atomic_write

STDOUT_NAMES = ("-", "/dev/stdout")  # `--json -`: the JSON goes to stdout, after the table


def write_json(path: str, payload: Any) -> None:
    """Write `payload` as JSON atomically (a crash or a full disk leaves the previous file), or to stdout."""
    text = json.dumps(payload, indent=2) + "\n"
    if path in STDOUT_NAMES:
        sys.stdout.write(text)
        return
    atomic_write(path, text)
    print(f"wrote {path}")


def report(
    result: Any,
    table: str,
    json_path: str | None = None,
    plot_path: str | None = None,
    plot: Callable[[Any, str], None] | None = None,
) -> int:
    """Print `table`; write `result` as JSON and draw `plot(result, path)` where asked. Returns exit code 0."""
    print(table)
    if json_path:
        write_json(json_path, result)
    if plot_path and plot is not None:
        plot(result, plot_path)
        print(f"wrote {plot_path}")
    return 0
