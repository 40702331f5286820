"""Progress of long work, for every command: a live tqdm bar on a terminal, plain lines in a log file.

A bar redraws itself with carriage returns; written into a cluster job's log it becomes one endless line.
So the bar is used only when its stream is a terminal; otherwise `Progress.report` prints one line per call
(training: at log intervals) and `track` one line every `PLAIN_EVERY_S` seconds. Only the main process of
a launch shows progress.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

from tqdm.auto import tqdm

from .processes import is_main_by_env

PLAIN_EVERY_S = 30.0
T = TypeVar("T")


def is_terminal(stream: IO[str]) -> bool:
    return bool(getattr(stream, "isatty", None)) and stream.isatty()


def format_seconds(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """`advance` once per batch (no device work); `report` at log intervals with already-computed values, or
    by itself every `every_s` seconds in a log file."""

    def __init__(
        self,
        total: int,
        desc: str,
        enabled: bool = True,
        bar_stream: IO[str] | None = None,
        line_stream: IO[str] | None = None,
        every_s: float | None = None,
        leave: bool = False,
    ) -> None:
        self.total, self.desc, self.enabled, self.every_s = total, desc, enabled, every_s
        self.done = 0
        self.start = self.reported = time.perf_counter()
        self.line_stream = line_stream  # None: stdout, looked up when printing
        bar_stream = bar_stream or sys.stderr
        live = enabled and is_terminal(bar_stream)
        self.bar = tqdm(total=total, desc=desc, leave=leave, dynamic_ncols=True, file=bar_stream) if live else None

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.every_s is not None and time.perf_counter() - self.reported >= self.every_s:
            self.report()

    def eta(self) -> float:
        """Seconds left at the pace so far."""
        elapsed = time.perf_counter() - self.start
        return elapsed / max(self.done, 1) * (self.total - self.done)

    def report(self, values: dict[str, str] | None = None) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(values or {}, refresh=True)
            return
        fields = "".join(f"  {k} {v}" for k, v in (values or {}).items())
        percent = 100.0 * self.done / max(self.total, 1)
        self.reported = time.perf_counter()
        print(
            f"{self.desc}  {self.done}/{self.total} ({percent:.0f}%){fields}  ETA {format_seconds(self.eta())}",
            file=self.line_stream or sys.stdout,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def evaluation_progress(total: int, desc: str, leave: bool = False) -> Progress:
    """Progress of a command's work on stderr (stdout stays for results: `--json -`): a live bar on a terminal,
    a plain line every PLAIN_EVERY_S seconds in a log file; nothing from the other processes of a launch."""
    return Progress(total, desc, enabled=is_main_by_env(), line_stream=sys.stderr, every_s=PLAIN_EVERY_S, leave=leave)


def track(items: Iterable[T], desc: str, total: int | None = None, leave: bool = False) -> Iterator[T]:
    """`items`, advancing an `evaluation_progress` per item."""
    progress = evaluation_progress(len(items) if total is None else total, desc, leave=leave)  # type: ignore[arg-type]
    try:
        for item in items:
            yield item
            progress.advance()
    finally:
        progress.close()
