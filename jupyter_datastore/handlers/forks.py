"""jupyter-collaboration's fork, timeline and restore endpoints (its clients work unchanged).

    GET    /api/collaboration/fork/{root_roomid}          {fork_roomid: info} of the room's forks
    PUT    /api/collaboration/fork/{root_roomid}          201 {sessionId, fork_roomid, fork_info}
           body {"synchronize": bool, "title": str, "description": str}, all optional
    DELETE /api/collaboration/fork/{fork_roomid}?merge=true|false
                                                          200 {fork_roomid, merged}
    GET    /api/collaboration/timeline/{path}?format=..&type=..
                                                          {roomId, timestamps, forkRoom, sessionId}
    PUT    /api/collaboration/undo_redo/{roomId}?action=undo|redo|restore&steps=N&forkRoom=ID
                                                          {"status": "undone" | "redone"};
                                                          restore: {"code": 200, "status"}

A timeline's fork room shows the document at one of its points in time; undo and redo move
it (409 at either end), and restore makes that content the room's current one. Reading a
room's forks or history needs the viewer role on its file; forking, merging, deleting and
restoring need editor. Forks and timelines are documented in `documents/forks.py`.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..auth import Role
from ..documents import RoomId, kind_of
from ..errors import BadRequest, Conflict, NotFound
from .base import DatastoreHandler
from .query import flag
from .undo import parse_steps

__all__ = ["ForkHandler", "TimelineHandler", "UndoRedoHandler"]


def text_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or len(value) > 10_000:
        raise BadRequest(f"{name} must be a string of at most 10,000 characters")
    return value


class ForkHandler(DatastoreHandler):
    auth_resource = "contents"

    @web.authenticated
    @authorized
    async def get(self, room_id: str) -> None:
        root = RoomId.parse(room_id)
        self.require(self.path_of_room(root), Role.VIEWER, "read forks")
        self.finish(json.dumps(self.datastore.forks.of(str(root))))

    @web.authenticated
    @authorized
    async def put(self, room_id: str) -> None:
        root = RoomId.parse(room_id)
        body = self.get_json_object() if self.request.body else {}
        synchronize = body.get("synchronize", False)
        if not isinstance(synchronize, bool):
            raise BadRequest("synchronize must be true or false")
        title, description = text_field(body, "title"), text_field(body, "description")
        self.require(self.path_of_room(root), Role.EDITOR, "fork")
        fork_id, info = await self.datastore.forks.create(
            root,
            synchronize=synchronize,
            title=title,
            description=description,
            user=self.user_name or "",
        )
        self.set_status(201)
        session_id = self.datastore.store.session_id
        self.finish(
            json.dumps({"sessionId": session_id, "fork_roomid": fork_id, "fork_info": info})
        )

    @web.authenticated
    @authorized
    async def delete(self, room_id: str) -> None:
        fork_id = room_id  # the route names it room_id: a fork is a room
        merge = flag(self.get_query_argument("merge", None), "merge")
        root = self.datastore.root_room(fork_id)
        self.require(self.path_of_room(root), Role.EDITOR, "merge fork" if merge else "delete fork")
        await self.datastore.forks.delete(fork_id, merge=merge, user=self.user_name or "")
        self.finish(json.dumps({"fork_roomid": fork_id, "merged": merge}))


class TimelineHandler(DatastoreHandler):
    auth_resource = "contents"

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        file_format = self.get_query_argument("format", "")
        file_type = self.get_query_argument("type", "")
        kind_of(file_format, file_type)
        path = self.file_path(path)
        self.require(path, Role.VIEWER, "read history")
        if not await self.datastore.io.exists(path):
            raise NotFound(f"no file at {path}")
        file_id = self.datastore.ids.file_id(path)
        if file_id is None:
            raise NotFound(f"{path} has no history: it was never opened")
        room_id = RoomId(file_format, file_type, file_id)
        fork_id, times = await self.datastore.forks.timeline(room_id)
        body = {
            "roomId": str(room_id),
            "timestamps": times,
            "forkRoom": fork_id,
            "sessionId": self.datastore.store.session_id,
        }
        self.finish(json.dumps(body))


class UndoRedoHandler(DatastoreHandler):
    auth_resource = "contents"

    @web.authenticated
    @authorized
    async def put(self, room_id: str) -> None:
        root = RoomId.parse(room_id)
        action = self.get_query_argument("action", "")
        fork_id = self.get_query_argument("forkRoom", "")
        forks = self.datastore.forks
        if action == "restore":
            self.require(self.path_of_room(root), Role.EDITOR, "restore")
            await forks.restore(str(root), fork_id)
            self.finish(json.dumps({"code": 200, "status": "Document restored"}))
            return
        if action not in ("undo", "redo"):
            raise BadRequest(f"action must be undo, redo or restore, not {action[:20]!r}")
        steps = parse_steps(self.get_query_argument("steps", None))
        self.require(self.path_of_room(root), Role.VIEWER, "move in history")
        if not await forks.move(str(root), fork_id, -steps if action == "undo" else steps):
            raise Conflict(f"no more {action} in this timeline")
        self.finish(json.dumps({"status": "undone" if action == "undo" else "redone"}))
