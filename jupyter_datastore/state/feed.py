"""Live per-user JSON feeds of the server's state (`WS /api/datastore/state/subscribe`).

The state room shows the whole server, so only a user who may view every document opens it;
a feed gives anyone their own view (`views.py`), live, as JSON. Each feed keeps the view it
last sent and, after each write of the model, sends the difference to its new view: one
frame per write at most, none when the write changed nothing the user sees.

    {"type": "state", "state": {...}}                 first: as GET /api/datastore/state
    {"type": "changes", "changes": [[map, key, value], ...]}   value null: the entry left

A user who sees everything is sent each write's changes as they are (nothing to compute, and
nothing kept: what they were sent is the model itself); anyone else's view is computed again
from the snapshot, taken once per write for all feeds. A change of rules changes views
without a write: the socket's live re-check (`auth/live.py`) calls `refresh`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .model import MAPS, Change, StateModel
from .views import view_of

__all__ = ["StateFeed", "StateFeeds", "diff"]

log = logging.getLogger(__name__)

Frame = Callable[[dict[str, Any]], None]
Close = Callable[[int, str], None]
Snapshot = Callable[[], dict[str, Any]]


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """The changes that make the maps of view `before` those of view `after`."""
    changes: list[Change] = []
    for name in MAPS:
        old = before.get(name) or {}
        new = after.get(name) or {}
        changes += [(name, key, None) for key in old if key not in new]
        changes += [(name, key, value) for key, value in new.items() if old.get(key) != value]
    return changes


def _merged(changes: list[Change]) -> list[Change]:
    """The changes with one per entry, the last one of each (as applying them in order)."""
    last: dict[tuple[str, str], Any] = {}
    for name, key, value in changes:
        last.pop((name, key), None)
        last[(name, key)] = value
    return [(name, key, value) for (name, key), value in last.items()]


class StateFeed:
    """One subscriber: what it was last sent, and what it is told when that changes."""

    def __init__(
        self,
        snapshot: Snapshot,
        sees_everything: Callable[[], bool],
        may_view: Callable[[str], bool],
        frame: Frame,
    ) -> None:
        self._snapshot = snapshot
        self.sees_everything = sees_everything
        self.may_view = may_view
        self.frame = frame
        self.last: dict[str, Any] | None = None
        """The view last sent; None while that is the whole model (a user who sees all)."""

    def _view(self, snapshot: dict[str, Any]) -> dict[str, Any] | None:
        """The user's view now (None: the whole snapshot)."""
        if self.sees_everything():
            return None
        return view_of(snapshot, self.may_view)

    def start(self) -> dict[str, Any]:
        """Send the first frame, the user's whole view; it is returned too."""
        snapshot = self._snapshot()
        self.last = self._view(snapshot)
        state = snapshot if self.last is None else self.last
        self.frame({"type": "state", "state": state})
        return state

    def on_write(self, changes: list[Change], snapshot: Snapshot) -> None:
        """After a write of the model (`changes`); `snapshot` gives the model as it is now."""
        if self.last is None:  # they had the whole model, up to this write
            if self.sees_everything():
                self._send(changes)
                return
            current = snapshot()
            self.last = view_of(current, self.may_view)
            self._send(_merged(changes + diff(current, self.last)))
            return
        self.refresh(snapshot())

    def refresh(self, snapshot: dict[str, Any] | None = None) -> None:
        """Send what changed in the user's view since the last frame (their rights may
        have changed)."""
        current = self._snapshot() if snapshot is None else snapshot
        before = current if self.last is None else self.last
        new = self._view(current)
        self.last = new
        self._send(diff(before, current if new is None else new))

    def _send(self, changes: list[Change]) -> None:
        if changes:
            self.frame({"type": "changes", "changes": [list(change) for change in changes]})


class StateFeeds:
    """Every open feed, told of each write of the model once it is applied."""

    def __init__(self, model: StateModel, snapshot: Snapshot) -> None:
        self.model = model
        self.snapshot = snapshot
        self.feeds: dict[StateFeed, Close] = {}
        self.stopped = False
        model.listeners.append(self._on_write)

    def open(
        self,
        sees_everything: Callable[[], bool],
        may_view: Callable[[str], bool],
        frame: Frame,
        close: Close,
    ) -> StateFeed:
        """A new feed, its first frame sent (closed at once with 1001 once stopped)."""
        feed = StateFeed(self.snapshot, sees_everything, may_view, frame)
        if self.stopped:
            close(1001, _STOPPING)
            return feed
        feed.start()
        self.feeds[feed] = close
        return feed

    def close(self, feed: StateFeed) -> None:
        self.feeds.pop(feed, None)

    def _on_write(self, changes: list[Change]) -> None:
        taken: list[dict[str, Any]] = []

        def snapshot() -> dict[str, Any]:  # one for all the feeds that need it
            if not taken:
                taken.append(self.snapshot())
            return taken[0]

        for feed in list(self.feeds):
            try:
                feed.on_write(changes, snapshot)
            except Exception:
                log.exception("a state feed could not be told of a change")

    def stop(self) -> None:
        """The server is stopping: every feed closes with 1001."""
        self.stopped = True
        if self._on_write in self.model.listeners:
            self.model.listeners.remove(self._on_write)
        feeds, self.feeds = self.feeds, {}
        for close in feeds.values():
            close(1001, _STOPPING)


_STOPPING = '{"error": "shutting_down", "detail": "server is stopping"}'
