"""`PUT /api/collaboration/session/{path}`: a file's id and its room's session id.

JupyterLab's document provider calls this before it opens a room; the answer names the room
(`{format}:{type}:{fileId}`) and the session id the provider must send back when it connects:
the store's id and the epoch of the document's rows (`DocumentSession.session_id`), the
row made here if the store has none yet, so that the room, once open, expects the same.
"""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..auth import Role
from ..documents import kind_of
from ..documents.roomid import RoomId
from ..errors import BadRequest, NotFound
from .base import DatastoreHandler

__all__ = ["DocSessionHandler"]


class DocSessionHandler(DatastoreHandler):
    auth_resource = "contents"

    @web.authenticated
    @authorized
    async def put(self, path: str) -> None:
        body = self.get_json_object()
        file_format, file_type = body.get("format"), body.get("type")
        if not isinstance(file_format, str) or not isinstance(file_type, str):
            raise BadRequest('the body must give "format" and "type" as strings')
        kind_of(file_format, file_type)
        path = self.file_path(path)
        self.require(path, Role.VIEWER, "open")
        if not await self.datastore.io.exists(path):
            raise NotFound(f"no file at {path}")
        file_id, created = self.datastore.ids.index(path)
        name = str(RoomId(file_format, file_type, file_id))
        session = self.datastore.documents.sessions.get(name)
        store = self.datastore.store
        epoch = session.epoch if session is not None else await store.epoch(name)
        self.set_status(201 if created else 200)
        self.finish(
            json.dumps(
                {
                    "format": file_format,
                    "type": file_type,
                    "fileId": file_id,
                    "sessionId": store.document_session_id(epoch),
                }
            )
        )
