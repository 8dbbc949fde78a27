"""Numbered progress lines for the export's long steps."""

from __future__ import annotations

import sys
import time
from typing import Callable


class Progress:
    """Numbered step lines on stderr with the time each step took."""

    def __init__(self, total: int, echo: Callable[[str], None] | None = None):
        self.total, self.done, self.started = total, 0, None
        self.echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))

    def step(self, what: str) -> None:
        self.finish()
        self.done += 1
        self.started = time.perf_counter()
        self.echo(f"[{self.done}/{self.total}] {what} ...")

    def finish(self) -> None:
        if self.started is not None:
            self.echo(f"      done in {time.perf_counter() - self.started:.1f}s")
            self.started = None
