"""`/api/events`: jupyter_server's event endpoints, durable, with ids, replay and filters.

    POST /api/events                    validate and store an event -> 201 the stored event
    GET  /api/events?since=&schema_id=  replay stored events after an id
    GET  /api/events/schemas            the registered schemas with their versions
    POST /api/events/schemas            register a schema (the body is the schema document)
    WS   /api/events/subscribe          live events, filtered, resumable, optionally batched

These routes take precedence over jupyter_server's own (an extension's handlers are
matched first); the POST body is jupyter_server's. The server's own schemas cannot be
posted (403) nor registered (403); a posted event is stored and shown with
`__posted_by__: {"username": ...}`, set by the server. Every event a user gets, replayed or
live, is one of their view (`events/views.py`: about what they may view).

The answer to a POST is 201 with the stored event, or jupyter_server's bodiless 204 for
`Prefer: return=minimal` and for browsers (JupyterLab's EventManager fails on anything but
204); `Prefer: return=representation` always gets 201.

The subscription socket: the query may give `since` (resume after that event id: the stored
events after it come first, then live ones, none twice), `filter` (JSON, see
`EventFilter`) and `batch` (seconds: at most one frame per interval, each a JSON array of
events). A client message `{"type": "subscribe", "filter"?, "since"?, "batch"?}` changes
them on the open socket and is answered `{"__control__": "subscribed", "last_id"}`; a bad
one is answered `{"__control__": "error", "detail"}` and changes nothing. Each event is a
text frame as `event_json` makes it. A subscriber that falls behind (more than the server's
`peer_send_limit` bytes waiting, or 10,000 events queued while it catches up or is batched)
is closed with 1013 and resumes with `since`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from tornado import web
from tornado.iostream import StreamClosedError

from ..auth import Role
from ..errors import BadRequest, DatastoreError, close_reason
from ..events.bus import (
    MAX_EVENT_ID,
    EventBus,
    EventFilter,
    Subscription,
    Visible,
    event_json,
)
from ..protocol.frames import Outgoing
from ..store.base import Store, StoredEvent
from .base import DatastoreHandler, authorized_to, read_json
from .query import number, whole_number
from .websocket import WebSocket, handshake_response

__all__ = [
    "EventSchemasHandler",
    "EventsHandler",
    "SubscribeHandler",
    "authorize_event_socket",
    "event_handlers",
]

MAX_REPLAY = 10_000
MAX_CONTROL_MESSAGE = 1 << 16  # bytes of a message a subscriber may send
MAX_BATCH_INTERVAL = 60.0


def parse_since(raw: Any) -> int:
    return whole_number(raw, "since", 0, MAX_EVENT_ID)


def parse_limit(raw: str) -> int:
    return whole_number(raw, "limit", 1, MAX_REPLAY)


def parse_batch(raw: Any) -> float:
    return number(raw, "batch", 0, MAX_BATCH_INTERVAL)


def parse_filter_json(raw: str | None) -> Any:
    if raw is None:
        return None
    return read_json(raw, '"filter"')


class EventsHandler(DatastoreHandler):
    auth_resource = "events"

    @web.authenticated
    @authorized
    async def post(self) -> None:
        self.require("", Role.EDITOR, "post an event")
        body = self.get_json_object()
        missing = [key for key in ("schema_id", "version", "data") if key not in body]
        if missing:
            raise BadRequest(f"missing {', '.join(missing)} in the request body")
        events = self.datastore.events
        event = await events.post(body["schema_id"], body["version"], body["data"], self.user_name)
        if self._minimal_answer():
            self.set_status(204)
            self.finish()
            return
        self.set_status(201)
        self.finish(json.dumps(event_json(event)))

    def _minimal_answer(self) -> bool:
        """jupyter_server's bodiless 204, for those who expect it: `Prefer: return=minimal`,
        and browsers (their fetch sends `Sec-Fetch-Mode`), as JupyterLab's EventManager
        treats any other status as a failure; `Prefer: return=representation` wins."""
        prefer = self.request.headers.get("Prefer", "")
        if "return=representation" in prefer:
            return False
        return "return=minimal" in prefer or "Sec-Fetch-Mode" in self.request.headers

    @web.authenticated
    @authorized
    async def get(self) -> None:
        since = parse_since(self.get_query_argument("since", "0"))
        raw = parse_filter_json(self.get_query_argument("filter", None))
        event_filter = EventFilter.parse(raw).with_schema_ids(self.get_query_arguments("schema_id"))
        limit = parse_limit(self.get_query_argument("limit", "1000"))
        visible = self.datastore.views.visible_to(self.user_name)
        events = await self.datastore.events.replay(
            since, event_filter, limit=limit, visible=visible
        )
        last = events[-1].id if events else since
        self.finish(json.dumps({"events": [event_json(e) for e in events], "last_id": last}))


class EventSchemasHandler(DatastoreHandler):
    auth_resource = "events"

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps({"schemas": self.datastore.events.schemas()}))

    @web.authenticated
    @authorized_to("write")
    async def post(self) -> None:
        self.require("", Role.OWNER, "register an event schema")
        registered, new = await self.datastore.events.register(self.get_json_object())
        self.set_status(201 if new else 200)
        self.finish(json.dumps(registered))


async def authorize_event_socket(handler: JupyterHandler) -> None:
    """As jupyter_server's event socket: `execute` on `events`, else 403."""
    allowed = await ensure_async(
        handler.authorizer.is_authorized(handler, handler.current_user, "execute", "events")
    )
    if not allowed:
        raise web.HTTPError(403)


class Subscriber:
    """One subscription socket: replay, then live events, each frame built once per event
    and written straight to the socket (`handlers/websocket.py`, as room peers are)."""

    _running: ClassVar[set[Subscriber]] = set()  # keeps live connections referenced

    def __init__(self, bus: EventBus, store: Store, batch: float, visible: Visible) -> None:
        self.bus = bus
        self.store = store
        self.batch = batch
        self.visible = visible  # the subscriber's view: what it may see
        self.socket: WebSocket | None = None
        self.subscription: Subscription | None = None
        self._sender: asyncio.Task[None] | None = None
        self._pending: asyncio.Task[None] | None = None  # a change of subscription under way

    async def run(
        self, socket: WebSocket, response: bytes, event_filter: EventFilter, since: int
    ) -> None:
        try:
            await socket.accept(response)
        except StreamClosedError:
            return
        self.socket = socket
        Subscriber._running.add(self)
        await self._subscribe(event_filter, since)
        socket.start()

    async def _subscribe(self, event_filter: EventFilter, since: int) -> None:
        """(Re)start the subscription: live events queue up while the log is replayed."""
        if self.subscription is not None:
            self.bus.unsubscribe(self.subscription)
        if self._sender is not None:
            self._sender.cancel()
        subscription = self.bus.subscribe(event_filter, visible=self.visible)
        self.subscription = subscription
        history = await self.bus.catch_up(subscription, since) if since else []
        self._sender = asyncio.ensure_future(self._send(subscription, history))

    async def _send(self, subscription: Subscription, history: list[StoredEvent]) -> None:
        socket = self.socket
        assert socket is not None
        if history:
            self._write(socket, history)
        if not self.batch:
            # Caught up: what queued meanwhile, then each event straight to the socket as it
            # is stored (no task switch per subscriber); the socket closes a slow reader.
            self._write(socket, subscription.attach(lambda e: socket.send(self.bus.outgoing(e))))
        while not socket.closed:
            events = await subscription.next()
            if subscription.closed is not None:
                if subscription.closed == "overflow":
                    reason = {"error": "slow_subscriber", "detail": "resume with ?since="}
                    socket.close(1013, close_reason(reason))
                return
            self._write(socket, events)
            if self.batch:
                await asyncio.sleep(self.batch)

    def _write(self, socket: WebSocket, events: list[StoredEvent]) -> None:
        messages = [self.bus.outgoing(event) for event in events]
        if self.batch:
            joined = b"[" + b",".join(m.message for m in messages) + b"]"
            socket.send(Outgoing(joined, text=True))
        else:
            for message in messages:
                socket.send(message)

    def _control(self, body: dict[str, Any]) -> None:
        if self.socket is not None:
            self.socket.send(Outgoing(json.dumps(body).encode(), text=True))

    def on_message(self, message: bytes | str) -> None:
        try:
            request = read_json(message, "the message")
            if not isinstance(request, dict) or request.get("type") != "subscribe":
                raise BadRequest('a message must be {"type": "subscribe", ...}')
            event_filter = EventFilter.parse(request.get("filter"))
            since = parse_since(request.get("since", 0))
            batch = parse_batch(request.get("batch", self.batch))
        except (ValueError, DatastoreError) as exc:
            detail = exc.detail if isinstance(exc, DatastoreError) else f"not JSON: {exc}"
            self._control({"__control__": "error", "detail": detail})
            return
        self.batch = batch
        task = asyncio.ensure_future(self._resubscribe(event_filter, since))
        self._pending = task  # referenced until done

    async def _resubscribe(self, event_filter: EventFilter, since: int) -> None:
        last = await self.store.last_event_id()
        self._control({"__control__": "subscribed", "last_id": last})
        await self._subscribe(event_filter, since)

    def on_closed(self) -> None:
        Subscriber._running.discard(self)
        if self.subscription is not None:
            self.bus.unsubscribe(self.subscription)
        if self._sender is not None:
            self._sender.cancel()


class SubscribeHandler(DatastoreHandler):
    """The subscription socket (see the module docstring)."""

    auth_resource = "events"
    websocket = True

    @ws_authenticated
    async def get(self) -> None:
        await authorize_event_socket(self)
        since = parse_since(self.get_query_argument("since", "0"))
        event_filter = EventFilter.parse(parse_filter_json(self.get_query_argument("filter", None)))
        batch = parse_batch(self.get_query_argument("batch", "0"))
        response = handshake_response(self.request.headers)
        datastore = self.datastore
        visible = datastore.views.visible_to(self.user_name)
        subscriber = Subscriber(datastore.events, datastore.store, batch, visible)
        socket = self.stream_socket(
            on_message=subscriber.on_message,
            on_closed=subscriber.on_closed,
            name="events",
            max_message_size=MAX_CONTROL_MESSAGE,
        )
        await subscriber.run(socket, response, event_filter, since)


event_handlers: list[tuple[str, Any]] = [
    (r"/api/events", EventsHandler),
    (r"/api/events/schemas", EventSchemasHandler),
    (r"/api/events/subscribe", SubscribeHandler),
]
