"""Refusal events, aggregated: a client that is refused in a loop must not fill the store.

A refusal of a new kind (user, operation, needed role, role) is an event at once, with
`count` 1. Refusals of the same kind in the next `REFUSAL_WINDOW` seconds are only counted;
when the window ends, one event stands for them (`count`: how many; `path`: the last one)
and a new window starts, so a steady stream of refusals is one event per window. A window
with no repeat ends the kind: its next refusal is an event at once again.

Paths come from clients and are shortened to `MAX_EVENT_PATH` characters in events.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from ..events.catalog import PERMISSION, Emit

__all__ = ["MAX_EVENT_PATH", "REFUSAL_WINDOW", "RefusalAudit", "event_path"]

REFUSAL_WINDOW = 10.0
"""Seconds over which repeated refusals of one kind are counted into one event."""
MAX_EVENT_PATH = 1024
"""Characters of a client's path kept in an event (and in a refusal's message)."""

Kind = tuple[str | None, str, str, str]


def event_path(path: str) -> str:
    """A path as events record it: at most `MAX_EVENT_PATH` characters, `…` if shortened."""
    return path if len(path) <= MAX_EVENT_PATH else path[: MAX_EVENT_PATH - 1] + "…"


@dataclass
class _Window:
    start: float
    count: int = 0
    last: dict[str, Any] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


class RefusalAudit:
    def __init__(self, emit: Emit, window: float = REFUSAL_WINDOW) -> None:
        self.emit = emit
        self.window = window
        self._windows: dict[Kind, _Window] = {}

    def refused(self, data: dict[str, Any]) -> None:
        """Record one refusal (the event's fields but `count`)."""
        kind: Kind = (data.get("user"), data["operation"], data["needed"], data["role"])
        now = time.monotonic()
        window = self._windows.get(kind)
        if window is not None and window.timer is None and now - window.start >= self.window:
            self._end(kind)  # no event loop to end it on time: ended late, here
            window = self._windows.get(kind)
        if window is None:
            self.emit(PERMISSION, {**data, "count": 1})
            self._open(kind, now)
        else:
            window.count += 1
            window.last = data

    def _open(self, kind: Kind, now: float) -> None:
        window = self._windows[kind] = _Window(now)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        window.timer = loop.call_later(self.window, self._end, kind)

    def _end(self, kind: Kind) -> None:
        window = self._windows.pop(kind, None)
        if window is None or not window.count:
            return
        self.emit(PERMISSION, {**window.last, "count": window.count})
        self._open(kind, time.monotonic())

    def flush(self) -> None:
        """Emit what the open windows counted (at shutdown)."""
        for kind in list(self._windows):
            window = self._windows.pop(kind)
            if window.timer is not None:
                window.timer.cancel()
            if window.count:
                self.emit(PERMISSION, {**window.last, "count": window.count})
