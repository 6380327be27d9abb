"""The state room's document: one top-level Y map per kind of thing, keyed by id or name.

Each entry is a plain JSON value (a Y `Map` of JSON objects, not of nested Y types): an
entry changes as a whole, so a client reads `doc.getMap("kernels").get(id)` and gets the
same object as `GET /api/kernels/{id}`, plus what we add. A Python copy of every map is kept
beside the document so that only entries that really changed are written (a refresh that
finds nothing new sends nothing) and the JSON snapshot needs no Y decoding.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from jupyter_server._tz import isoformat
from pycrdt import Map

from ..documents.roomid import STATE_ROOM
from ..rooms.room import Room

__all__ = ["MAPS", "STATE_ROOM", "Change", "Listener", "StateModel"]

log = logging.getLogger(__name__)

MAPS: tuple[str, ...] = (
    "kernels",
    "sessions",
    "terminals",
    "kernelspecs",
    "status",
    "executions",
    "documents",
    "contents",
)

Change = tuple[str, str, Any]
"""(map, key, value); a value of None removes the entry."""

Listener = Callable[[list[Change]], None]
"""Called after each write with the changes it made (never empty), synchronously."""


class StateModel:
    def __init__(self, room: Room) -> None:
        self.room = room
        self.maps: dict[str, dict[str, Any]] = {name: {} for name in MAPS}
        self.listeners: list[Listener] = []
        """Told of every write once it is applied (the live feeds, `feed.py`): one call per
        write, so a burst of changes costs each listener one look."""

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: dict(entries) for name, entries in self.maps.items()}

    def write(self, changes: Iterable[Change]) -> int:
        """Apply the changes that change something, in one transaction; how many there were."""
        real = [(name, key, _plain(value)) for name, key, value in changes]
        real = [c for c in real if self._differs(*c)]
        if not real:
            return 0
        with self.room.document() as doc:
            for name, key, value in real:
                ymap = doc.get(name, type=Map)
                entries = self.maps[name]
                if value is None:
                    del ymap[key]
                    del entries[key]
                else:
                    ymap[key] = value
                    entries.pop(key, None)  # re-inserted last: the dict keeps write order
                    entries[key] = value
        for listener in list(self.listeners):
            try:
                listener(real)
            except Exception:  # one broken listener must not stop the model, nor the others
                log.exception("a listener of the state model failed")
        return len(real)

    def replacing(self, name: str, entries: dict[str, Any]) -> list[Change]:
        """The changes that make map `name` hold exactly `entries`."""
        gone: list[Change] = [(name, key, None) for key in self.maps[name] if key not in entries]
        return gone + [(name, key, value) for key, value in entries.items()]

    def _differs(self, name: str, key: str, value: Any) -> bool:
        entries = self.maps[name]
        if value is None:
            return key in entries
        return bool(entries.get(key) != value)


def _plain(value: Any) -> Any:
    """The value as JSON has it: what the managers give holds datetimes, for one."""
    if value is None:
        return None
    return json.loads(json.dumps(value, default=_encode))


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoformat(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
