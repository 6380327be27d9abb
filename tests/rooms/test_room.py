"""A room with in-memory peers: batching, durability before broadcast, awareness."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pycrdt import Doc, Text, get_state
from yclient import until

from jupyter_datastore.errors import BadRequest
from jupyter_datastore.protocol.awareness import AwarenessEntry, encode_awareness_update
from jupyter_datastore.protocol.frames import Outgoing
from jupyter_datastore.protocol.lib0 import Reader
from jupyter_datastore.protocol.messages import (
    SaveRequest,
    SyncStep1,
    SyncUpdate,
    awareness_message,
    decode_state_vector,
    parse_message,
)
from jupyter_datastore.rooms import SERVER, Room, RoomOwner, RoomSettings
from jupyter_datastore.rooms.room import FULL_INTERVAL_PEERS


class RecordingPeer:
    """A peer that keeps what it is sent, decoded as (kind, payload)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.closed = False

    def send(self, message: Outgoing) -> None:
        reader = Reader(message.message)
        kind = reader.read_var_uint()
        if kind == 0:
            step = reader.read_var_uint()
            self.sent.append((["step1", "step2", "update"][step], reader.read_var_bytes()))
        elif kind == 1:
            self.sent.append(("awareness", reader.read_var_bytes()))
        else:
            self.sent.append(("raw", json.loads(reader.read_var_string())))

    def close(self, code: int, reason: str) -> None:
        self.closed = True

    def of(self, kind: str) -> list[Any]:
        return [payload for k, payload in self.sent if k == kind]


def edit(text: str, base: Doc | None = None) -> bytes:
    """An update inserting `text` into a client's copy of the document."""
    doc: Doc = Doc()
    if base is not None:
        doc.apply_update(base.get_update())
    before = doc.get_state()
    t = doc.get("t", type=Text)
    t.insert(len(str(t)), text)
    return doc.get_update(before)


async def settle(room: Room) -> None:
    await room.flushed()


def text_of(room: Room) -> str:
    doc: Doc = Doc()
    doc.apply_update(room.state())
    return str(doc.get("t", type=Text))


async def test_join_sends_our_state_vector_then_presence() -> None:
    room = Room("r")
    first = RecordingPeer()
    room.join(first)
    update = encode_awareness_update([AwarenessEntry(5, 1, '{"u": 1}')])
    room.receive(first, parse_message(awareness_message(update)))
    second = RecordingPeer()
    room.join(second)
    assert [k for k, _ in second.sent] == ["step1", "awareness"]
    await room.close()


async def test_an_update_reaches_the_others_once_and_not_its_sender() -> None:
    room = Room("r")
    a, b, c = RecordingPeer(), RecordingPeer(), RecordingPeer()
    for peer in (a, b, c):
        room.join(peer)
    room.receive(a, SyncUpdate(edit("hi")))
    await settle(room)
    assert a.of("update") == []
    assert len(b.of("update")) == 1 and len(c.of("update")) == 1
    assert text_of(room) == "hi"
    await room.close()


async def test_updates_arriving_together_are_broadcast_as_one() -> None:
    room = Room("r")
    a, b, reader = RecordingPeer(), RecordingPeer(), RecordingPeer()
    for peer in (a, b, reader):
        room.join(peer)
    for i in range(10):
        room.receive(a if i % 2 else b, SyncUpdate(edit(f"<{i}>")))
    await settle(room)
    updates = reader.of("update")
    assert len(updates) == 1
    copy: Doc = Doc()
    copy.apply_update(updates[0])
    assert sorted(str(copy.get("t", type=Text)).replace("><", ">|<").split("|")) == sorted(
        f"<{i}>" for i in range(10)
    )
    await room.close()


async def test_nothing_is_broadcast_before_it_is_durable() -> None:
    gate = asyncio.Event()
    stored: list[tuple[int, bytes]] = []

    async def persist(seq: int, update: bytes) -> None:
        await gate.wait()
        stored.append((seq, update))

    room = Room("r", persist=persist)
    a, b = RecordingPeer(), RecordingPeer()
    room.join(a)
    room.join(b)
    room.receive(a, SyncUpdate(edit("x")))
    late = RecordingPeer()
    room.join(late)
    room.receive(late, SyncStep1(b"\x00"))  # asks for everything
    for _ in range(20):  # let the flusher run as far as it can: it must wait at the gate
        await asyncio.sleep(0)
    assert b.of("update") == [] and late.of("step2") == []
    gate.set()
    await settle(room)
    assert stored and stored[0][0] == 1
    assert len(b.of("update")) == 1
    assert len(late.of("step2")) == 1
    await room.close()


async def test_a_failing_store_is_retried_and_nothing_is_lost() -> None:
    attempts = 0

    async def persist(seq: int, update: bytes) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise OSError("disk full")

    room = Room("r", persist=persist)
    a, b = RecordingPeer(), RecordingPeer()
    room.join(a)
    room.join(b)
    room.receive(a, SyncUpdate(edit("kept")))
    await asyncio.wait_for(room.flushed(), 5)
    assert attempts == 3
    assert len(b.of("update")) == 1
    await room.close()


async def test_malformed_update_is_refused_and_changes_nothing() -> None:
    room = Room("r")
    a = RecordingPeer()
    room.join(a)
    with pytest.raises(BadRequest, match="malformed update"):
        room.receive(a, SyncUpdate(b"\x01\x02\x03\xff"))
    assert room.seq == 0
    await room.close()


async def test_read_only_room_refuses_writes_but_serves_presence() -> None:
    room = Room("JupyterLab:globalAwareness", read_only="presence only")
    a, b = RecordingPeer(), RecordingPeer()
    room.join(a)
    room.join(b)
    room.receive(a, SyncUpdate(edit("nope")))
    assert a.of("raw") == [{"type": "refused", "reason": "presence only"}]
    assert text_of(room) == ""
    update = encode_awareness_update([AwarenessEntry(9, 1, '{"name": "a"}')])
    room.receive(a, parse_message(awareness_message(update)))
    assert b.of("awareness") == [update] and a.of("awareness") == [update]  # the sender too
    await room.close()


async def test_leaving_removes_the_peers_presence_for_the_others() -> None:
    room = Room("r")
    a, b = RecordingPeer(), RecordingPeer()
    room.join(a)
    room.join(b)
    update = encode_awareness_update([AwarenessEntry(9, 4, '{"name": "a"}')])
    room.receive(a, parse_message(awareness_message(update)))
    room.leave(a)
    removal = b.of("awareness")[-1]
    assert removal == encode_awareness_update([AwarenessEntry(9, 5, "null")])
    assert room.awareness.snapshot() is None
    await room.close()


class RecordingOwner(RoomOwner):
    """An owner that keeps what its room tells it."""

    def __init__(self) -> None:
        self.flushes: list[set[object]] = []
        self.saves = 0
        self.closes = 0

    def on_flush(self, origins: set[object]) -> None:
        self.flushes.append(origins)

    async def on_save(self) -> str:
        self.saves += 1
        return "success"

    async def on_close(self) -> None:
        self.closes += 1


async def test_save_request_is_answered() -> None:
    owner = RecordingOwner()
    room = Room("r", owner=owner)
    a = RecordingPeer()
    room.join(a)
    room.receive(a, SaveRequest(12))
    while not a.of("raw"):
        await asyncio.sleep(0.01)
    assert a.of("raw") == [{"type": "save", "responseTo": 12, "status": "success"}]
    assert owner.saves == 1
    await room.close()


async def test_a_room_with_no_owner_answers_a_save_as_failed() -> None:
    room = Room("r")
    a = RecordingPeer()
    room.join(a)
    room.receive(a, SaveRequest(3))
    await until(lambda: bool(a.of("raw")))
    assert a.of("raw") == [{"type": "save", "responseTo": 3, "status": "failed"}]
    await room.close()


async def test_the_owner_and_every_follower_hear_of_each_change() -> None:
    """One owner, given at construction, and any number of followers: a party added later
    cannot knock out another's hook (the owner's, a synchronized fork's)."""
    owner = RecordingOwner()
    room = Room("r", owner=owner)
    first: list[bytes] = []
    second: list[bytes] = []
    stop_first = room.follow(first.append)
    room.follow(second.append)
    with room.document() as doc:
        doc.get("t", type=Text).insert(0, "a")
    await room.flushed()
    assert owner.flushes == [{SERVER}]
    assert len(first) == len(second) == 1
    stop_first()
    stop_first()  # stopping twice is harmless
    with room.document() as doc:
        doc.get("t", type=Text).insert(0, "b")
    await room.flushed()
    assert len(owner.flushes) == 2 and len(first) == 1 and len(second) == 2
    assert not any(hasattr(room, hook) for hook in ("on_flush", "on_save", "on_close"))
    with pytest.raises(AttributeError):
        room.owner = RecordingOwner()  # type: ignore[misc]
    await room.close()
    assert owner.closes == 1


async def test_cut_makes_a_stored_row_end_at_the_save_point() -> None:
    rows: list[int] = []

    async def persist(seq: int, update: bytes) -> None:
        rows.append(seq)

    room = Room("r", persist=persist)
    with room.document() as doc:
        doc.get("t", type=Text).insert(0, "a")
    assert room.cut() == 1
    with room.document() as doc:
        doc.get("t", type=Text).insert(0, "b")
    await settle(room)
    assert rows == [1, 2]
    await room.close()


async def test_the_live_document_exists_only_while_used() -> None:
    room = Room("r", settings=RoomSettings(linger=0))
    a, b = RecordingPeer(), RecordingPeer()
    room.join(a)
    room.join(b)
    room.receive(a, SyncUpdate(edit("peer ")))
    assert not room.live  # a peer's edit is relayed as bytes
    with room.document() as doc:
        assert room.live
        text = doc.get("t", type=Text)
        text.insert(len(str(text).encode()), "server")
    await settle(room)
    while room.live:  # dropped once unused (linger 0)
        await asyncio.sleep(0.01)
    assert text_of(room) == "peer server"
    seen: Doc = Doc()
    for update in b.of("update"):
        seen.apply_update(update)
    assert str(seen.get("t", type=Text)) == "peer server"
    # The server writes with one client id, whichever live document it used.
    with room.document() as doc:
        doc.get("t", type=Text).insert(0, ">")
    await settle(room)
    clocks = decode_state_vector(get_state(room.state()))
    assert len(clocks) == 2  # the peer's client and the server's
    await room.close()


def crowd(room: Room, peers: int) -> None:
    """More readers, up to `peers` in all: a room that many wait the whole interval."""
    while len(room.peers) < peers:
        room.join(RecordingPeer())


async def test_a_busy_room_broadcasts_at_most_once_per_interval() -> None:
    room = Room("r", settings=RoomSettings(broadcast_interval=0.2, broadcast_burst=1))
    writer, reader = RecordingPeer(), RecordingPeer()
    room.join(writer)
    room.join(reader)
    crowd(room, FULL_INTERVAL_PEERS)
    room.receive(writer, SyncUpdate(edit("first")))
    await settle(room)
    assert len(reader.of("update")) == 1  # a quiet room: at once
    started = asyncio.get_running_loop().time()
    for i in range(5):  # five changes within the interval...
        room.receive(writer, SyncUpdate(edit(f"<{i}>")))
        await asyncio.sleep(0.01)
    await settle(room)
    assert len(reader.of("update")) == 2  # ...go out as one message
    assert asyncio.get_running_loop().time() - started >= 0.15
    await room.close()


async def test_a_quiet_room_sends_a_short_burst_at_once() -> None:
    """A cell run: `[*]`, its output and its end, back to back, each sent as it happens."""
    room = Room("r", settings=RoomSettings(broadcast_interval=0.3, broadcast_burst=3))
    writer, reader = RecordingPeer(), RecordingPeer()
    room.join(writer)
    room.join(reader)
    crowd(room, FULL_INTERVAL_PEERS)
    started = asyncio.get_running_loop().time()
    for i in range(3):
        room.receive(writer, SyncUpdate(edit(f"<{i}>")))
        await settle(room)
        assert len(reader.of("update")) == i + 1
    assert asyncio.get_running_loop().time() - started < 0.2
    room.receive(writer, SyncUpdate(edit("held")))  # the burst is spent: this one waits
    await settle(room)
    assert len(reader.of("update")) == 4
    assert asyncio.get_running_loop().time() - started >= 0.2
    await room.close()


async def test_a_room_of_few_peers_waits_in_proportion() -> None:
    """Each change reaches 2 readers here: a seventh of the interval that 15 readers wait;
    with one reader there is nothing to save by waiting."""
    room = Room("r", settings=RoomSettings(broadcast_interval=1.4, broadcast_burst=1))
    writer, reader = RecordingPeer(), RecordingPeer()
    room.join(writer)
    room.join(reader)
    for i in range(3):
        room.receive(writer, SyncUpdate(edit(f"[{i}]")))
        await until(lambda n=i + 1: len(reader.of("update")) == n, timeout=0.15)
    room.join(RecordingPeer())
    started = asyncio.get_running_loop().time()
    for i in range(3):  # each waits 1.4 * 1 / 14 = 0.1 s, not 1.4 s
        room.receive(writer, SyncUpdate(edit(f"<{i}>")))
        await until(lambda n=i + 4: len(reader.of("update")) == n, timeout=1)
    assert 0.2 <= asyncio.get_running_loop().time() - started < 0.8
    await room.close()


async def test_awareness_entries_belong_to_the_peer_that_introduced_them() -> None:
    room = Room("r")
    a, b, c = RecordingPeer(), RecordingPeer(), RecordingPeer()
    for peer in (a, b, c):
        room.join(peer)
    mine = encode_awareness_update([AwarenessEntry(9, 1, '{"name": "a"}')])
    room.receive(a, parse_message(awareness_message(mine)))
    spoof = [AwarenessEntry(9, 5, '{"name": "b"}'), AwarenessEntry(10, 1, '{"name": "b"}')]
    room.receive(b, parse_message(awareness_message(encode_awareness_update(spoof))))
    # Only b's own entry is relayed; a's stays as a set it.
    assert c.of("awareness") == [mine, encode_awareness_update(spoof[1:])]
    assert sorted(s["name"] for s in room.awareness.states()) == ["a", "b"]
    echo = encode_awareness_update([AwarenessEntry(9, 1, '{"name": "a"}')])
    room.receive(b, parse_message(awareness_message(echo)))  # an echo: dropped, b stays
    assert len(c.of("awareness")) == 2
    too_many = [AwarenessEntry(100 + n, 1, "{}") for n in range(8)]
    with pytest.raises(BadRequest, match="at most 8"):
        room.receive(b, parse_message(awareness_message(encode_awareness_update(too_many))))
    assert len(room.awareness.states()) == 2  # refused whole
    await room.close()


async def test_another_socket_of_the_same_user_takes_over_a_client_id() -> None:
    room = Room("r")
    old, new, other = RecordingPeer(), RecordingPeer(), RecordingPeer()
    room.join(old, "ann")
    room.join(new, "ann")
    room.join(other, "bob")
    update = encode_awareness_update([AwarenessEntry(9, 1, '{"name": "ann"}')])
    room.receive(old, parse_message(awareness_message(update)))
    again = encode_awareness_update([AwarenessEntry(9, 2, '{"name": "ann again"}')])
    room.receive(new, parse_message(awareness_message(again)))
    room.receive(
        other,
        parse_message(awareness_message(encode_awareness_update([AwarenessEntry(9, 3, "null")]))),
    )
    room.leave(old)  # ann's old tab closes: the id is the new tab's now
    assert [s["name"] for s in room.awareness.states()] == ["ann again"]
    await room.close()


async def test_echoes_of_a_departed_client_are_dropped() -> None:
    room = Room("r")
    a, b, c = RecordingPeer(), RecordingPeer(), RecordingPeer()
    room.join(a, "ann")
    room.join(b, "bob")
    room.join(c, "cid")
    update = encode_awareness_update([AwarenessEntry(9, 4, '{"name": "ann"}')])
    room.receive(a, parse_message(awareness_message(update)))
    room.leave(a)
    relayed = len(c.of("awareness"))
    # bob's client echoes the removal, and a late echo of ann's entry: both dropped.
    for entry in (AwarenessEntry(9, 5, "null"), AwarenessEntry(9, 4, '{"name": "ann"}')):
        room.receive(b, parse_message(awareness_message(encode_awareness_update([entry]))))
    assert len(c.of("awareness")) == relayed and room.awareness.states() == []
    # ann's tab, back on a new socket, shows itself again at once.
    back = RecordingPeer()
    room.join(back, "ann")
    room.receive(back, parse_message(awareness_message(update)))
    assert [s["name"] for s in room.awareness.states()] == ["ann"]
    await room.close()
