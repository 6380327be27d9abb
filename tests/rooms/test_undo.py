"""Per-user undo in a room, without HTTP: whose changes are steps, what undo leaves, and
what the history costs (the live document) and for how long."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text
from yclient import until

from jupyter_datastore.errors import Conflict
from jupyter_datastore.protocol.messages import SyncUpdate
from jupyter_datastore.rooms import Room, RoomSettings
from jupyter_datastore.rooms.undo import UndoHistory, is_named, undo_roots

from .test_room import RecordingPeer

ROOM = "text:file:0b5d0c8e-7f6a-4c1e-9d2b-3a4f5e6d7c8b"
STEP_EACH = RoomSettings(undo_capture=0, linger=0)  # every change is a step of its own
ANONYMOUS = "8c4f2b0e9a1d4c7f8e6b5a4d3c2b1a09"  # jupyter_server's uuid4().hex for a token user


class Writer:
    """A client's copy of a text file: edits made here become updates for the room."""

    def __init__(self, room: Room) -> None:
        self.doc: Doc[Any] = Doc()
        self.doc.apply_update(room.state())

    def insert(self, at: int, text: str) -> bytes:
        before = self.doc.get_state()
        self.doc.get("source", type=Text).insert(at, text)
        return self.doc.get_update(before)

    def delete(self, start: int, end: int) -> bytes:
        before = self.doc.get_state()
        del self.doc.get("source", type=Text)[start:end]
        return self.doc.get_update(before)

    def sync(self, room: Room) -> None:
        self.doc.apply_update(room.state())


def text_of(room: Room) -> str:
    doc: Doc[Any] = Doc()
    doc.apply_update(room.state())
    return str(doc.get("source", type=Text))


def send(room: Room, peer: RecordingPeer, writer: Writer, update: bytes) -> None:
    room.receive(peer, SyncUpdate(update))
    writer.sync(room)


async def test_alices_undo_leaves_bobs_edits_and_everyone_gets_it() -> None:
    room = Room(ROOM, settings=STEP_EACH)
    alice, bob, viewer = RecordingPeer(), RecordingPeer(), RecordingPeer()
    room.join(alice, "alice")
    room.join(bob, "bob")
    room.join(viewer, None)
    a, b = Writer(room), Writer(room)
    send(room, alice, a, a.insert(0, "alice "))
    b.sync(room)
    send(room, bob, b, b.insert(6, "bob"))
    await room.flushed()
    assert text_of(room) == "alice bob"
    a.sync(room)
    before = [len(p.of("update")) for p in (alice, bob, viewer)]

    status = room.undo("alice")
    await room.flushed()
    assert (status.steps, status.can_undo, status.can_redo) == (1, False, True)
    assert text_of(room) == "bob"
    # The server's change on alice's behalf reaches every peer, alice's own clients too.
    assert [len(p.of("update")) for p in (alice, bob, viewer)] == [n + 1 for n in before]
    copy: Doc[Any] = Doc()
    copy.apply_update(a.doc.get_update())
    copy.apply_update(alice.of("update")[-1])
    assert str(copy.get("source", type=Text)) == "bob"

    # Bob's history is his own: alice's undo is not a step of his, nor of hers.
    assert room.undo_status("bob").can_undo
    assert not room.undo_status("alice").can_undo
    assert room.redo("alice").steps == 1
    assert text_of(room) == "alice bob"
    room.undo("bob")
    assert text_of(room) == "alice "
    with pytest.raises(Conflict, match="bob has nothing to undo"):
        room.undo("bob")
    await room.close()


async def test_an_undo_restores_what_the_user_deleted() -> None:
    room = Room(ROOM, settings=STEP_EACH)
    peer = RecordingPeer()
    room.join(peer, "alice")
    writer = Writer(room)
    room.push(writer.insert(0, "keep this"), origin="load")  # the file as loaded: no one's
    send(room, peer, writer, writer.delete(4, 9))
    assert text_of(room) == "keep"
    room.undo("alice")
    assert text_of(room) == "keep this"
    with pytest.raises(Conflict, match="alice has nothing to undo"):
        room.undo("alice")  # the load is not hers
    await room.close()


async def test_the_servers_writes_are_no_ones_steps() -> None:
    room = Room(ROOM, settings=STEP_EACH)
    peer = RecordingPeer()
    room.join(peer, "alice")
    writer = Writer(room)
    send(room, peer, writer, writer.insert(0, "mine"))
    with room.document(origin="executor") as doc:  # as an execution writes outputs
        doc.get("source", type=Text).insert(0, "[out] ")
    disk = Writer(room)
    room.push(disk.insert(len(text_of(room)), " [disk]"), origin="disk")  # a merge from disk
    status = room.undo("alice", steps=5)
    assert status.steps == 1 and not status.can_undo
    assert text_of(room) == "[out]  [disk]"
    await room.close()


async def test_a_burst_of_changes_is_one_step() -> None:
    clock = [1000.0]
    doc: Doc[Any] = Doc()
    text = doc.get("source", type=Text)
    history = UndoHistory(doc, {"source": Text}, capture=0.5, clock=lambda: clock[0])
    clients: dict[str, Doc[Any]] = {"alice": Doc(), "bob": Doc()}

    def type_as(user: str, chars: str, gap: float) -> None:
        """Keystrokes from the user's own client, `gap` seconds apart."""
        client = clients[user]
        for char in chars:
            clock[0] += gap
            client.apply_update(doc.get_update(client.get_state()))
            before = client.get_state()
            source = client.get("source", type=Text)
            source.insert(len(str(source)), char)
            with doc.transaction(origin=history.author(user)):
                doc.apply_update(client.get_update(before))

    type_as("alice", "abc", 0.1)  # one burst
    type_as("bob", "X", 0.1)  # another user's keystroke does not split alice's burst
    type_as("alice", "de", 0.1)
    clock[0] += 1.0
    type_as("alice", "fg", 0.1)  # after a pause: a new step
    assert str(text) == "abcXdefg"
    assert history.undo("alice") == 1
    assert str(text) == "abcXde"
    assert history.undo("alice") == 1
    assert str(text) == "X"
    assert history.undo("alice") == 0
    assert history.undo("bob") == 1
    assert str(text) == ""


async def test_each_user_keeps_at_most_undo_steps() -> None:
    room = Room(ROOM, settings=RoomSettings(undo_capture=0, undo_steps=3))
    peer = RecordingPeer()
    room.join(peer, "alice")
    writer = Writer(room)
    for i in range(6):
        send(room, peer, writer, writer.insert(i, str(i)))
    status = room.undo("alice", steps=10)
    assert status.steps == 3 and not status.can_undo and status.can_redo
    assert text_of(room) == "012"
    assert room.redo("alice", steps=10).steps == 3
    assert text_of(room) == "012345"
    await room.close()


@pytest.mark.parametrize("user", [None, "", ANONYMOUS])
async def test_peers_with_no_name_start_no_history(user: str | None) -> None:
    room = Room(ROOM, settings=STEP_EACH)
    peer = RecordingPeer()
    room.join(peer, user)
    writer = Writer(room)
    send(room, peer, writer, writer.insert(0, "anonymous"))
    await room.flushed()
    assert not room.live  # relayed as bytes, as before
    with pytest.raises(Conflict):
        room.undo(user or "anyone")
    await room.close()


async def test_rooms_with_no_undoable_schema_keep_none() -> None:
    room = Room("datastore:state", settings=STEP_EACH)
    peer = RecordingPeer()
    room.join(peer, "alice")
    writer = Writer(room)
    send(room, peer, writer, writer.insert(0, "x"))
    assert not room.live
    await room.close()


async def test_history_keeps_the_document_live_until_it_expires() -> None:
    settings = RoomSettings(undo_capture=0, linger=0, undo_expiry=0.2)
    room = Room(ROOM, settings=settings)
    peer = RecordingPeer()
    room.join(peer, "alice")
    writer = Writer(room)
    send(room, peer, writer, writer.insert(0, "typed"))
    assert room.live
    with room.document() as doc:  # a save reads it; linger 0 would drop it after
        str(doc.get("source", type=Text))
    assert room.live and room.undo_status("alice").can_undo
    await until(lambda: not room.live, timeout=5, what="the history to expire")
    assert not room.undo_status("alice").can_undo
    assert text_of(room) == "typed"  # back to bytes, nothing lost
    send(room, peer, writer, writer.insert(5, "!"))  # a new change starts a new history
    assert room.live and room.undo_status("alice").can_undo
    await room.close()
    assert not room.live


async def test_an_undo_is_persisted_before_it_is_broadcast() -> None:
    stored: list[bytes] = []

    async def persist(seq: int, update: bytes) -> None:
        stored.append(update)

    room = Room(ROOM, persist=persist, settings=STEP_EACH)
    alice, bob = RecordingPeer(), RecordingPeer()
    room.join(alice, "alice")
    room.join(bob, "bob")
    writer = Writer(room)
    send(room, alice, writer, writer.insert(0, "gone soon"))
    await room.flushed()
    room.undo("alice")
    await room.flushed()
    replay: Doc[Any] = Doc()
    for update in stored:
        replay.apply_update(update)
    assert str(replay.get("source", type=Text)) == ""
    assert len(bob.of("update")) == 2
    await room.close()


async def test_a_read_only_room_refuses_undo() -> None:
    room = Room(ROOM, settings=STEP_EACH)
    peer = RecordingPeer()
    room.join(peer, "alice")
    writer = Writer(room)
    send(room, peer, writer, writer.insert(0, "x"))
    room.read_only = "the file is read-only"
    with pytest.raises(Conflict, match="read-only"):
        room.undo("alice")
    await room.close()


async def test_notebooks_undo_their_cells_not_their_metadata() -> None:
    room = Room("json:notebook:0b5d0c8e-7f6a-4c1e-9d2b-3a4f5e6d7c8b", settings=STEP_EACH)
    peer = RecordingPeer()
    room.join(peer, "alice")
    client: Doc[Any] = Doc()
    before = client.get_state()
    client.get("cells", type=Array).append(Map({"cell_type": "code", "source": Text("1")}))
    client.get("meta", type=Map)["metadata"] = Map({"kernelspec": "python3"})
    room.receive(peer, SyncUpdate(client.get_update(before)))
    room.undo("alice")
    doc: Doc[Any] = Doc()
    doc.apply_update(room.state())
    assert len(doc.get("cells", type=Array)) == 0
    assert doc.get("meta", type=Map)["metadata"]["kernelspec"] == "python3"
    await room.close()


def test_who_is_named() -> None:
    assert is_named("alice") and is_named("0b5d0c8e")  # short hex: a name like any other
    assert not is_named(None) and not is_named("") and not is_named(ANONYMOUS)
    assert undo_roots("json:notebook:x") == {"cells": Array}
    assert undo_roots("text:file:x") == {"source": Text}
    assert undo_roots("base64:file:x") == {"source": Map}
    assert undo_roots("datastore:state") is None


async def test_a_change_with_nothing_to_undo_keeps_nothing_live() -> None:
    room = Room(ROOM, settings=STEP_EACH)
    peer = RecordingPeer()
    room.join(peer, "alice")
    client: Doc[Any] = Doc()
    client.get("state", type=Map)["dirty"] = True  # outside the undoable roots
    room.receive(peer, SyncUpdate(client.get_update()))
    room.receive(peer, SyncUpdate(client.get_update()))  # a resync: nothing new
    await until(lambda: not room.live, timeout=5, what="the live document dropped")
    assert not room.undo_status("alice").can_undo
    await room.close()


async def test_a_change_the_server_makes_for_a_user_is_one_of_their_steps() -> None:
    """`document(user=...)`: as a client of theirs had sent it (GraphQL's edits): undone by
    their undo, not by anyone else's, and sent to every peer."""
    room = Room(ROOM, settings=STEP_EACH)
    alice, bob = RecordingPeer(), RecordingPeer()
    room.join(alice, "alice")
    room.join(bob, "bob")
    before = len(bob.of("update"))
    with room.document("graphql", user="alice") as doc:
        doc.get("source", type=Text).insert(0, "hers")
    await room.flushed()
    assert text_of(room) == "hers" and len(bob.of("update")) == before + 1
    with pytest.raises(Conflict, match="bob has nothing to undo"):
        room.undo("bob")
    assert room.undo("alice").steps == 1 and text_of(room) == ""
    await room.close()
