"""Strawberry's async view on Tornado: GraphQL over HTTP, and subscriptions over our
WebSocket (`handlers/websocket.py`) with either subprotocol, `graphql-transport-ws` or the
legacy `graphql-ws`.

Strawberry has no Tornado integration; an integration gives its `AsyncBaseHTTPView` a
request adapter, a response, and a WebSocket adapter (`iter_json`, `send_json`, `close`).
The handler (`handlers/graphql.py`) has already authenticated the request; the view gives
every operation a `Caller` (`context.py`) made from it.

A socket's incoming messages wait in a queue of `MAX_QUEUED` messages for the protocol
handler, which reads them one at a time (each subscription then runs in its own task);
a client that sends more than that without waiting is closed with 1008. A message is at
most `MAX_MESSAGE` bytes (larger: closed with 1009). What the server sends is bounded as
on every socket of ours: a reader more than `peer_send_limit` bytes behind is closed
with 1013.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeGuard, cast

from cross_web import AsyncHTTPRequestAdapter, FormData, HTTPException
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.async_base_view import AsyncBaseHTTPView, AsyncWebSocketAdapter
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived
from strawberry.schema import BaseSchema
from tornado.iostream import StreamClosedError

from ..datastore import Datastore
from ..protocol.frames import offered_subprotocols
from ..protocol.jsondepth import MAX_JSON_DEPTH, json_depth_over
from .context import Caller
from .ide import ide_page
from .sharing import FrameCache

__all__ = [
    "MAX_MESSAGE",
    "MAX_QUEUED",
    "GraphQLSocket",
    "GraphQLView",
    "HTTPAnswer",
    "TornadoRequest",
]

MAX_MESSAGE = 1 << 20
MAX_QUEUED = 256
_CLOSED = object()  # queued when the socket ends: the reader stops


class TornadoRequest(AsyncHTTPRequestAdapter):
    """A Tornado request handler as Strawberry reads a request."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.request = handler.request

    @property
    def query_params(self) -> Mapping[str, str | None]:
        return {
            name: values[-1].decode("utf-8", "replace")
            for name, values in self.request.query_arguments.items()
            if values
        }

    @property
    def path_params(self) -> Mapping[str, Any]:
        return dict(self.handler.path_kwargs or {})

    @property
    def method(self) -> Any:
        return self.request.method.upper()

    @property
    def headers(self) -> Mapping[str, str]:
        return cast(Mapping[str, str], self.request.headers)

    @property
    def content_type(self) -> str | None:
        return cast("str | None", self.request.headers.get("Content-Type"))

    async def get_body(self) -> bytes:
        return cast(bytes, self.request.body or b"")

    async def get_form_data(self) -> FormData:
        raise HTTPException(400, "multipart requests are not accepted")

    @property
    def url(self) -> str:
        return cast(str, self.request.full_url())

    @property
    def cookies(self) -> Mapping[str, str]:
        return {name: morsel.value for name, morsel in self.request.cookies.items()}

    @property
    def client_host(self) -> str | None:
        return cast("str | None", self.request.remote_ip)


@dataclass
class HTTPAnswer:
    """What the handler writes: a status, headers and a body."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class GraphQLSocket:
    """One open subscription socket: our WebSocket (`socket`, set by the handler that
    opens it) and the queue its messages wait in."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue(MAX_QUEUED)
        self.socket: Any = None
        self.caller: Caller | None = None

    def rules_changed(self) -> None:
        """The live re-check found the login still good after rules or users changed."""
        if self.caller is not None:
            self.caller.rules_changed()

    async def open(self, response: bytes) -> None:
        """Answer the handshake (`response`: the 101) and start reading."""
        try:
            await self.socket.accept(response)
        except StreamClosedError:
            self.ended()
            return
        self.socket.start()

    def received(self, message: bytes | str) -> None:
        if self.queue.full():
            self.socket.close(1008, "too many messages waiting to be handled")
            return
        self.queue.put_nowait(message)

    def ended(self) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # room for the end: it must be read
        self.queue.put_nowait(_CLOSED)


class TornadoWebSocket(AsyncWebSocketAdapter):
    def __init__(self, view: GraphQLView, request: Any, ws: GraphQLSocket) -> None:
        super().__init__(view)  # type: ignore[arg-type]
        self.ws = ws
        self.frames = view.frames

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        while True:
            message = await self.ws.queue.get()
            if message is _CLOSED:
                return
            if isinstance(message, bytes):
                raise NonTextMessageReceived
            try:
                yield self.view.decode_json(message)
            except json.JSONDecodeError as exc:
                if not ignore_parsing_errors:
                    raise NonJsonMessageReceived from exc

    async def send_json(self, message: Mapping[str, object]) -> None:
        """Send, or drop once the socket is closed (nobody is left to read it; the reader
        ends and the handler stops every operation). Not raised: Strawberry's legacy
        graphql-ws handler would leave it in a task nobody awaits."""
        socket = self.ws.socket
        if not socket.closed:
            socket.send(self.frames.outgoing(message))

    async def close(self, code: int, reason: str) -> None:
        self.ws.socket.close(code, reason)


class GraphQLView(AsyncBaseHTTPView[Any, HTTPAnswer, HTTPAnswer, Any, GraphQLSocket, Caller, None]):
    """One per server: the schema and how operations reach it over Tornado."""

    allow_queries_via_get = True
    request_adapter_class = TornadoRequest
    websocket_adapter_class = TornadoWebSocket  # type: ignore[assignment]
    keep_alive = True  # the legacy protocol's "ka" messages, which its clients expect
    keep_alive_interval = 30.0
    connection_init_wait_timeout = timedelta(seconds=30)
    max_subscriptions_per_connection = 100

    def __init__(self, schema: BaseSchema, datastore: Datastore) -> None:
        self.schema = schema
        self.datastore = datastore
        self.graphql_ide = "graphiql"
        self.frames = FrameCache()

    def decode_json(self, data: str | bytes) -> object:
        """JSON from a client (a body, `variables`, a WebSocket message), read as our REST
        handlers read it: nesting deeper than `MAX_JSON_DEPTH` is refused before parsing,
        and bytes that are not UTF-8 are not JSON (both as a JSONDecodeError, which
        Strawberry answers 400 on HTTP and 4400 on a WebSocket)."""
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise json.JSONDecodeError(f"not UTF-8: {exc.reason}", "", exc.start) from exc
        if json_depth_over(data, MAX_JSON_DEPTH):
            raise json.JSONDecodeError(f"nests deeper than {MAX_JSON_DEPTH} levels", data, 0)
        return json.loads(data)

    async def get_sub_response(self, request: Any) -> HTTPAnswer:
        return HTTPAnswer()

    async def get_context(self, request: Any, response: Any) -> Caller:
        caller = Caller(self.datastore, request.user_name, request)
        if isinstance(response, GraphQLSocket):
            response.caller = caller  # told when rules or users change
        return caller

    async def get_root_value(self, request: Any) -> None:
        return None

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: HTTPAnswer,
    ) -> HTTPAnswer:
        sub_response.headers["Content-Type"] = "application/json"
        sub_response.body = json.dumps(response_data).encode()
        return sub_response

    async def render_graphql_ide(self, request: Any) -> HTTPAnswer:
        page = ide_page(request.base_url)
        return HTTPAnswer(headers={"Content-Type": "text/html; charset=utf-8"}, body=page)

    def is_websocket_request(self, request: Any) -> TypeGuard[Any]:
        return bool(request.request.headers.get("Upgrade", "").lower() == "websocket")

    async def pick_websocket_subprotocol(self, request: Any) -> str | None:
        offered = offered_subprotocols(request.request.headers)
        return next((p for p in offered if p in self.websocket_subprotocols), None)

    async def create_websocket_response(
        self, request: Any, subprotocol: str | None
    ) -> GraphQLSocket:
        return cast(GraphQLSocket, await request.open_graphql_socket(subprotocol))

    def get_websocket_headers(self, request: Any) -> Mapping[str, str]:
        return {name.lower(): value for name, value in request.request.headers.get_all()}

    async def reject_websocket(self, request: Any) -> HTTPAnswer:
        raise HTTPException(403, "a WebSocket from another origin is not accepted")
