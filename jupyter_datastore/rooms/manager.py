"""The rooms of a server: opened on first use, shared by every peer, freed when idle.

A room is idle when no peer is connected and no server-side user holds it (an execution
writing outputs, for instance). An idle room is closed after `idle_timeout` seconds; a peer
joining or a hold taken in the meantime keeps it. Closing persists what is pending and lets
the room's owner (a document session) save, then the room is forgotten; a peer asking for
it while it closes waits and gets a freshly opened one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from ..errors import Forbidden, NotFound
from ..events.catalog import PEER, Emit, no_emit
from .room import Peer, Room
from .undo import is_named

__all__ = ["RoomManager"]

log = logging.getLogger(__name__)

Opener = Callable[[str], Awaitable[Room]]


class RoomManager:
    def __init__(
        self,
        opener: Opener,
        *,
        idle_timeout: float = 60.0,
        emit: Emit = no_emit,
        on_closed: Callable[[], None] = lambda: None,
    ) -> None:
        self._opener = opener
        self.idle_timeout = idle_timeout
        self.emit = emit
        self.on_closed = on_closed
        """Called after each room has closed (its memory is free: see `memory.Trim`)."""
        self.rooms: dict[str, Room] = {}
        self._opening: dict[str, asyncio.Future[Room]] = {}
        self._closing: dict[str, asyncio.Task[None]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    async def get(self, name: str) -> Room:
        """The open room `name`, opening it if needed (concurrent callers share one open)."""
        while True:
            closing = self._closing.get(name)
            if closing is not None:
                await asyncio.shield(closing)
                continue
            room = self.rooms.get(name)
            if room is not None:
                return room
            opening = self._opening.get(name)
            if opening is None:
                opening = self._opening[name] = asyncio.ensure_future(self._open(name))
            return await asyncio.shield(opening)

    async def _open(self, name: str) -> Room:
        try:
            room = await self._opener(name)
            self.rooms[name] = room
            self._schedule_if_idle(room)
            return room
        finally:
            del self._opening[name]

    async def join(self, name: str, peer: Peer, *, user: str | None = None) -> Room:
        """Add a peer to a room (`user`: who it is, for the peer events and their undo
        history in the room)."""
        room = await self.get(name)
        self._cancel_timer(name)
        room.join(peer, user)
        self._peer_event("joined", room, user)
        return room

    def leave(self, room: Room, peer: Peer) -> None:
        joined = peer in room.peers
        user = room.peers.get(peer)
        room.leave(peer)
        if joined:
            self._peer_event("left", room, user)
        self._schedule_if_idle(room)

    def _peer_event(self, action: str, room: Room, user: str | None) -> None:
        data = {"action": action, "room_id": room.name, "peers": len(room.peers), "user": user}
        self.emit(PEER, data)

    def users_in(self, room: Room) -> list[str | None]:
        """Who each peer of a room is (None: a peer with no name)."""
        return list(room.peers.values())

    def opened(self, name: str) -> Room | None:
        """The room `name` if it is open now (None while it opens or closes, or when it is
        not open): for what only an open room has, such as its peers' undo histories."""
        if name in self._closing:
            return None
        return self.rooms.get(name)

    def history_room(self, name: str, user: str | None) -> Room:
        """The open room `name`, where `user`'s undo history lives: `Forbidden` for a request
        that names no user (history is per user), `NotFound` when the room is not open."""
        if user is None or not is_named(user):
            raise Forbidden(
                "undo and redo are per user, and this request names none (a shared token "
                "identifies no one): sign in as a user"
            )
        room = self.opened(name)
        if room is None:
            raise NotFound(f"room {name} is not open (undo history lives in open rooms)")
        return room

    def pin(self, room: Room) -> None:
        """Serve a room the server made itself; it stays open until the server stops."""
        if room.name in self.rooms:
            raise ValueError(f"room {room.name} is open already")
        room.holds += 1
        self.rooms[room.name] = room

    def adopt(self, room: Room) -> None:
        """Serve a room the server made itself (a timeline's fork); it is freed when idle,
        like any other, and is then gone for good."""
        if room.name in self.rooms:
            raise ValueError(f"room {room.name} is open already")
        self.rooms[room.name] = room
        self._schedule_if_idle(room)

    async def discard(self, name: str, reason: str) -> None:
        """Close a room now, peers or not (a fork deleted): its peers get 4404 and `reason`."""
        room = self.rooms.get(name)
        if room is None or name in self._closing:
            return
        self._cancel_timer(name)
        for peer in list(room.peers):
            peer.close(4404, json.dumps({"error": "not_found", "detail": reason}))
            self.leave(room, peer)
        self._cancel_timer(name)
        self._closing[name] = task = asyncio.ensure_future(self._close(room))
        await asyncio.shield(task)

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[Room]:
        """Keep a room open while the server works in it, peers or not."""
        room = await self.get(name)
        self._cancel_timer(name)
        room.holds += 1
        try:
            yield room
        finally:
            room.holds -= 1
            self._schedule_if_idle(room)

    def _schedule_if_idle(self, room: Room) -> None:
        if room.idle and self.rooms.get(room.name) is room and room.name not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[room.name] = loop.call_later(self.idle_timeout, self._evict, room)

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _evict(self, room: Room) -> None:
        self._timers.pop(room.name, None)
        if room.idle and self.rooms.get(room.name) is room:
            self._closing[room.name] = asyncio.ensure_future(self._close(room))

    async def _close(self, room: Room) -> None:
        try:
            await room.close()
        except Exception:
            log.exception("room %s did not close cleanly", room.name)
        finally:
            self.rooms.pop(room.name, None)
            del self._closing[room.name]
            self.on_closed()

    async def stop(self) -> None:
        for name in list(self._timers):
            self._cancel_timer(name)
        for room in list(self.rooms.values()):
            for peer in list(room.peers):
                peer.close(1001, '{"error": "shutting_down", "detail": "server is stopping"}')
            if room.name not in self._closing:
                self._closing[room.name] = asyncio.ensure_future(self._close(room))
        await asyncio.gather(*self._closing.values(), return_exceptions=True)
