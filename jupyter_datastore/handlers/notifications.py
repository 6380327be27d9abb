"""`/api/notifications`: the caller's own notifications, and their live feed.

    GET    /api/notifications?unread=&since=&until=&limit=  the caller's, newest first
    POST   /api/notifications  {"recipients", "message", "type"?, "link"?, "data"?, "source"?}
                               notify others -> 201 {"event_id", "recipients"}
    GET    /api/notifications/{id}                         one of them
    PATCH  /api/notifications/{id}  {"read": true|false}   mark it read or unread
    DELETE /api/notifications/{id}                         delete it (204)
    WS     /api/events/subscribe/notification              the caller's new ones, live

A notification is a row of one recipient (a jupyter_server user name): nobody else can see,
change or delete it, and another's id answers 404 as a missing one does. Sending needs the
viewer role on the root; the row's `sender` is set by the server, and a `link` that leaves
this server (another host, `//host`, `javascript:`) is refused with 400. The resource is
`events` (GET reads, PATCH and DELETE write, the feed needs `execute` as jupyter_server's
event socket does).

The feed sends text frames `{"type": "notification", "notification": {...}}` as rows are
created. To resume, give `?since=<ISO time>` (the `created_at` of the last row received)
or send `{"since": "<ISO time>"}` as the first message: the rows created after it come
first, then `{"type": "resumed", "since", "count"}`, then live ones, none twice. A bad or
late message is answered `{"type": "error", "detail"}`. A client more than 1000 rows behind
(on resume, or not reading) is closed with 1013 and a JSON reason; it resumes with `since`,
or lists with GET. The server stopping closes feeds with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from tornado import web, websocket
from tornado.iostream import StreamClosedError

from ..auth import Role
from ..auth.live import Watched
from ..errors import BadRequest, DatastoreError, close_reason
from ..notifications import Feed, parse_time
from .base import DatastoreHandler, authorized_to, read_json, user_name_of
from .events import EventSocket

__all__ = [
    "NotificationFeedHandler",
    "NotificationHandler",
    "NotificationsHandler",
    "notification_handlers",
]

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


def parse_flag(raw: str, name: str) -> bool:
    if raw in ("true", "false"):
        return raw == "true"
    raise BadRequest(f'"{name}" must be true or false, not {raw!r}')


def parse_limit(raw: str) -> int:
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(f'"limit" must be an integer, not {raw!r}') from None
    if not 0 < limit <= MAX_LIMIT:
        raise BadRequest(f'"limit" must be between 1 and {MAX_LIMIT}')
    return limit


def user_name(handler: JupyterHandler) -> str:
    """The caller's jupyter_server user name: whose notifications these are."""
    name = user_name_of(handler)
    if name is None:
        raise web.HTTPError(403, "notifications need an identified user")
    return name


class NotificationsHandler(DatastoreHandler):
    auth_resource = "events"

    @web.authenticated
    @authorized
    async def get(self) -> None:
        unread = self.get_query_argument("unread", None)
        since = self.get_query_argument("since", None)
        until = self.get_query_argument("until", None)
        rows = await self.datastore.notifications.find(
            user_name(self),
            unread=None if unread is None else parse_flag(unread, "unread"),
            since=None if since is None else parse_time(since, "since"),
            until=None if until is None else parse_time(until, "until"),
            limit=parse_limit(self.get_query_argument("limit", str(DEFAULT_LIMIT))),
        )
        self.finish(json.dumps({"notifications": rows}))

    @web.authenticated
    @authorized_to("write")
    async def post(self) -> None:
        sender = user_name(self)
        self.require("", Role.VIEWER, "send a notification")
        origin = (self.request.protocol.lower(), self.request.host.lower())
        event = await self.datastore.notifications.send(sender, self.get_json_object(), origin)
        self.set_status(201)
        self.finish(json.dumps({"event_id": event.id, "recipients": event.data["recipients"]}))


class NotificationHandler(DatastoreHandler):
    auth_resource = "events"

    @web.authenticated
    @authorized
    async def get(self, notification_id: str) -> None:
        row = await self.datastore.notifications.get(user_name(self), notification_id)
        self.finish(json.dumps(row))

    @web.authenticated
    @authorized
    async def patch(self, notification_id: str) -> None:
        body = self.get_json_object()
        read = body.get("read")
        if set(body) != {"read"} or not isinstance(read, bool):
            raise BadRequest('the body must be {"read": true} or {"read": false}')
        row = await self.datastore.notifications.mark(user_name(self), notification_id, read)
        self.finish(json.dumps(row))

    @web.authenticated
    @authorized
    async def delete(self, notification_id: str) -> None:
        await self.datastore.notifications.delete(user_name(self), notification_id)
        self.set_status(204)
        self.finish()


class NotificationFeedHandler(EventSocket):
    """The caller's notification feed (see the module docstring)."""

    def initialize(self) -> None:
        self.recipient = ""
        self.feed: Feed | None = None
        self._since: str | None = None
        self._sender: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one writer at a time: live rows wait during a resume
        self._sent: set[str] = set()  # ids a resume must not send again
        self._tracking = True  # live ids are remembered until the first message
        self._messages = 0
        self.watched: Watched | None = None

    def parse_query(self) -> None:
        self.recipient = user_name(self)
        since = self.get_query_argument("since", None)
        self._since = None if since is None else parse_time(since, "since")

    def open(self, *args: Any, **kwargs: Any) -> None:
        # At once, before anything awaits: no row created after the handshake is missed.
        self.feed = self.datastore.notifications.open_feed(self.recipient)
        self.watched = self.datastore.live.add(  # its login is checked again while open
            Watched(self.recipient, self, lambda exc: self.close(exc.close_code, exc.reason()))
        )
        if self._since is not None:
            self._tracking = False  # resumed already: a later message cannot resume again
        self._sender = asyncio.ensure_future(self._send(self.feed, self._since))

    async def _send(self, feed: Feed, since: str | None) -> None:
        with contextlib.suppress(websocket.WebSocketClosedError, StreamClosedError):
            if since is not None and not await self._resume(since):
                return
            while rows := await feed.next():
                async with self._lock:
                    for row in rows:
                        await self._write_row(row)
            if feed.closed == "overflow":
                self._close(1013, "slow_subscriber", "resume with ?since=")
            elif feed.closed == "stopped":
                self._close(1001, "stopped", "the server is stopping")

    async def _write_row(self, row: dict[str, Any]) -> None:
        if row["id"] in self._sent:
            return
        await self.write_message(json.dumps({"type": "notification", "notification": row}))
        if self._tracking and len(self._sent) < self.datastore.notifications.policy.feed_limit:
            self._sent.add(row["id"])

    async def _resume(self, since: str) -> bool:
        """Send the rows created after `since`; False if there were too many (closed)."""
        service = self.datastore.notifications
        async with self._lock:
            rows = await service.after(self.recipient, since, service.policy.feed_limit)
            if rows is None:
                self._close(1013, "too_far_behind", "list with GET /api/notifications?since=")
                return False
            for row in rows:
                await self._write_row(row)
                self._sent.add(row["id"])
            resumed = {"type": "resumed", "since": since, "count": len(rows)}
            await self.write_message(json.dumps(resumed))
        return True

    def _close(self, code: int, error: str, detail: str) -> None:
        self.close(code, close_reason({"error": error, "detail": detail}))

    async def on_message(self, message: str | bytes) -> None:
        self._messages += 1
        first = self._messages == 1 and self._since is None
        try:
            request = read_json(message, "the message")
            if not isinstance(request, dict) or set(request) != {"since"}:
                raise BadRequest('a message must be {"since": "<ISO time>"}')
            if not first:
                raise BadRequest("a feed resumes once: with ?since= or the first message")
            since = parse_time(request["since"], "since")
        except (ValueError, DatastoreError) as exc:
            detail = exc.detail if isinstance(exc, DatastoreError) else f"not JSON: {exc}"
            with contextlib.suppress(websocket.WebSocketClosedError, StreamClosedError):
                await self.write_message(json.dumps({"type": "error", "detail": detail}))
        else:
            with contextlib.suppress(websocket.WebSocketClosedError, StreamClosedError):
                await self._resume(since)
        finally:
            self._tracking = False  # no later message resumes: live ids need not be kept

    def on_close(self) -> None:
        if self.watched is not None:
            self.datastore.live.discard(self.watched)
        if self.feed is not None:
            self.datastore.notifications.close_feed(self.feed)
        if self._sender is not None:
            self._sender.cancel()


notification_handlers: list[tuple[str, Any]] = [
    (r"/api/notifications", NotificationsHandler),
    (r"/api/notifications/(?P<notification_id>[^/]+)", NotificationHandler),
    (r"/api/events/subscribe/notification", NotificationFeedHandler),
]
