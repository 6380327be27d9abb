"""The GraphQL transport on Tornado: HTTP (GET and POST), errors with codes, limits,
the SDL, and subscriptions over both WebSocket subprotocols."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from gql import gql
from graphqls import GRAPHQL, LEGACY_WS, TRANSPORT_WS, query, ws_client

from jupyter_datastore.graphql.schema import SDL_PATH, sdl


async def test_a_query_over_post_and_get(server: Any) -> None:
    answer = await query(server, "{ status { version sessionId } }")
    status = answer["data"]["status"]
    assert status["sessionId"] == server.get("/api/datastore/status")["sessionId"]
    headers = {"Authorization": f"token {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        got = await http.get(GRAPHQL, params={"query": "{ status { version } }"})
        assert got.status_code == 200 and got.json()["data"]["status"] == {
            "version": status["version"]
        }


async def delete_kernel(server: Any, kernel_id: str) -> None:
    headers = {"Authorization": f"token {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as http:
        assert (await http.delete(f"/api/kernels/{kernel_id}")).status_code == 204


def test_the_sdl_in_the_repository_is_the_served_schema(server: Any) -> None:
    assert SDL_PATH.read_text() == sdl(), "run: python -m jupyter_datastore.graphql"


@pytest.mark.parametrize("subprotocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_subscription_over_either_websocket_subprotocol(
    server: Any, subprotocol: str
) -> None:
    """The state of the server, then a kernel started over REST arriving as a change."""
    kernel_id: str | None = None
    async with ws_client(server, subprotocol=subprotocol) as session:
        updates = session.subscribe(
            gql("subscription { stateChanges { state changes { map key value } } }")
        )
        first = await anext(updates)
        assert "kernels" in first["stateChanges"]["state"]
        kernel_id = server.request("POST", "/api/kernels", {"name": "python3"})["id"]
        try:
            async for update in updates:
                keys = {(c["map"], c["key"]) for c in update["stateChanges"]["changes"]}
                if ("kernels", kernel_id) in keys:
                    break
        finally:
            await delete_kernel(server, kernel_id)
