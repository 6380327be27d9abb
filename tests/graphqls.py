"""GraphQL clients for tests: Python `gql` over HTTP (httpx) and WebSocket (websockets),
as a given token's user; `query` runs one operation and gives its data or its errors."""

from __future__ import annotations

from typing import Any

from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

GRAPHQL = "/api/datastore/graphql"
TRANSPORT_WS = WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL  # "graphql-transport-ws"
LEGACY_WS = WebsocketsTransport.APOLLO_SUBPROTOCOL  # "graphql-ws"


def http_client(server: Any, token: str | None = None) -> Client:
    """A `gql` client over HTTP; `async with client as session: await session.execute(...)`."""
    headers = {"Authorization": f"token {token or server.token}"}
    transport = HTTPXAsyncTransport(url=server.url + GRAPHQL, headers=headers, timeout=60)
    return Client(transport=transport, fetch_schema_from_transport=False, execute_timeout=60)


def ws_client(server: Any, token: str | None = None, subprotocol: str = TRANSPORT_WS) -> Client:
    """A `gql` client over WebSocket with `subprotocol` (graphql-transport-ws by default)."""
    url = server.url.replace("http", "ws", 1) + GRAPHQL
    headers = {"Authorization": f"token {token or server.token}"}
    transport = WebsocketsTransport(url=url, headers=headers, subprotocols=[subprotocol])
    return Client(transport=transport, fetch_schema_from_transport=False, execute_timeout=60)


async def query(
    server: Any, text: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    """One operation over HTTP: `{"data": ...}` or `{"errors": [...], "data": ...}`."""
    async with http_client(server, token) as session:
        try:
            data = await session.execute(GraphQLRequest(text, variable_values=variables))
        except TransportQueryError as exc:
            return {"errors": exc.errors or [], "data": exc.data}
    return {"data": data}
