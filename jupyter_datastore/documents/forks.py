"""Forks of a document room, and timelines: a document's history as a room of its own.

A fork is a copy of a document room under a new id (`uuid4().hex`, as jupyter-collaboration
names them) that peers edit apart from the root; deleting it with `merge` adds its changes
to the root. Being a copy of the root's Yjs state, it shares the root's item ids, so
merging adds only what was done in the fork. A fork's updates are kept in the store like a
document's, under its id: it survives its room being freed and the server restarting. A
synchronized fork follows its root one way (the root's changes reach the fork, not back)
and holds the root room open while it is open itself.

A timeline is a fork made for moving through the root's history (JupyterLab's time
slider): its points in time are the store's history points of the root, and moving to one
makes the fork's content what the document was then, as granular edits on the fork. The
client shows the fork; `restore` merges the fork into the root (the past content becomes
the root's current one, as new changes, so no one's copy is rewound). A timeline lives in
memory only and ends when its room is freed or restored.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc

from ..errors import Conflict, NotFound
from ..events.catalog import FORK, Emit, no_emit
from ..rooms.manager import RoomManager
from ..rooms.room import Room, RoomOwner, RoomSettings
from ..store.base import HistoryPoint, Store, StoredDocument
from .kinds import DocumentKind
from .roomid import RoomId, is_fork_id

__all__ = ["Forks", "is_fork_id"]

ROOT = "root"
"""Origin of the root's changes reaching a synchronized fork."""


@dataclass
class Timeline:
    root: str
    kind: DocumentKind
    stored: StoredDocument
    points: list[HistoryPoint]
    position: int
    """The index in `points` of the state the fork shows."""


class Forks:
    def __init__(
        self, store: Store, rooms: RoomManager, settings: RoomSettings, emit: Emit = no_emit
    ) -> None:
        self.store = store
        self.rooms = rooms
        self.settings = settings
        self.emit = emit
        self._info: dict[str, dict[str, Any]] = {}  # fork id -> its info, "root_roomid" in it
        self._timelines: dict[str, Timeline] = {}

    async def start(self) -> None:
        self._info = await self.store.forks()

    def root_of(self, fork_id: str) -> str | None:
        """The root room of a fork or timeline (None: no such fork)."""
        timeline = self._timelines.get(fork_id)
        if timeline is not None:
            return timeline.root
        info = self._info.get(fork_id)
        return str(info["root_roomid"]) if info is not None else None

    # --- forks ---

    def of(self, root: str) -> dict[str, dict[str, Any]]:
        """The forks of a room, by id."""
        return {fork: info for fork, info in self._info.items() if info["root_roomid"] == root}

    async def create(
        self, root_id: RoomId, *, synchronize: bool, title: str, description: str, user: str
    ) -> tuple[str, dict[str, Any]]:
        """A new fork of the document room `root_id`, holding the root's state now."""
        root = str(root_id)
        fork_id = uuid.uuid4().hex
        info = {
            "root_roomid": root,
            "synchronize": synchronize,
            "title": title,
            "description": description,
        }
        async with self.rooms.hold(root) as root_room:
            await root_room.flushed()
            state = root_room.state()
        await self.store.append(fork_id, 1, state)
        await self.store.put_fork(fork_id, root, info)
        self._info[fork_id] = info
        self._event("create", fork_id, info, user)
        return fork_id, info

    def _event(self, action: str, fork_id: str, info: dict[str, Any], user: str) -> None:
        data = {"action": action, "fork_roomid": fork_id, "fork_info": info, "username": user}
        self.emit(FORK, data)

    async def delete(self, fork_id: str, *, merge: bool, user: str) -> dict[str, Any]:
        """Close and forget a fork; with `merge`, its changes are added to the root first."""
        info = self._info.get(fork_id)
        if info is None:
            raise NotFound(f"no fork {fork_id}")
        root = str(info["root_roomid"])
        if merge:
            async with self.rooms.hold(fork_id) as fork, self.rooms.hold(root) as root_room:
                await fork.flushed()
                root_room.merge_from(fork.state())
                await root_room.flushed()
        del self._info[fork_id]
        await self.rooms.discard(fork_id, "this fork was deleted")
        await self.store.delete_fork(fork_id)
        await self.store.delete_document(fork_id)
        self._event("delete", fork_id, info, user)
        return info

    async def open_room(self, name: str) -> Room:
        """The room of a fork (the room manager's opener for fork ids)."""
        info = self._info.get(name)
        if info is None:
            raise NotFound(f"no fork or timeline {name} (timelines end when their room is freed)")
        stored = await self.store.load(name)
        rows = [update for _, update in stored.updates] if stored is not None else []
        last = stored.last_seq if stored is not None else 0

        async def persist(seq: int, update: bytes) -> None:
            await self.store.append(name, seq, update)

        owner = _Fork()
        room = Room(
            name,
            rows,
            persist=persist,
            seq=last,
            settings=self.settings,
            emit=self.emit,
            owner=owner,
        )
        if info.get("synchronize"):
            stack = owner.stack
            root = await stack.enter_async_context(self.rooms.hold(str(info["root_roomid"])))
            room.merge_from(root.state(), origin=ROOT)  # what the root did meanwhile

            def follow(update: bytes) -> None:
                room.push(update, origin=ROOT)

            stack.callback(root.follow(follow))
        return room

    # --- timelines ---

    async def timeline(self, root_id: RoomId) -> tuple[str, list[float]]:
        """A new timeline of `root_id`: its id and the times of its points, oldest first."""
        root, kind = str(root_id), root_id.kind
        async with self.rooms.hold(root) as root_room:
            await root_room.flushed()
            state = root_room.state()
            stored, points = await asyncio.gather(self.store.load(root), self.store.history(root))
        if stored is None or not points:
            raise NotFound(f"the store has no history of {root}")
        fork_id = uuid.uuid4().hex
        owner = _Timeline(self._timelines, fork_id)
        room = Room(fork_id, [state], settings=self.settings, emit=self.emit, owner=owner)
        self._timelines[fork_id] = Timeline(root, kind, stored, points, len(points) - 1)
        self.rooms.adopt(room)
        return fork_id, [point.time for point in points]

    async def move(self, root: str, fork_id: str, steps: int) -> bool:
        """Move a timeline `steps` points (back if negative); False if it is at the end."""
        timeline = self._timeline(root, fork_id)
        target = min(max(timeline.position + steps, 0), len(timeline.points) - 1)
        if target == timeline.position:
            return False
        past: Doc[Any] = Doc()
        state = timeline.stored.state_at(timeline.points[target].seq)
        if state is not None:
            past.apply_update(state)
        content = timeline.kind.read(past)
        room = self.rooms.opened(fork_id)
        if room is None:
            raise NotFound(f"timeline {fork_id} has ended")
        with room.document() as doc:
            timeline.kind.apply(doc, content)
        timeline.position = target
        await room.flushed()
        return True

    async def restore(self, root: str, fork_id: str) -> None:
        """Make the timeline's state the root's current content; the timeline ends."""
        self._timeline(root, fork_id)
        fork = self.rooms.opened(fork_id)
        if fork is None:
            raise NotFound(f"timeline {fork_id} has ended")
        async with self.rooms.hold(root) as root_room:
            root_room.merge_from(fork.state())
            await root_room.flushed()
        del self._timelines[fork_id]

    def _timeline(self, root: str, fork_id: str) -> Timeline:
        timeline = self._timelines.get(fork_id)
        if timeline is None:
            raise NotFound(f"no timeline {fork_id} (it ends when its room is freed)")
        if timeline.root != root:
            raise Conflict(f"timeline {fork_id} is not one of room {root}")
        return timeline


class _Fork(RoomOwner):
    """The owner of a fork's room: what the room holds while open (a synchronized fork's
    root room, its following) is let go when it closes."""

    def __init__(self) -> None:
        self.stack = AsyncExitStack()

    async def on_close(self) -> None:
        await self.stack.aclose()


class _Timeline(RoomOwner):
    """The owner of a timeline's room: the timeline ends when its room closes."""

    def __init__(self, timelines: dict[str, Timeline], fork_id: str) -> None:
        self.timelines = timelines
        self.fork_id = fork_id

    async def on_close(self) -> None:
        self.timelines.pop(self.fork_id, None)
