"""`PUT /api/collaboration/session/{path}`: a file's id and the server's session id.

JupyterLab's document provider calls this before it opens a room; the answer names the room
(`{format}:{type}:{fileId}`) and the session id the provider must send back when it connects.
"""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..auth import Role
from ..documents import kind_of
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
        self.set_status(201 if created else 200)
        self.finish(
            json.dumps(
                {
                    "format": file_format,
                    "type": file_type,
                    "fileId": file_id,
                    "sessionId": self.datastore.store.session_id,
                }
            )
        )
