"""Room life cycle: one open per room, eviction when idle, holds that keep a room open."""

from __future__ import annotations

import asyncio

import pytest
from yclient import until

from jupyter_datastore.errors import Forbidden, NotFound
from jupyter_datastore.rooms import Room, RoomManager, RoomOwner

from .test_room import RecordingPeer


class Opener:
    def __init__(self) -> None:
        self.opened: list[str] = []
        self.closed: list[str] = []

    async def __call__(self, name: str) -> Room:
        if name == "missing":
            raise NotFound("no such room")
        await asyncio.sleep(0)
        self.opened.append(name)
        closed = self.closed

        class Owner(RoomOwner):
            async def on_close(self) -> None:
                closed.append(name)

        return Room(name, owner=Owner())


async def test_concurrent_joins_share_one_open() -> None:
    opener = Opener()
    manager = RoomManager(opener, idle_timeout=60)
    rooms = await asyncio.gather(*(manager.join("a", RecordingPeer()) for _ in range(5)))
    assert opener.opened == ["a"]
    assert len({id(room) for room in rooms}) == 1 and len(rooms[0].peers) == 5
    await manager.stop()


async def test_an_idle_room_is_closed_after_the_delay_and_reopened_on_demand() -> None:
    opener = Opener()
    manager = RoomManager(opener, idle_timeout=0.05)
    peer = RecordingPeer()
    room = await manager.join("a", peer)
    manager.leave(room, peer)
    await until(lambda: "a" not in manager.rooms)
    assert opener.closed == ["a"]
    again = await manager.join("a", RecordingPeer())
    assert again is not room and opener.opened == ["a", "a"]
    await manager.stop()


async def test_a_peer_returning_within_the_delay_keeps_the_room() -> None:
    opener = Opener()
    manager = RoomManager(opener, idle_timeout=0.2)
    peer = RecordingPeer()
    room = await manager.join("a", peer)
    manager.leave(room, peer)
    assert await manager.join("a", RecordingPeer()) is room
    await asyncio.sleep(0.4)  # longer than the delay: the room must still be there
    assert manager.rooms["a"] is room and opener.closed == []
    await manager.stop()


async def test_a_hold_keeps_a_room_with_no_peer_open() -> None:
    opener = Opener()
    manager = RoomManager(opener, idle_timeout=0.05)
    async with manager.hold("a") as room:
        await asyncio.sleep(0.2)  # four delays
        assert manager.rooms["a"] is room and opener.closed == []
    await until(lambda: "a" not in manager.rooms)
    await manager.stop()


async def test_open_errors_reach_every_waiter_and_leave_nothing_behind() -> None:
    manager = RoomManager(Opener(), idle_timeout=60)
    results = await asyncio.gather(
        manager.join("missing", RecordingPeer()),
        manager.join("missing", RecordingPeer()),
        return_exceptions=True,
    )
    assert all(isinstance(r, NotFound) for r in results)
    assert manager.rooms == {}
    with pytest.raises(NotFound):
        await manager.get("missing")
    await manager.stop()


async def test_stop_closes_peers_and_rooms() -> None:
    opener = Opener()
    manager = RoomManager(opener, idle_timeout=60)
    peer = RecordingPeer()
    await manager.join("a", peer)
    await manager.stop()
    assert peer.closed and opener.closed == ["a"] and manager.rooms == {}


async def test_a_discarded_room_closes_its_peers_and_a_new_open_waits_for_the_close() -> None:
    opener = Opener()
    manager = RoomManager(opener, idle_timeout=60)
    peer = RecordingPeer()
    room = await manager.join("a", peer)
    discarding = asyncio.ensure_future(manager.discard("a", "the fork was deleted"))
    await asyncio.sleep(0)
    assert manager.opened("a") is None  # closing: not served
    again = await manager.get("a")  # waits for the close, then opens anew
    await discarding
    assert peer.closed
    assert again is not room and opener.closed == ["a"] and opener.opened == ["a", "a"]
    assert manager.opened("a") is again
    await manager.discard("nothing", "never open")  # nothing to do
    await manager.stop()


async def test_rooms_the_server_makes_are_pinned_or_adopted() -> None:
    manager = RoomManager(Opener(), idle_timeout=0.05)
    pinned, adopted = Room("state"), Room("timeline")
    manager.pin(pinned)
    manager.adopt(adopted)
    with pytest.raises(ValueError, match="open already"):
        manager.pin(Room("state"))
    with pytest.raises(ValueError, match="open already"):
        manager.adopt(Room("timeline"))
    await until(lambda: "timeline" not in manager.rooms, what="the adopted room freed")
    assert manager.rooms["state"] is pinned  # pinned: never freed while the server runs
    await manager.stop()


async def test_undo_history_is_found_only_in_an_open_room_and_for_a_named_user() -> None:
    manager = RoomManager(Opener(), idle_timeout=60)
    with pytest.raises(NotFound, match="not open"):
        manager.history_room("a", "alice")
    room = await manager.join("a", RecordingPeer())
    assert manager.history_room("a", "alice") is room
    for nobody in (None, "8c4f2b0e9a1d4c7f8e6b5a4d3c2b1a09"):  # a shared token names no one
        with pytest.raises(Forbidden, match="per user"):
            manager.history_room("a", nobody)
    await manager.stop()
