"""The state model and the manager hooks, without a server."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from pycrdt import Doc, Map

from jupyter_datastore.client import state as client_state
from jupyter_datastore.rooms.room import Room
from jupyter_datastore.state.hooks import call_after
from jupyter_datastore.state.model import MAPS, STATE_ROOM, StateModel


def replica(room: Room) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    doc.apply_update(room.state())
    return doc


async def test_only_real_changes_are_written_and_values_are_plain_json() -> None:
    room = Room(STATE_ROOM, read_only="read-only")
    model = StateModel(room)
    started = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
    kernel = {"id": "k1", "name": "python3", "last_activity": started, "connections": 0}
    assert model.write([("kernels", "k1", kernel)]) == 1
    seq = room.seq
    # The same entry again (as JSON would have it) changes nothing and sends nothing.
    again = {**kernel, "last_activity": "2026-11-22T08:00:00Z"}
    assert model.write([("kernels", "k1", again)]) == 0
    assert room.seq == seq
    assert replica(room).get("kernels", type=Map).to_py() == {"k1": {**again, "connections": 0.0}}
    # Replacing a map removes what is no longer there, in one transaction.
    changes = model.replacing("kernels", {"k2": {"id": "k2"}})
    assert model.write(changes) == 2
    assert room.seq == seq + 1
    assert replica(room).get("kernels", type=Map).to_py() == {"k2": {"id": "k2"}}
    assert model.snapshot()["kernels"] == {"k2": {"id": "k2"}}
    # Removing what is not there is no change.
    assert model.write([("sessions", "nope", None)]) == 0
    await room.close()


async def test_hooks_call_back_after_each_call_and_undo_restores_the_class_methods() -> None:
    class Manager:
        def create(self, name: str) -> str:
            return name

        async def delete(self, name: str) -> None:
            raise KeyError(name)

    manager, calls = Manager(), []
    undo = call_after(manager, ("create", "delete", "missing"), lambda: calls.append(1))
    assert manager.create("t1") == "t1"
    with pytest.raises(KeyError):
        await manager.delete("t1")
    assert len(calls) == 2  # after a failure too: the caller re-reads either way
    undo()
    manager.create("t2")
    assert len(calls) == 2
    assert "create" not in vars(manager)


def test_the_client_knows_every_map() -> None:
    assert client_state.MAPS == MAPS
