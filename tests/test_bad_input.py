"""Bad input gets the documented close code or HTTP error, and changes nothing.

For every malformed frame: the sender is closed with 4400 and a JSON reason, another peer
in the same room notices nothing, the room keeps working for everyone else, and the file
on disk is untouched.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from notebooks import code_cell, notebook, write_notebook
from pycrdt import Array
from yclient import YClient, request_session, until

from jupyter_datastore.protocol.lib0 import var_bytes, var_string, var_uint


def ws_url(server: Any, room: str, **params: str) -> str:
    query = urllib.parse.urlencode(params)
    return f"ws://127.0.0.1:{server.port}/api/collaboration/room/{room}?{query}"


async def close_of(ws: Any, timeout: float = 10) -> tuple[int, Any]:
    """Read until the server closes; return its close code and its reason (JSON decoded)."""

    async def drain() -> None:
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed:
            pass

    await asyncio.wait_for(drain(), timeout)
    rcvd = ws.protocol.close_rcvd
    assert rcvd is not None, "the server dropped the connection without a close frame"
    try:
        reason: Any = json.loads(rcvd.reason)
    except ValueError:
        reason = rcvd.reason
    return rcvd.code, reason


async def open_room(server: Any, path: str) -> tuple[str, str]:
    session = await request_session(server.url, server.token, path)
    return f"json:notebook:{session['fileId']}", session["sessionId"]


@pytest.fixture
def victim(server: Any) -> Path:
    """A notebook in the shared server's root, one per test."""
    path = server.root / f"victim-{uuid.uuid4().hex[:8]}.ipynb"
    write_notebook(path, notebook(code_cell("untouched", "c1")))
    return path


TRUNCATED_UPDATE = b"\x00\x02" + var_uint(100) + b"\x01" * 10
MALFORMED_FRAMES = {
    "truncated update": TRUNCATED_UPDATE,
    "update that is not a Yjs update": b"\x00\x02" + var_bytes(b"\xff\xfe\xfd\xfc\xfb\x00\x01"),
    "unknown sync step": b"\x00\x09" + var_bytes(b"\x00"),
    "bad state vector": b"\x00\x00" + var_bytes(b"\x05\x01"),
    "garbage awareness": b"\x01" + var_bytes(b"\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
    "awareness state that is not JSON": b"\x01"
    + var_bytes(var_uint(1) + var_uint(5) + var_uint(1) + var_string("{not json")),
    "unknown message type": b"\x07\x00",
    "overlong varuint": b"\xff" * 12,
    "trailing bytes": b"\x00\x00" + var_bytes(b"\x00") + b"\x00\x00",
    "unknown RAW command": b"\x02" + var_string("format-disk"),
    "empty frame": b"",
}


@pytest.mark.parametrize("frame", MALFORMED_FRAMES.values(), ids=MALFORMED_FRAMES.keys())
async def test_malformed_frame_closes_only_its_sender(
    server: Any, victim: Path, frame: bytes
) -> None:
    before = victim.read_bytes()
    room, session_id = await open_room(server, victim.name)
    observer = await YClient.connect(server.url, server.token, room=room, session_id=session_id)
    try:
        changes: list[object] = []
        cells = observer.doc.get("cells", type=Array)  # the subscription lives with this object
        subscription = cells.observe_deep(changes.append)
        async with websockets.connect(
            ws_url(server, room, token=server.token, sessionId=session_id)
        ) as bad:
            await bad.send(frame)
            code, reason = await close_of(bad)
        assert code == 4400
        assert reason["error"] == "bad_request" and reason["detail"]
        # The room goes on: a new peer's edit reaches the observer.
        other = await YClient.connect(server.url, server.token, room=room, session_id=session_id)
        other.doc.get("cells", type=Array)[0]["source"].insert(0, "ok ")
        await until(
            lambda: str(observer.doc.get("cells", type=Array)[0]["source"]) == "ok untouched"
        )
        await other.close()
        assert len(changes) == 1  # only the good edit
        cells.unobserve(subscription)
    finally:
        await observer.close()
    assert victim.read_bytes() in (before,) or "ok untouched" in victim.read_text()


async def test_text_frame_is_refused(server: Any, victim: Path) -> None:
    room, session_id = await open_room(server, victim.name)
    async with websockets.connect(
        ws_url(server, room, token=server.token, sessionId=session_id)
    ) as bad:
        await bad.send("hello")
        code, reason = await close_of(bad)
    assert code == 4400 and "text frames" in reason["detail"]


@pytest.mark.parametrize(
    ("room", "code"),
    [
        ("no-such-room", 4400),
        ("json:notebook:00000000-0000-0000-0000-000000000000", 4404),
        ("json:notebook:..%2F..%2Fetc", 4400),
        ("xml:notebook:00000000-0000-0000-0000-000000000000", 4400),
    ],
    ids=["not a room id", "unknown file id", "malformed file id", "unsupported kind"],
)
async def test_unknown_rooms_are_refused_and_others_go_on(
    server: Any, victim: Path, room: str, code: int
) -> None:
    good_room, session_id = await open_room(server, victim.name)
    a = await YClient.connect(server.url, server.token, room=good_room, session_id=session_id)
    b = await YClient.connect(server.url, server.token, room=good_room, session_id=session_id)
    try:
        async with websockets.connect(
            ws_url(server, room, token=server.token, sessionId=session_id)
        ) as bad:
            got, reason = await close_of(bad)
        assert got == code and reason["detail"]
        a.doc.get("cells", type=Array)[0]["source"].insert(0, "still ")
        await until(lambda: str(b.doc.get("cells", type=Array)[0]["source"]).startswith("still "))
    finally:
        await a.close()
        await b.close()


ROOM_IDS = {
    # A room id of the wrong shape is a bad request everywhere: 400, close 4400.
    "not a room id": ("no-such-room", 400),
    "malformed file id": ("json:notebook:not*an*id", 400),
    "unsupported kind": ("xml:notebook:00000000-0000-0000-0000-000000000000", 400),
    # One that parses but names no file is not found everywhere: 404, close 4404.
    "unknown file id": ("json:notebook:00000000-0000-0000-0000-000000000000", 404),
}


@pytest.mark.parametrize(("room", "status"), ROOM_IDS.values(), ids=ROOM_IDS)
async def test_a_room_id_gets_the_same_answer_on_every_endpoint(
    server: Any, victim: Path, room: str, status: int
) -> None:
    """Every endpoint that takes a room id parses it the same way (documents/roomid.py)."""
    headers = {"Authorization": f"token {server.token}"}
    error = "bad_request" if status == 400 else "not_found"
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:
        kernel = (await http.post("/api/kernels", json={"name": "python3"})).json()["id"]
        try:
            answers = {
                "fork PUT": await http.put(f"/api/collaboration/fork/{room}", json={}),
                "fork GET": await http.get(f"/api/collaboration/fork/{room}"),
                "undo": await http.post(f"/api/datastore/rooms/{room}/undo"),
                "redo": await http.post(f"/api/datastore/rooms/{room}/redo"),
                "timeline undo": await http.put(
                    f"/api/collaboration/undo_redo/{room}",
                    params={"action": "undo", "steps": "1", "forkRoom": "0" * 32},
                ),
                "nbmodel cell": await http.post(
                    f"/api/kernels/{kernel}/execute",
                    json={"cell_id": "c1", "document_id": room},
                ),
                "nbmodel code": await http.post(
                    f"/api/kernels/{kernel}/execute",
                    json={"code": "1", "metadata": {"cell_id": "c1", "document_id": room}},
                ),
                "executions": await http.post(
                    "/api/datastore/executions", json={"room_id": room, "cell_ids": ["c1"]}
                ),
            }
            file_format, _, rest = room.partition(":")
            file_type = rest.partition(":")[0]
            if (file_format, file_type) != ("json", "notebook") and rest:
                answers["session PUT"] = await http.put(
                    f"/api/collaboration/session/{victim.name}",
                    json={"format": file_format, "type": file_type},
                )
        finally:
            await http.delete(f"/api/kernels/{kernel}")
    if status == 404:  # undo history is per user: the token names none, a 403 comes first
        del answers["undo"], answers["redo"]
    got = {name: (r.status_code, r.json().get("error")) for name, r in answers.items()}
    assert got == dict.fromkeys(answers, (status, error)), got
    _, session_id = await open_room(server, victim.name)
    async with websockets.connect(
        ws_url(server, room, token=server.token, sessionId=session_id)
    ) as ws:
        code, reason = await close_of(ws)
    assert (code, reason["error"]) == (4000 + status, error)


async def test_file_deleted_before_connect_gets_4404(server: Any) -> None:
    path = server.root / "gone.ipynb"
    write_notebook(path, notebook(code_cell("x", "c1")))
    room, session_id = await open_room(server, "gone.ipynb")
    path.unlink()
    async with websockets.connect(
        ws_url(server, room, token=server.token, sessionId=session_id)
    ) as ws:
        code, reason = await close_of(ws)
    assert code == 4404 and reason["error"] == "not_found"
    assert not path.exists()  # nothing was written


async def test_unreadable_notebook_gets_4500_and_is_left_alone(server: Any) -> None:
    path = server.root / "corrupt.ipynb"
    path.write_text('{"cells": [ this is not json')
    room, session_id = await open_room(server, "corrupt.ipynb")
    async with websockets.connect(
        ws_url(server, room, token=server.token, sessionId=session_id)
    ) as ws:
        code, reason = await close_of(ws)
    assert code == 4500 and "JSON" in reason["detail"]
    assert path.read_text() == '{"cells": [ this is not json'


@pytest.mark.parametrize("session_id", ["stale-or-foreign", "00000000-0000-0000-0000-000000000000"])
async def test_foreign_session_id_gets_1003_reloadable(
    server: Any, victim: Path, session_id: str
) -> None:
    room, current = await open_room(server, victim.name)
    async with websockets.connect(
        ws_url(server, room, token=server.token, sessionId=session_id)
    ) as ws:
        code, reason = await close_of(ws)
    assert code == 1003
    assert reason["reason"] == "unknown_session"
    assert reason["sessionId"] == current and reason["reloadable"] is True


async def test_missing_session_id_gets_4400(server: Any, victim: Path) -> None:
    room, _ = await open_room(server, victim.name)
    async with websockets.connect(ws_url(server, room, token=server.token)) as ws:
        code, reason = await close_of(ws)
    assert code == 4400 and "sessionId" in reason["detail"]


async def test_websocket_without_token_is_refused(server: Any, victim: Path) -> None:
    room, session_id = await open_room(server, victim.name)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(ws_url(server, room, sessionId=session_id))
    assert refused.value.response.status_code == 403


async def put_session(
    server: Any, path: str, body: Any, token: str | None = "default"
) -> httpx.Response:
    headers = {"Authorization": f"token {server.token if token == 'default' else token}"}
    if token is None:
        headers = {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient() as http:
        return await http.put(
            f"{server.url}/api/collaboration/session/{urllib.parse.quote(path, safe='')}",
            content=content,
            headers=headers,
        )


NB = {"format": "json", "type": "notebook"}


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("missing.ipynb", NB, 404, "not_found"),
        (".hidden.ipynb", NB, 404, "not_found"),
        ("a-folder", NB, 404, "not_found"),
        ("../outside.ipynb", NB, 404, "not_found"),
        ("sub/../../outside.ipynb", NB, 404, "not_found"),
        ("present.ipynb", b"{not json", 400, "bad_request"),
        ("present.ipynb", ["json", "notebook"], 400, "bad_request"),
        ("present.ipynb", {"format": "json"}, 400, "bad_request"),
        ("present.ipynb", {"format": "json", "type": 3}, 400, "bad_request"),
        ("present.ipynb", {"format": "text", "type": "notebook"}, 400, "bad_request"),
    ],
)
async def test_session_request_errors(
    server: Any, path: str, body: Any, status: int, error: str
) -> None:
    (server.root / "a-folder").mkdir(exist_ok=True)
    write_notebook(server.root / "present.ipynb", notebook())
    write_notebook(server.root / ".hidden.ipynb", notebook())  # hidden files are not served
    (server.root.parent / "outside.ipynb").write_text("{}")
    response = await put_session(server, path, body)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error and body["detail"] and body["message"] == body["detail"]


async def test_session_request_without_token_is_refused(server: Any) -> None:
    write_notebook(server.root / "present.ipynb", notebook())
    response = await put_session(server, "present.ipynb", NB, token=None)
    assert response.status_code == 403


async def test_frame_over_the_size_limit_gets_1009(make_server: Any, tmp_path: Path) -> None:
    srv = make_server(["--DatastoreApp.max_message_size=65536"])
    path = tmp_path / "big.ipynb"
    write_notebook(path, notebook(code_cell("small", "c1")))
    before = path.read_bytes()
    room, session_id = await open_room(srv, "big.ipynb")
    observer = await YClient.connect(srv.url, srv.token, room=room, session_id=session_id)
    try:
        url = ws_url(srv, room, token=srv.token, sessionId=session_id)
        async with websockets.connect(url, max_size=None) as bad:
            await bad.send(b"\x00\x02" + var_bytes(b"\x00" * 100_000))
            code, _ = await close_of(bad)
        assert code == 1009
        assert str(observer.doc.get("cells", type=Array)[0]["source"]) == "small"
    finally:
        await observer.close()
    assert path.read_bytes() == before


def raw_websocket(port: int, path: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads: a stuck peer."""
    sock = socket.socket()
    sock.setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
    )  # a small window, set before connecting
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert b" 101 " in head, head
    return sock


async def test_slow_peer_is_closed_and_the_room_goes_on(make_server: Any, tmp_path: Path) -> None:
    srv = make_server(["--DatastoreApp.peer_send_limit=65536"])
    write_notebook(tmp_path / "slow.ipynb", notebook(code_cell("", "c1")))
    room, session_id = await open_room(srv, "slow.ipynb")
    query = urllib.parse.urlencode({"token": srv.token, "sessionId": session_id})
    stuck = raw_websocket(srv.port, f"/api/collaboration/room/{room}?{query}")
    writer = await YClient.connect(srv.url, srv.token, room=room, session_id=session_id)
    reader = await YClient.connect(srv.url, srv.token, room=room, session_id=session_id)

    def peers() -> int:
        rooms = srv.get("/api/datastore/status")["rooms"]
        return int(next(r["peers"] for r in rooms if r["name"] == room))

    try:
        await until(lambda: peers() == 3, what="3 peers")
        source = writer.doc.get("cells", type=Array)[0]["source"]
        chunk = "x" * 8000
        # Keep the room busy until the stuck peer's backlog (kernel buffers, then ours) overflows.
        for step in range(10_000):
            source.insert(0, chunk)
            del source[0 : len(chunk)]
            await asyncio.sleep(0)
            if step % 50 == 0 and peers() == 2:
                break
        await until(lambda: peers() == 2, timeout=20, what="the stuck peer closed")
        source.insert(0, "done")
        await until(
            lambda: str(reader.doc.get("cells", type=Array)[0]["source"]) == "done",
            timeout=20,
            what="every update at the healthy reader",
        )
        assert "slow peer" in srv.log(), srv.log()[-3000:]
    finally:
        stuck.close()
        await writer.close()
        await reader.close()


# Found by tests/test_schemathesis.py: each was a 500 (or, for a boolean "version", a schema
# registered as version "False"), and each is now a 400 JSON error that changes nothing.
UNRESOLVABLE_SCHEMA = "https://example.org/bad-input/unresolvable/v1"


def event_schema(name: str, **extra: Any) -> dict[str, Any]:
    return {"$id": f"https://example.org/bad-input/{name}/v1", "version": "1", **extra}


REST_BAD_INPUT = {
    "events limit not an integer": ("GET", "/api/events?limit=false", None),
    "events since beyond the largest id": ("GET", f"/api/events?since={2**63}", None),
    "notifications since before year 1 in UTC": (
        "GET",
        "/api/notifications?since=0001-01-01T00:00:00%2B01:00",
        None,
    ),
    "schema without $id, integer version": (
        "POST",
        "/api/events/schemas",
        {"version": 1, "properties": {}},
    ),
    "schema with a boolean version": (
        "POST",
        "/api/events/schemas",
        {**event_schema("boolean"), "version": False, "properties": {}},
    ),
    "schema whose required is no list": (
        "POST",
        "/api/events/schemas",
        event_schema("required", properties={}, required=5),
    ),
    "schema with a pattern that is no regex": (
        "POST",
        "/api/events/schemas",
        event_schema("pattern", properties={"a": {"pattern": "("}}),
    ),
    "schema with a top-level $ref": (
        "POST",
        "/api/events/schemas",
        event_schema("ref", properties={}, **{"$ref": "#/definitions/x"}),
    ),
    "event of a schema whose $ref does not resolve": (
        "POST",
        "/api/events",
        {"schema_id": UNRESOLVABLE_SCHEMA, "version": "1", "data": {"a": 1}},
    ),
}


@pytest.mark.parametrize(("method", "path", "body"), REST_BAD_INPUT.values(), ids=REST_BAD_INPUT)
async def test_rest_bad_input_is_a_400_and_changes_nothing(
    server: Any, method: str, path: str, body: Any
) -> None:
    headers = {"Authorization": f"token {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        unresolvable = {
            "$id": UNRESOLVABLE_SCHEMA,
            "version": "1",
            "properties": {"a": {"$ref": "#/definitions/nope"}},
        }
        assert (await http.post("/api/events/schemas", json=unresolvable)).status_code in (200, 201)

        async def state() -> Any:
            schemas = (await http.get("/api/events/schemas")).json()
            query = {"schema_id": UNRESOLVABLE_SCHEMA}
            events = (await http.get("/api/events", params=query)).json()["events"]
            return schemas, events

        before = await state()
        response = await http.request(method, path, json=body)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()
        assert error["error"] == "bad_request" and error["detail"] == error["message"]
        assert await state() == before


async def test_nbmodel_route_with_a_malformed_kernel_id_is_a_json_404(server: Any) -> None:
    headers = {"Authorization": f"token {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        response = await http.post("/api/kernels/not-a-kernel/execute", json={"code": "1"})
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
