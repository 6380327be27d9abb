"""`/api/datastore/state`: the state room as JSON, and a re-read on demand.

The live model is the room `datastore:state` (`/api/collaboration/room/datastore:state`,
with the `session_id` given here as `sessionId`); this is its snapshot for REST callers.
Reading it needs `read` on `kernels` and the viewer role on the root: it shows the whole
server.
"""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..auth import Role
from .base import DatastoreHandler

__all__ = ["StateHandler", "StateRefreshHandler"]


class StateHandler(DatastoreHandler):
    auth_resource = "kernels"

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.require("", Role.VIEWER, "read the server's state")
        self.finish(json.dumps(self.datastore.state.snapshot()))


class StateRefreshHandler(DatastoreHandler):
    """Re-read every manager now: for changes no event reports, such as a kernelspec
    installed on disk. Answers with the snapshot that results."""

    auth_resource = "kernels"

    @web.authenticated
    @authorized
    async def post(self) -> None:
        self.require("", Role.VIEWER, "read the server's state")
        state = self.datastore.state
        await state.refresh()
        self.finish(json.dumps(state.snapshot()))
