"""The room WebSocket itself: TLS, keep-alive pings, the opening handshake."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from notebooks import code_cell, notebook, write_notebook
from pycrdt import Array, Doc
from test_bad_input import raw_websocket
from yclient import YClient, request_session, until

from jupyter_datastore.protocol.lib0 import Reader
from jupyter_datastore.protocol.messages import sync_step1, sync_update


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def sync_over(ws: Any) -> Doc:
    """Sync a fresh Doc over an open room socket (SyncStep1 out, SyncStep2 in)."""
    doc: Doc = Doc()
    await ws.send(sync_step1(doc.get_state()))
    while True:
        reader = Reader(await ws.recv())
        if reader.read_var_uint() == 0 and reader.read_var_uint() == 1:
            doc.apply_update(reader.read_var_bytes())
            return doc


async def test_rooms_work_over_tls(make_server: Any, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    srv = make_server([f"--ServerApp.certfile={cert}", f"--ServerApp.keyfile={key}"], tls=True)
    write_notebook(tmp_path / "tls.ipynb", notebook(code_cell("secret", "c1")))
    async with httpx.AsyncClient(verify=False) as http:
        session = (
            await http.put(
                f"{srv.url}/api/collaboration/session/tls.ipynb",
                json={"format": "json", "type": "notebook"},
                headers={"Authorization": f"token {srv.token}"},
            )
        ).json()
    query = urllib.parse.urlencode({"token": srv.token, "sessionId": session["sessionId"]})
    url = f"wss://127.0.0.1:{srv.port}/api/collaboration/room/json:notebook:{session['fileId']}?{query}"
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    async with websockets.connect(url, ssl=context) as a, websockets.connect(url, ssl=context) as b:
        doc_a, doc_b = await sync_over(a), await sync_over(b)
        assert str(doc_a.get("cells", type=Array)[0]["source"]) == "secret"
        before = doc_a.get_state()
        doc_a.get("cells", type=Array)[0]["source"].insert(0, "top ")
        await a.send(sync_update(doc_a.get_update(before)))
        while str(doc_b.get("cells", type=Array)[0]["source"]) != "top secret":
            reader = Reader(await asyncio.wait_for(b.recv(), 10))
            if reader.read_var_uint() == 0 and reader.read_var_uint() in (1, 2):
                doc_b.apply_update(reader.read_var_bytes())


async def test_a_client_that_stops_answering_pings_is_dropped(
    make_server: Any, tmp_path: Path
) -> None:
    srv = make_server(
        ["--ServerApp.websocket_ping_interval=1", "--ServerApp.websocket_ping_timeout=1"]
    )
    write_notebook(tmp_path / "ping.ipynb", notebook(code_cell("", "c1")))
    alive = await YClient.connect(srv.url, srv.token, "ping.ipynb")  # answers pings
    session = await request_session(srv.url, srv.token, "ping.ipynb")
    room = alive.room
    query = urllib.parse.urlencode({"token": srv.token, "sessionId": session["sessionId"]})
    stuck = raw_websocket(srv.port, f"/api/collaboration/room/{room}?{query}")

    def peers() -> int:
        rooms = srv.get("/api/datastore/status")["rooms"]
        return int(next(r["peers"] for r in rooms if r["name"] == room))

    try:
        await until(lambda: peers() == 2, what="both peers")
        await until(lambda: peers() == 1, timeout=10, what="the silent peer dropped")
        assert not alive.closed.is_set()
        # The live client keeps working after several ping intervals.
        alive.doc.get("cells", type=Array)[0]["source"].insert(0, "still here")
        other = await YClient.connect(srv.url, srv.token, "ping.ipynb")
        await until(
            lambda: str(other.doc.get("cells", type=Array)[0]["source"]) == "still here",
            what="the live client's edit",
        )
        await other.close()
    finally:
        stuck.close()
        await alive.close()


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8",
          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, "version"),
        ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
          "Sec-WebSocket-Key": "short"}, "Sec-WebSocket-Key"),
        ({}, "not a WebSocket request"),
    ],
    ids=["old version", "bad key", "plain GET"],
)  # fmt: skip
async def test_a_bad_opening_handshake_gets_400(
    server: Any, headers: dict[str, str], detail: str
) -> None:
    write_notebook(server.root / "hs.ipynb", notebook())
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{server.url}/api/collaboration/room/JupyterLab:globalAwareness",
            headers={**headers, "Authorization": f"token {server.token}"},
        )
    assert response.status_code == 400
    assert detail in response.json()["detail"]
