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

The feed (`feed.py`) sends `{"type": "notification", "notification": {...}}` as rows are
created; `?since=<ISO time>` (the `created_at` of the last row received), or
`{"since": ...}` as the first message, sends the rows created after it first, then
`{"__control__": "resumed", "since", "count"}`. A row marked read or unread, or deleted,
is told to all of the recipient's feeds (`{"type": "notification_updated", "notification"}`,
`{"type": "notification_deleted", "id"}`), so their other windows follow. A bad or late
message is answered
`{"__control__": "error", "detail"}`. A client more than 1000 rows behind (on resume, or not
reading) is closed with 1013 and a JSON reason; it resumes with `since`, or lists with GET.
The server stopping closes feeds with 1001.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from ..auth import Role
from ..errors import BadRequest
from ..notifications import parse_time
from .base import DatastoreHandler, authorized_to, user_name_of
from .events import MAX_CONTROL_MESSAGE, authorize_event_socket
from .feed import FeedReader
from .query import flag, whole_number
from .websocket import handshake_response

__all__ = [
    "NotificationFeedHandler",
    "NotificationHandler",
    "NotificationsHandler",
    "notification_handlers",
]

MAX_LIMIT = 1000
DEFAULT_LIMIT = "100"


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
            unread=None if unread is None else flag(unread, "unread"),
            since=None if since is None else parse_time(since, "since"),
            until=None if until is None else parse_time(until, "until"),
            limit=whole_number(
                self.get_query_argument("limit", str(DEFAULT_LIMIT)), "limit", 1, MAX_LIMIT
            ),
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


class NotificationFeedHandler(DatastoreHandler):
    """The caller's notification feed (see `feed.py`)."""

    auth_resource = "events"
    websocket = True
    """Not a REST endpoint (the OpenAPI document leaves it out)."""

    @ws_authenticated
    async def get(self) -> None:
        await authorize_event_socket(self)
        recipient = user_name(self)
        since = self.get_query_argument("since", None)
        since = None if since is None else parse_time(since, "since")
        response = handshake_response(self.request.headers)  # bad query, bad handshake: HTTP
        datastore = self.datastore
        reader = FeedReader(datastore.notifications, recipient, since)
        socket = self.stream_socket(
            on_message=reader.on_message,
            on_closed=reader.on_closed,
            name="notifications",
            max_message_size=MAX_CONTROL_MESSAGE,
        )
        await reader.run(socket, response)


notification_handlers: list[tuple[str, Any]] = [
    (r"/api/notifications", NotificationsHandler),
    (r"/api/notifications/(?P<notification_id>[^/]+)", NotificationHandler),
    (r"/api/events/subscribe/notification", NotificationFeedHandler),
]
