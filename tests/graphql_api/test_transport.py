"""The GraphQL transport on Tornado: HTTP (GET and POST), errors with codes, limits,
the SDL, and subscriptions over both WebSocket subprotocols."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx
import pytest
import websockets
from gql import gql
from graphql import get_introspection_query
from graphqls import GRAPHQL, LEGACY_WS, TRANSPORT_WS, query, ws_client
from websockets.typing import Origin, Subprotocol

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
    query_text = "subscription { stateChanges { state changes { map key value } } }"
    async with (
        ws_client(server, subprotocol=subprotocol) as session,
        contextlib.aclosing(session.subscribe(gql(query_text))) as updates,  # ended before
    ):  # the session closes (else gql waits 10 s for it, then leaves its socket open)
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


# --- errors and limits: refused before anything runs, with a code ---


def codes(answer: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in answer.get("errors") or []]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{ status { nope } }", "Cannot query field 'nope'"),
        ("{ status { version ", "Syntax Error"),
        ("{ " + "a: status { version } " * 2 + "}", None),  # fine: two aliases
        ("{ " + " ".join(f"a{i}: status {{ version }}" for i in range(40)) + " }", "aliases"),
    ],
)
async def test_a_query_that_does_not_validate_is_refused_with_a_code(
    server: Any, text: str, says: str | None
) -> None:
    answer = await raw(server, text)
    if says is None:
        assert "errors" not in answer, answer
        return
    assert codes(answer) == ["invalid_query"] and says in answer["errors"][0]["message"]
    assert answer.get("data") is None


async def test_introspection_works_but_may_not_recurse(server: Any) -> None:
    """The query clients send to learn the schema is answered; one that walks the types'
    fields recursively (its answer grows with every level) is refused before it runs."""
    full = await raw(server, get_introspection_query(descriptions=True))
    assert "errors" not in full and full["data"]["__schema"]["queryType"]["name"] == "Query"
    recursive = "{ __schema { types { fields { type { fields { type { name } } } } } } }"
    answer = await raw(server, recursive)
    assert codes(answer) == ["invalid_query"] and "fields" in answer["errors"][0]["message"]
    assert answer.get("data") is None


async def raw(server: Any, text: str, method: str = "POST", **more: Any) -> dict[str, Any]:
    """One operation by hand (httpx): the JSON answer, whatever its status."""
    headers = {"Authorization": f"token {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as http:
        if method == "GET":
            response = await http.get(GRAPHQL, params={"query": text, **more})
        else:
            response = await http.post(GRAPHQL, json={"query": text, **more})
    return dict(response.json())


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "bad_request"),
        (b'{"query": 42}', 400, "bad_request"),
        (b'{"query": "{ status { version } }", "variables": [1]}', 400, "bad_request"),
        (b"{}", 400, "bad_request"),
    ],
)
async def test_a_malformed_request_is_a_400_with_a_code(
    server: Any, body: bytes, status: int, code: str
) -> None:
    headers = {"Authorization": f"token {server.token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        response = await http.post(GRAPHQL, content=body)
    assert response.status_code == status
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == [code]


async def test_a_mutation_over_get_is_refused(server: Any) -> None:
    headers = {"Authorization": f"token {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        response = await http.get(GRAPHQL, params={"query": "mutation { x }"})
    assert response.status_code in (400, 405)


async def test_without_a_login_nothing_is_answered(server: Any) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(GRAPHQL, json={"query": "{ status { version } }"})
        assert response.status_code == 403 and "sessionId" not in response.text
        response = await http.get(GRAPHQL + "/schema.graphql")
        assert response.status_code == 403
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(ws_url(server), subprotocols=[Subprotocol(TRANSPORT_WS)])
    assert refused.value.response.status_code == 403


async def test_the_schema_is_served_as_sdl(server: Any) -> None:
    headers = {"Authorization": f"token {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        response = await http.get(GRAPHQL + "/schema.graphql")
    assert response.status_code == 200 and response.text == SDL_PATH.read_text()


# --- the WebSocket: bad input closes or is answered, and changes nothing ---


def ws_url(server: Any, token: str | None = None) -> str:
    url = server.url.replace("http", "ws", 1) + GRAPHQL
    return url if token is None else f"{url}?token={token}"


async def close_code(ws: Any, timeout: float = 10) -> int:
    async def drain() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await ws.recv()

    await asyncio.wait_for(drain(), timeout)
    assert ws.protocol.close_rcvd is not None, "dropped without a close frame"
    return int(ws.protocol.close_rcvd.code)


async def test_a_socket_without_a_known_subprotocol_is_closed_4406(server: Any) -> None:
    async with websockets.connect(
        ws_url(server, server.token), subprotocols=[Subprotocol("chat")]
    ) as ws:
        assert await close_code(ws) == 4406


async def test_a_socket_from_another_origin_is_refused(server: Any) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(
            ws_url(server, server.token),
            subprotocols=[Subprotocol(TRANSPORT_WS)],
            origin=Origin("http://evil.example"),
        )
    assert refused.value.response.status_code == 403


# A masked text frame's header announcing 2 MB (over the 1 MB limit), and 4 bytes of it.
OVERSIZE_HEADER = bytes([0x81, 0x80 | 127]) + (2 << 20).to_bytes(8, "big") + b"mask" + b"abcd"


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        (["not json"], 4400),
        ([b"\x00binary"], 4400),
        ([json.dumps({"type": "subscribe", "id": "1", "payload": {"query": "{x}"}})], 4401),
        ([OVERSIZE_HEADER], 1009),
    ],
)
async def test_bad_messages_close_the_socket(
    server: Any, messages: list[str | bytes], code: int
) -> None:
    """Not JSON, not text, a subscribe before connection_init, larger than the limit (only
    its header is sent: the server refuses it there, and a client still sending the rest
    would have the server's close frame lost to the connection's reset)."""
    async with websockets.connect(
        ws_url(server, server.token), subprotocols=[Subprotocol(TRANSPORT_WS)], max_size=None
    ) as ws:
        for message in messages:
            if message is OVERSIZE_HEADER:
                ws.transport.write(OVERSIZE_HEADER)
            else:
                await ws.send(message)
        assert await close_code(ws) == code


async def test_a_subscription_that_does_not_validate_gets_a_coded_error(server: Any) -> None:
    async with websockets.connect(
        ws_url(server, server.token), subprotocols=[Subprotocol(TRANSPORT_WS)]
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "subscription { stateChanges { nope } }"
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": query}}))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert answer["type"] == "error" and answer["id"] == "1"
        assert "nope" in answer["payload"][0]["message"]
        # The socket goes on: a good subscription gets its first state.
        good = "subscription { stateChanges { state } }"
        await ws.send(json.dumps({"type": "subscribe", "id": "2", "payload": {"query": good}}))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert (
            answer["type"] == "next"
            and "kernels" in answer["payload"]["data"]["stateChanges"]["state"]
        )


async def test_a_subscription_over_http_is_refused(server: Any) -> None:
    headers = {"Authorization": f"token {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        query = "subscription { stateChanges { state } }"
        response = await http.post(GRAPHQL, json={"query": query})
    assert response.status_code == 400
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["bad_request"]


@pytest.mark.parametrize(
    "body",
    [
        b"\xfe\xff not UTF-8",
        b'{"query": "{ status { version } }", "variables": ' + b'{"a": ' * 200 + b"1" + b"}" * 201,
        ('{"query": "{ status(x: ' + "[" * 3000 + "]" * 3000 + ') { version } }"}').encode(),
    ],
    ids=["not-utf8", "deep-json", "deep-query"],
)
async def test_hostile_bodies_are_refused_and_the_server_goes_on(server: Any, body: bytes) -> None:
    headers = {"Authorization": f"token {server.token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        response = await http.post(GRAPHQL, content=body)
        assert response.status_code in (200, 400), response.text
        assert response.json()["errors"]
    assert "errors" not in await query(server, "{ status { version } }")


async def test_a_user_with_no_role_gets_the_endpoint_and_nothing_private(
    roles_server: Any,
) -> None:
    """mallory (no role anywhere) may use the endpoint: the schema, the server's version;
    lists come back empty of what she may not see."""
    from roles import TOKENS

    token = TOKENS["mallory"]
    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(base_url=roles_server.url, headers=headers) as http:
        schema = await http.get(GRAPHQL + "/schema.graphql")
    assert schema.status_code == 200 and "type Query" in schema.text
    answer = await query(
        roles_server, "{ status { version } sessions { id } documents { path } }", token=token
    )
    assert "errors" not in answer
    assert answer["data"]["sessions"] == [] and answer["data"]["documents"] == []


async def test_a_variable_of_the_wrong_value_is_an_invalid_query(server: Any) -> None:
    text = (
        "mutation ($t: CellType!) "
        '{ insertCell(path: "a.ipynb", index: 0, cellType: $t, source: "x") }'
    )
    answer = await query(server, text, {"t": "SHELL"})
    assert codes(answer) == ["invalid_query"] and "SHELL" in answer["errors"][0]["message"]
    assert answer.get("data") is None
