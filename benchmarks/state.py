"""State: how soon a client learns that the server's state changed, on both servers.

The same actions on each server through the standard REST API: start a kernel, save a file,
create a session, open a terminal. Ours: a client of the state room (`datastore:state`, a
pycrdt document synced over the room WebSocket) waits for the change to appear in it. The
anchor (a stock jupyter_server with jupyter-collaboration): the only live channel a client
has is `/api/events/subscribe`, which carries kernel actions and contents saves; sessions
and terminals have no live channel there (a client polls; JupyterLab every 10 s), so those
rows have no anchor.

For each action: the time from sending the request to the client seeing the change, and
from the response to the client seeing it (the project's goal: within 100 ms; a change seen
before the response counts as 0).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pycrdt import Doc, Map
from websockets.asyncio.client import connect

from fanout import percentile
from servers import Server
from ywire import STEP1, SYNC, read_var_uint, var_uint

KINDS = ("kernel", "contents", "session", "terminal")


@dataclass(frozen=True)
class Load:
    kernels: int = 10
    saves: int = 50
    sessions: int = 10
    terminals: int = 20


class _Watcher:
    """Something that tells when a predicate on what the client knows becomes true."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Callable[[], bool], asyncio.Future[float]]] = []

    def changed(self) -> None:
        now = time.perf_counter()
        for check, future in list(self.waiting):
            if not future.done() and check():
                future.set_result(now)
                self.waiting.remove((check, future))

    def until(self, check: Callable[[], bool]) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting.append((check, future))
        self.changed()
        return future


class StateRoomClient(_Watcher):
    """Ours: the state room, synced into a pycrdt Doc."""

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server
        self.doc: Doc[Any] = Doc()

    def has(self, name: str, key: str) -> bool:
        return key in self.doc.get(name, type=Map)

    async def run(self, ready: asyncio.Event) -> None:
        url, token = self.server.endpoint.url, self.server.endpoint.token
        async with httpx.AsyncClient() as http:
            snapshot = (
                await http.get(
                    f"{url}/api/datastore/state", headers={"Authorization": f"token {token}"}
                )
            ).json()
        query = urllib.parse.urlencode({"sessionId": snapshot["session_id"], "token": token})
        ws_url = url.replace("http", "ws", 1) + f"/api/collaboration/room/datastore:state?{query}"
        async with connect(ws_url, max_size=None) as ws:
            state = self.doc.get_state()
            await ws.send(var_uint(SYNC) + var_uint(STEP1) + var_uint(len(state)) + state)
            async for message in ws:
                assert isinstance(message, bytes)
                kind, pos = read_var_uint(message, 0)
                if kind != SYNC:
                    continue
                step, pos = read_var_uint(message, pos)
                if step == STEP1:
                    continue  # the room is read-only: nothing of ours to send
                size, pos = read_var_uint(message, pos)
                self.doc.apply_update(message[pos : pos + size])
                ready.set()
                self.changed()


class EventStreamClient(_Watcher):
    """The anchor: jupyter_server's `/api/events/subscribe`."""

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server
        self.seen: set[tuple[str, str]] = set()

    def has(self, name: str, key: str) -> bool:
        return (name, key) in self.seen

    async def run(self, ready: asyncio.Event) -> None:
        url, token = self.server.endpoint.url, self.server.endpoint.token
        ws_url = url.replace("http", "ws", 1) + f"/api/events/subscribe?token={token}"
        async with connect(ws_url, max_size=None) as ws:
            ready.set()
            async for message in ws:
                data = json.loads(message)
                if data.get("action") == "start" and "kernel_id" in data:
                    self.seen.add(("kernels", data["kernel_id"]))
                elif data.get("action") == "save" and "path" in data:
                    self.seen.add(("contents", data["path"]))
                self.changed()


async def _measure(server: Server, client: Any, load: Load) -> dict[str, Any]:
    ready = asyncio.Event()
    reader = asyncio.ensure_future(client.run(ready))
    await asyncio.wait_for(ready.wait(), 30)
    headers = {"Authorization": f"token {server.endpoint.token}"}
    timings: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
    live_channel = isinstance(client, StateRoomClient)

    async def timed(
        kind: str, send: Callable[[], Any], key_of: Callable[[Any], tuple[str, str]]
    ) -> Any:
        start = time.perf_counter()
        response = await send()
        answered = time.perf_counter()
        assert response.status_code < 300, response.text
        body = response.json()
        name, key = key_of(body)
        seen = await asyncio.wait_for(client.until(lambda: client.has(name, key)), 30)
        timings[kind].append(((seen - start) * 1000, max(seen - answered, 0.0) * 1000))
        return body

    try:
        base_url = server.endpoint.url
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as http:
            for n in range(load.saves):
                await timed(
                    "contents",
                    lambda n=n: http.put(
                        f"/api/contents/bench-{n}.txt",
                        json={"type": "file", "format": "text", "content": f"{n}"},
                    ),
                    lambda body: ("contents", body["path"]),
                )
            for _ in range(load.kernels):
                kernel = await timed(
                    "kernel",
                    lambda: http.post("/api/kernels", json={"name": "python3"}),
                    lambda body: ("kernels", body["id"]),
                )
                await http.delete(f"/api/kernels/{kernel['id']}")
            if live_channel:
                for n in range(load.sessions):
                    session = await timed(
                        "session",
                        lambda n=n: http.post(
                            "/api/sessions",
                            json={"path": f"s{n}.ipynb", "type": "notebook",
                                  "kernel": {"name": "python3"}},
                        ),
                        lambda body: ("sessions", body["id"]),
                    )  # fmt: skip
                    await http.delete(f"/api/sessions/{session['id']}")
                for _ in range(load.terminals):
                    terminal = await timed(
                        "terminal",
                        lambda: http.post("/api/terminals"),
                        lambda body: ("terminals", body["name"]),
                    )
                    await http.delete(f"/api/terminals/{terminal['name']}")
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return {kind: _summary(values) for kind, values in timings.items() if values}


def _summary(values: list[tuple[float, float]]) -> dict[str, Any]:
    from_request = sorted(v[0] for v in values)
    after_response = sorted(v[1] for v in values)
    return {
        "n": len(values),
        "from_request_ms_p50": percentile(from_request, 0.5),  # type: ignore[arg-type]
        "from_request_ms_p99": percentile(from_request, 0.99),  # type: ignore[arg-type]
        "after_response_ms_p50": percentile(after_response, 0.5),  # type: ignore[arg-type]
        "after_response_ms_p99": percentile(after_response, 0.99),  # type: ignore[arg-type]
    }


def run(pair: list[Server], load: Load) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for server in pair:
        client = StateRoomClient(server) if server.name == "ours" else EventStreamClient(server)
        results[server.name] = asyncio.run(_measure(server, client, load))
    return results
