"""A minimal y-websocket peer for tests: a pycrdt Doc synced over a real WebSocket."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import websockets
from pycrdt import Doc, TransactionEvent

from jupyter_datastore.protocol.awareness import AwarenessEntry, encode_awareness_update
from jupyter_datastore.protocol.lib0 import Reader
from jupyter_datastore.protocol.messages import (
    awareness_message,
    save_request,
    sync_step1,
    sync_step2,
    sync_update,
)


async def until(
    predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Wait for `predicate()` to hold, polling; fail the test after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    """Await `check()` until it returns something truthy, and return that; fail after
    `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {result!r} after {timeout}s")
        await asyncio.sleep(0.01)


class YClient:
    def __init__(self, ws: Any, doc: Doc | None = None) -> None:
        self.ws = ws
        self.doc = doc if doc is not None else Doc()
        self.synced = asyncio.Event()
        self.raw: list[dict[str, Any]] = []
        self.awareness: dict[int, Any] = {}
        self.messages = 0
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str = ""
        self._applying = False
        self._outbox: asyncio.Queue[tuple[bytes, asyncio.Future[None] | None]] = asyncio.Queue()
        self._sender = asyncio.ensure_future(self._send_in_order())
        self._sub: Any = self.doc.observe(self._on_change)
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(
        cls,
        base_url: str,
        token: str,
        path: str | None = None,
        *,
        file_format: str = "json",
        file_type: str = "notebook",
        room: str | None = None,
        session_id: str | None = None,
        doc: Doc | None = None,
        wait_sync: bool = True,
    ) -> YClient:
        """Ask for a document session (as JupyterLab does), then connect to its room."""
        if room is None:
            assert path is not None
            session = await request_session(base_url, token, path, file_format, file_type)
            room = f"{session['format']}:{session['type']}:{session['fileId']}"
            session_id = session_id or session["sessionId"]
        params = {"token": token}
        if session_id is not None:
            params["sessionId"] = session_id
        ws_url = (
            base_url.replace("http", "ws", 1)
            + f"/api/collaboration/room/{room}?"
            + urllib.parse.urlencode(params)
        )
        ws = await websockets.connect(ws_url, max_size=None)
        client = cls(ws, doc)
        client.room = room
        try:
            await client.send(sync_step1(client.doc.get_state()))
        except websockets.ConnectionClosed:
            if wait_sync:
                raise
            # Closed at once (refused): `wait_closed` gives the code and the reason.
        if wait_sync:
            await asyncio.wait_for(client.synced.wait(), 20)
        return client

    async def send(self, message: bytes) -> None:
        """Send after everything queued before it (local edits are queued as they happen)."""
        done = asyncio.get_running_loop().create_future()
        self._outbox.put_nowait((message, done))
        await done

    def _on_change(self, event: TransactionEvent) -> None:
        if not self._applying:
            self._spawn(sync_update(event.update))

    def _spawn(self, message: bytes) -> None:
        self._outbox.put_nowait((message, None))

    async def _send_in_order(self) -> None:
        while True:
            message, done = await self._outbox.get()
            try:
                await self.ws.send(message)
            except websockets.ConnectionClosed as exc:
                if done is not None and not done.done():
                    done.set_exception(exc)
                continue
            if done is not None and not done.done():
                done.set_result(None)

    async def set_awareness(self, client_id: int, clock: int, state: Any) -> None:
        entry = AwarenessEntry(client_id, clock, json.dumps(state))
        await self.send(awareness_message(encode_awareness_update([entry])))

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                self.messages += 1
                self._handle(data)
        except websockets.ConnectionClosed:
            pass
        finally:
            rcvd = self.ws.protocol.close_rcvd
            self.close_code = rcvd.code if rcvd is not None else None
            self.close_reason = rcvd.reason if rcvd is not None else ""
            self.closed.set()

    def _handle(self, data: bytes) -> None:
        reader = Reader(data)
        kind = reader.read_var_uint()
        if kind == 0:
            step = reader.read_var_uint()
            payload = reader.read_var_bytes()
            if step == 0:
                self._spawn(sync_step2(self.doc.get_update(payload)))
            else:
                self._applying = True
                try:
                    self.doc.apply_update(payload)
                finally:
                    self._applying = False
                if step == 1:
                    self.synced.set()
        elif kind == 1:
            update = Reader(reader.read_var_bytes())
            for _ in range(update.read_var_uint()):
                client_id, _clock = update.read_var_uint(), update.read_var_uint()
                state = json.loads(update.read_var_string())
                if state is None:
                    self.awareness.pop(client_id, None)
                else:
                    self.awareness[client_id] = state
        elif kind == 2:
            self.raw.append(json.loads(reader.read_var_string()))

    async def save(self, request_id: int = 1, timeout: float = 10) -> dict[str, Any]:
        await self.send(save_request(request_id))
        await until(
            lambda: any(r.get("responseTo") == request_id for r in self.raw), timeout, "save reply"
        )
        return next(r for r in self.raw if r.get("responseTo") == request_id)

    async def wait_closed(self, timeout: float = 10) -> tuple[int | None, str]:
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code, self.close_reason

    async def close(self) -> None:
        if self._sub is not None:
            self.doc.unobserve(self._sub)
            self._sub = None
        await self.ws.close()
        self._sender.cancel()
        await asyncio.gather(self._reader, self._sender, return_exceptions=True)


async def request_session(
    base_url: str, token: str, path: str, file_format: str = "json", file_type: str = "notebook"
) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.put(
            f"{base_url}/api/collaboration/session/{urllib.parse.quote(path, safe='')}",
            json={"format": file_format, "type": file_type},
            headers={"Authorization": f"token {token}"},
        )
    response.raise_for_status()
    return dict(response.json())
