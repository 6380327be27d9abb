"""`/api/datastore/state`: the state room as JSON, and a re-read on demand.

The live model is the room `datastore:state` (`/api/collaboration/room/datastore:state`,
with the `session_id` given here as `sessionId`); this is its snapshot for REST callers.
Reading it needs `read` on `kernels`; a user who may not view every document gets only
what concerns the documents they may view (`state/views.py`).
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..state.views import view_of
from .base import DatastoreHandler

__all__ = ["StateHandler", "StateRefreshHandler"]


class _Base(DatastoreHandler):
    auth_resource = "kernels"

    def state_view(self) -> dict[str, Any]:
        snapshot = self.datastore.state.snapshot()
        if self.datastore.permissions.sees_everything(self.user_name):
            return snapshot
        return view_of(snapshot, lambda path: self.datastore.may_view(self.user_name, path))


class StateHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps(self.state_view()))


class StateRefreshHandler(_Base):
    """Re-read every manager now: for changes no event reports, such as a kernelspec
    installed on disk. Answers with the snapshot that results."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        await self.datastore.state.refresh()
        self.finish(json.dumps(self.state_view()))
