"""A progress bar for long commands: one redrawn line on a terminal, a line per item in a
log or a pipe (so a CI log shows what was done, not a smear of carriage returns)."""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["Bar"]


class Bar:
    WIDTH = 24

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.done = 0
        self.started = time.monotonic()
        self.closed = False

    def draw(self, current: str) -> None:
        """Redraw the bar, naming what is under way (terminals only)."""
        if not self.tty:
            return
        filled = self.WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        elapsed = time.monotonic() - self.started
        line = f"[{bar}] {self.done}/{self.total}  {elapsed:5.1f}s  {current}"
        self.stream.write(f"\r\x1b[K{line[:120]}")
        self.stream.flush()

    def advance(self, line: str, current: str = "") -> None:
        """One more item done: `line` says how it went, `current` names the next."""
        self.done += 1
        if self.tty:
            self.draw(current if self.done < self.total else "done")
        else:
            self.stream.write(f"[{self.done}/{self.total}] {line}\n")
            self.stream.flush()

    def close(self) -> None:
        """End the bar's line (once: closing again does nothing)."""
        if self.tty and not self.closed:
            self.stream.write("\n")
            self.stream.flush()
        self.closed = True
