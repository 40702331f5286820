"""Progress of an epoch: a live tqdm bar on a terminal, plain lines every log interval in a log file.

A bar redraws itself with carriage returns; written into a cluster job's log it becomes one endless line.
So the bar is used only when its stream is a terminal; otherwise `report` prints one line per call.
"""

from __future__ import annotations

import sys
import time
from typing import IO

from tqdm.auto import tqdm


def is_terminal(stream: IO[str]) -> bool:
    return bool(getattr(stream, "isatty", None)) and stream.isatty()


def format_seconds(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """`advance` once per batch (no device work); `report` at log intervals with already-computed values."""

    def __init__(self, total: int, desc: str, enabled: bool = True, bar_stream: IO[str] | None = None) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self.done = 0
        self.start = time.perf_counter()
        bar_stream = bar_stream or sys.stderr
        live = enabled and is_terminal(bar_stream)
        self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=bar_stream) if live else None

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def eta(self) -> float:
        """Seconds left in this epoch at the pace so far."""
        elapsed = time.perf_counter() - self.start
        return elapsed / max(self.done, 1) * (self.total - self.done)

    def report(self, values: dict[str, str]) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(values, refresh=True)
            return
        fields = "  ".join(f"{k} {v}" for k, v in values.items())
        percent = 100.0 * self.done / max(self.total, 1)
        print(
            f"{self.desc}  {self.done}/{self.total} ({percent:.0f}%)  {fields}  ETA {format_seconds(self.eta())}",
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
