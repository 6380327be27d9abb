"""`POST /api/datastore/rooms/{room_id}/undo` and `/redo`: the caller's own last changes.

    ?steps=N   how many steps (1 to 100; 1 if not given)
    200  {"room_id", "user", "status": "undone" | "redone", "steps", "can_undo", "can_redo"}
    400  a malformed room id or `steps`
    403  not allowed to write (the editor role on the document), or not a named user (undo
         history is per user)
    404  the room is not open (undo history lives in open rooms only)
    409  nothing to undo or redo for the caller in this room

Undo takes back the caller's own changes, made by any of their clients, and leaves other
people's in place (`rooms/undo.py`). The answer comes once the change is durable, as for
any edit; every peer of the room gets it.
"""

from __future__ import annotations

import json

from tornado import web

from ..auth import Role
from ..documents.roomid import RoomId
from .base import DatastoreHandler, authorized_to
from .query import whole_number

__all__ = ["MAX_STEPS", "RedoHandler", "UndoHandler"]

MAX_STEPS = 100
"""The most steps one request may undo or redo (a room keeps at most 100 per user)."""


def parse_steps(value: str | None) -> int:
    """`?steps=`: 1 when absent."""
    return 1 if value is None else whole_number(value, "steps", 1, MAX_STEPS)


may_change = authorized_to("write")
"""Who may undo or redo in a document: the one check, on both routes (jupyter_server's
authorizer, resource "contents", action "write")."""


class _HistoryHandler(DatastoreHandler):
    auth_resource = "contents"

    async def change(self, text: str, *, redo: bool) -> None:
        steps = parse_steps(self.get_query_argument("steps", None))
        room_id = RoomId.parse(text)
        user = self.user_name
        room = self.datastore.rooms.history_room(str(room_id), user)
        assert user is not None  # history_room refuses a request that names no one
        # Undoing is editing: a user demoted to viewer takes nothing back.
        self.require(self.path_of_room(room_id), Role.EDITOR, "redo" if redo else "undo")
        status = room.redo(user, steps) if redo else room.undo(user, steps)
        await room.flushed()
        body = {
            "room_id": str(room_id),
            "user": user,
            "status": "redone" if redo else "undone",
            "steps": status.steps,
            "can_undo": status.can_undo,
            "can_redo": status.can_redo,
        }
        self.finish(json.dumps(body))


class UndoHandler(_HistoryHandler):
    @web.authenticated
    @may_change
    async def post(self, room_id: str) -> None:
        await self.change(room_id, redo=False)


class RedoHandler(_HistoryHandler):
    @web.authenticated
    @may_change
    async def post(self, room_id: str) -> None:
        await self.change(room_id, redo=True)
