"""`/api/datastore/state`: the state room as JSON, and a re-read on demand.

The live model is the room `datastore:state` (`/api/collaboration/room/datastore:state`,
with the `session_id` given here as `sessionId`); this is its snapshot for REST callers.
Reading it needs `read` on `kernels`; a user who may not view every document gets only
what concerns the documents they may view (`state/views.py`).

`WS /api/datastore/state/subscribe` is the same view, live, as JSON (`state/feed.py`): first
`{"type": "state", "state"}` (what GET gives), then `{"type": "changes", "changes": [[map,
key, value], ...]}` (value null: the entry left) at most once per write of the model, and when
a change of rules changes the view. It takes no messages: each is answered
`{"__control__": "error", "detail"}` and changes nothing. After a change of the permission
rules it sends `{"__control__": "rules_changed"}` (the user's roles may differ: a client
showing actions asks for them again). A user who loses `read` on
`kernels` (or their login) is closed with 4403; a reader too far behind (more than the
server's `peer_send_limit` bytes waiting) with 1013, and starts again from a new first frame;
the server stopping closes it with 1001.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from tornado import web
from tornado.iostream import StreamClosedError

from ..auth.live import Watched
from ..datastore import Datastore
from ..errors import DatastoreError, Forbidden
from ..protocol.frames import Outgoing
from ..state.feed import StateFeed
from ..state.views import view_of
from .base import DatastoreHandler
from .events import MAX_CONTROL_MESSAGE
from .websocket import WebSocket, handshake_response, keep_alive

__all__ = ["StateHandler", "StateRefreshHandler", "StateSubscribeHandler"]


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


class StateSubscriber:
    """One feed socket: the feed of its user's view, re-checked live (`auth/live.py`)."""

    _running: ClassVar[set[StateSubscriber]] = set()  # keeps live connections referenced

    def __init__(self, datastore: Datastore, user: str | None, handler: DatastoreHandler) -> None:
        self.datastore = datastore
        self.user = user
        self.handler = handler
        """The handler of the opening request: its credentials and rights are checked again."""
        self.socket: WebSocket | None = None
        self.feed: StateFeed | None = None
        self.watched: Watched | None = None
        self._rechecks: set[asyncio.Task[None]] = set()
        self._rules = datastore.permissions.version

    async def run(self, socket: WebSocket, response: bytes) -> None:
        try:
            await socket.accept(response)
        except StreamClosedError:
            return
        self.socket = socket
        StateSubscriber._running.add(self)
        datastore, user = self.datastore, self.user
        # No await from here to the first frame: no write of the model is missed.
        self.feed = datastore.state.feeds.open(
            lambda: datastore.permissions.sees_everything(user),
            lambda path: datastore.may_view(user, path),
            self._frame,
            socket.close,
        )
        self.watched = datastore.live.add(Watched(user, self.handler, self._fail, self._recheck))
        socket.start()

    def _recheck(self) -> None:
        """Rules or users changed: still `read` on `kernels` (jupyter_server's authorizer
        is asynchronous, so this ends in a task), then the difference of the new view."""
        task = asyncio.ensure_future(self._check_and_refresh())
        self._rechecks.add(task)
        task.add_done_callback(self._rechecks.discard)

    async def _check_and_refresh(self) -> None:
        handler = self.handler
        allowed = await ensure_async(
            handler.authorizer.is_authorized(handler, handler.current_user, "read", "kernels")
        )
        if not allowed:
            if self.watched is not None:
                self.datastore.live.discard(self.watched)
            self._fail(Forbidden("you may no longer read the server's state"))
        elif self.feed is not None and self.socket is not None and not self.socket.closed:
            self.feed.refresh()
            rules = self.datastore.permissions.version
            if rules != self._rules:  # roles may differ: a client that shows actions asks again
                self._rules = rules
                self._frame({"__control__": "rules_changed"})

    def _fail(self, exc: DatastoreError) -> None:
        if self.socket is not None:
            self.socket.close(exc.close_code, exc.reason())

    def _frame(self, body: dict[str, Any]) -> None:
        if self.socket is not None:
            self.socket.send(Outgoing(json.dumps(body).encode(), text=True))

    def on_message(self, message: bytes | str) -> None:
        detail = "this socket takes no messages: it sends the state and its changes"
        self._frame({"__control__": "error", "detail": detail})

    def on_closed(self) -> None:
        StateSubscriber._running.discard(self)
        if self.feed is not None:
            self.datastore.state.feeds.close(self.feed)
        if self.watched is not None:
            self.datastore.live.discard(self.watched)
        for task in list(self._rechecks):
            task.cancel()


class StateSubscribeHandler(_Base):
    """`WS /api/datastore/state/subscribe` (see the module docstring)."""

    websocket = True
    """Not a REST endpoint (the OpenAPI document leaves it out)."""

    @ws_authenticated
    async def get(self) -> None:
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "read", self.auth_resource)
        )
        if not allowed:  # as GET /api/datastore/state (`@authorized`: read on kernels)
            raise web.HTTPError(403)
        response = handshake_response(self.request.headers)
        datastore = self.datastore
        subscriber = StateSubscriber(datastore, self.user_name, self)
        socket = WebSocket(
            self.detach(),
            on_message=subscriber.on_message,
            on_closed=subscriber.on_closed,
            max_message_size=MAX_CONTROL_MESSAGE,
            send_limit=datastore.limits.peer_send_limit,
            keep_alive=keep_alive(self.settings),
            name="state feed",
        )
        await subscriber.run(socket, response)
