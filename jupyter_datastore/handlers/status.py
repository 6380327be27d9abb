"""`GET /api/datastore/status`: this server's session id and its open rooms (those of
documents the caller may view; every room for who may view every document)."""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from tornado import web

from .. import __version__
from .base import DatastoreHandler

__all__ = ["StatusHandler"]


class StatusHandler(DatastoreHandler):
    auth_resource = "contents"

    @web.authenticated
    @authorized
    async def get(self) -> None:
        rooms = [r for r in self.datastore.rooms.rooms.values() if self.room_visible(r.name)]
        self.finish(
            json.dumps(
                {
                    "version": __version__,
                    "sessionId": self.datastore.store.session_id,
                    "rooms": [
                        {"name": room.name, "peers": len(room.peers), "seq": room.seq}
                        for room in rooms
                    ],
                }
            )
        )
