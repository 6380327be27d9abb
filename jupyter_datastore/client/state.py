"""`StateView`: the Jupyter server's state, live, from the read-only room `datastore:state`.

The room's doc has one top-level Y map per kind of thing (kernels, sessions, terminals,
kernelspecs, status, executions, documents, contents), keyed by id or name, whose values
are plain JSON objects: the same as the REST API gives (`GET /api/kernels/{id}`), plus
what the datastore adds. A server restart gives the room a new session id: the view then
starts again from a fresh doc (`reloads` counts that), and `changes()` reports the
difference.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_ydoc.utils import cast_all
from pycrdt import Map

from .errors import ClientError
from .room import Room

__all__ = ["StateChange", "StateChanges", "StateView"]


@dataclass(frozen=True)
class StateChange:
    map: str
    key: str
    value: Any
    """The new value; None when the entry was removed."""


class StateChanges:
    """The entries that change from the moment it was made, in order: an async iterator
    (close it when done, or use it with `async with`). A reader that falls more than
    `limit` changes behind gets a `ClientError` (read the snapshot then, and go on)."""

    def __init__(self, view: StateView, limit: int) -> None:
        self.view = view
        self.items: deque[StateChange] = deque()
        self.limit = limit
        self.overflowed = self.closed = False

    def put(self, change: StateChange) -> None:
        if len(self.items) >= self.limit:
            self.overflowed = True
            self.items.clear()
        elif not self.overflowed:
            self.items.append(change)

    def __aiter__(self) -> StateChanges:
        return self

    async def __anext__(self) -> StateChange:
        await self.view.room.wait_for(lambda: bool(self.items or self.overflowed or self.closed))
        if self.closed:
            raise StopAsyncIteration
        if self.overflowed:
            raise ClientError("state changes came faster than they were read")
        return self.items.popleft()

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(ValueError):
            self.view._subscribers.remove(self)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> StateChanges:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


MAPS = (
    "kernels",
    "sessions",
    "terminals",
    "kernelspecs",
    "status",
    "executions",
    "documents",
    "contents",
)
"""The state room's maps (the server's list is `jupyter_datastore.state.model.MAPS`)."""


class StateView:
    def __init__(self, room: Room, max_queued: int = 10_000) -> None:
        self.room = room
        self._max_queued = max_queued
        self._subscribers: list[StateChanges] = []
        self._last: dict[str, dict[str, Any]] = {}
        room.on_remote_change.append(self._on_change)

    @property
    def reloads(self) -> int:
        """How many times the view started again from a fresh doc (the server restarted)."""
        return self.room.reloads

    @property
    def connected(self) -> bool:
        return self.room.connected

    def __getitem__(self, name: str) -> dict[str, Any]:
        """One map's entries, as plain JSON."""
        if name not in self._names():
            return {}
        entries = self.room.doc.get(name, type=Map).to_py() or {}
        return dict(cast_all(entries, float, int))  # Yjs numbers are floats

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every map, those with no entry yet included (as {})."""
        names = [*MAPS, *(name for name in self._names() if name not in MAPS)]
        return {name: self[name] for name in names}

    def _names(self) -> list[str]:
        return list(self.room.doc.keys())

    @property
    def kernels(self) -> dict[str, Any]:
        return self["kernels"]

    @property
    def sessions(self) -> dict[str, Any]:
        return self["sessions"]

    @property
    def terminals(self) -> dict[str, Any]:
        return self["terminals"]

    @property
    def kernelspecs(self) -> dict[str, Any]:
        return self["kernelspecs"]

    @property
    def executions(self) -> dict[str, Any]:
        return self["executions"]

    @property
    def documents(self) -> dict[str, Any]:
        return self["documents"]

    @property
    def status(self) -> dict[str, Any]:
        return self["status"]

    @property
    def contents(self) -> dict[str, Any]:
        return self["contents"]

    async def wait_for(
        self, predicate: Callable[[StateView], bool], timeout: float | None = 30.0
    ) -> None:
        """Wait until `predicate(self)` holds, checked at every change."""
        await self.room.wait_for(lambda: predicate(self), timeout)

    def changes(self) -> StateChanges:
        """Every entry that changes from now on (`StateChange(map, key, value)`), in order."""
        changes = StateChanges(self, self._max_queued)
        if not self._subscribers:
            self._last = self.snapshot()
        self._subscribers.append(changes)
        return changes

    def _on_change(self) -> None:
        if not self._subscribers:
            return
        current = self.snapshot()
        for name in current.keys() | self._last.keys():
            before, after = self._last.get(name, {}), current.get(name, {})
            for key in before.keys() | after.keys():
                if before.get(key) != after.get(key):
                    for subscriber in self._subscribers:
                        subscriber.put(StateChange(name, key, after.get(key)))
        self._last = current

    async def close(self) -> None:
        await self.room.close(flush=False)
