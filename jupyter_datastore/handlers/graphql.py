"""`/api/datastore/graphql`: GraphQL over HTTP (GET for queries and GraphiQL, POST for
everything) and WebSocket (subscriptions); `/api/datastore/graphql/schema.graphql`: the SDL;
`/api/datastore/graphql/static/`: the files of GraphiQL's page (`graphql/ide.py`).

Any logged-in user may ask; each field and mutation decides on the caller's roles as the
REST route of the same thing does (`graphql/`). The WebSocket is authenticated when it
opens and re-checked while it is open (`auth/live.py`): a lost login closes it with 4403.
"""

from __future__ import annotations

import json
from typing import Any, cast

from cross_web import HTTPException
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from tornado import web

from ..errors import code_of_status
from ..graphql.ide import ASSETS, CONTENT_SECURITY_POLICY, assets_folder
from ..graphql.schema import make_schema, sdl
from ..graphql.transport import MAX_MESSAGE, GraphQLSocket, GraphQLView, HTTPAnswer
from .base import DatastoreHandler
from .websocket import handshake_response

__all__ = ["GraphQLHandler", "GraphiQLStaticHandler", "SchemaHandler"]


class _Base(DatastoreHandler):
    auth_resource = "graphql"
    _content_type = "application/json"

    def finish(self, *args: Any, **kwargs: Any) -> Any:
        """APIHandler's `finish` makes every answer JSON; GraphiQL's page is HTML, the
        schema plain text."""
        kwargs.setdefault("set_content_type", self._content_type)
        return super().finish(*args, **kwargs)

    @property
    def view(self) -> GraphQLView:
        """The server's one view (and schema), made at its first request."""
        view = self.settings.get("datastore_graphql")
        if view is None:
            view = self.settings["datastore_graphql"] = GraphQLView(make_schema(), self.datastore)
        return cast(GraphQLView, view)


class GraphQLHandler(_Base):
    async def get(self) -> None:
        if self.request.headers.get("Upgrade", "").lower() == "websocket":
            await self._subscriptions()  # type: ignore[misc]
        else:
            await self._http()  # type: ignore[misc]

    async def post(self) -> None:
        await self._http()  # type: ignore[misc]

    @web.authenticated
    @authorized
    async def _http(self) -> None:
        try:
            answer = await self.view.run(self)
        except HTTPException as exc:  # a request Strawberry could not read
            code = code_of_status(exc.status_code)
            error = {"message": exc.reason, "extensions": {"code": code}}
            answer = HTTPAnswer(exc.status_code, {"Content-Type": "application/json"})
            answer.body = json.dumps({"errors": [error]}).encode()
        self.set_status(answer.status)
        for name, value in answer.headers.items():
            self.set_header(name, value)
        self._content_type = answer.headers.get("Content-Type", self._content_type)
        if self._content_type.startswith("text/html"):  # GraphiQL's page
            # jupyter_server's policy (frame-ancestors, report-uri) with the page's own in
            # place of the API's "default-src 'none'"; the XSRF cookie for its POSTs.
            server_policy = super(APIHandler, self).content_security_policy
            self.set_header(
                "Content-Security-Policy", f"{server_policy}; {CONTENT_SECURITY_POLICY}"
            )
            self.xsrf_token  # noqa: B018 - sets the `_xsrf` cookie
        self.finish(answer.body)

    @ws_authenticated
    async def _subscriptions(self) -> None:
        try:
            await self.view.run(self)
        except HTTPException as exc:  # before the handshake was answered
            raise web.HTTPError(exc.status_code, exc.reason) from exc

    async def open_graphql_socket(self, subprotocol: str | None) -> GraphQLSocket:
        """Answer the handshake on our WebSocket (the transport's `create_websocket_response`)."""
        response = handshake_response(self.request.headers, subprotocol)
        graphql_socket = GraphQLSocket()
        graphql_socket.socket = self.stream_socket(
            on_message=graphql_socket.received,
            on_closed=graphql_socket.ended,
            name="graphql",
            max_message_size=MAX_MESSAGE,
            recheck=graphql_socket.rules_changed,
        )
        await graphql_socket.open(response)
        return graphql_socket


class SchemaHandler(_Base):
    _content_type = "text/plain; charset=utf-8"

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(sdl(self.view.schema))  # type: ignore[arg-type]


class GraphiQLStaticHandler(JupyterHandler, web.StaticFileHandler):  # type: ignore[misc]
    """The files of GraphiQL's page (`graphql/ide.py`: `ASSETS`, nothing else), for
    logged-in users."""

    auth_resource = "graphql"

    def initialize(self) -> None:  # type: ignore[override]
        web.StaticFileHandler.initialize(self, path="")  # the folder is found per request

    @web.authenticated
    @authorized
    async def get(self, path: str, include_body: bool = True) -> None:  # type: ignore[override]
        folder = assets_folder()
        if path not in ASSETS or folder is None:
            raise web.HTTPError(404)
        self.root = str(folder)  # tornado's own check keeps the path inside it
        await web.StaticFileHandler.get(self, path, include_body)
