"""A write nobody awaits, to a WebSocket client that left: no traceback in the server's log."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application
from tornado.websocket import WebSocketHandler, websocket_connect

from jupyter_datastore.handlers.left_mid_write import quiet_writes_to_closed_websockets

BIG = b"x" * (64 << 20)  # more than the kernel's socket buffers hold: the write waits


class Leaves(WebSocketHandler):
    """Writes a large message without awaiting it, as jupyter_server sends kernel messages."""

    def open(self) -> None:
        self.application.settings["writes"].append(self.write_message(BIG, binary=True))


async def _write_to_a_client_that_leaves() -> list[Any]:
    """A client connects and closes its socket while the server writes to it; the server's
    write Tasks, done, their exceptions not read."""
    writes: list[Any] = []
    sockets = bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    server = HTTPServer(Application([("/ws", Leaves)], writes=writes))
    server.add_sockets(sockets)
    try:
        client = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
        async with asyncio.timeout(30):
            while not writes:
                await asyncio.sleep(0.01)
        client.close()
        await asyncio.wait(writes, timeout=30)  # leaves the exceptions unread
    finally:
        server.stop()
    return writes


async def test_a_write_to_a_client_that_left_is_dropped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        quiet_writes_to_closed_websockets(loop)
        quiet_writes_to_closed_websockets(loop)  # once: a second call changes nothing
        with caplog.at_level(logging.DEBUG, "jupyter_datastore.handlers.left_mid_write"):
            writes = await _write_to_a_client_that_leaves()
            assert len(writes) == 1 and writes[0].done()
            del writes  # the Task goes with its exception unread: asyncio reports it
            gc.collect()
        assert reported == [], "a dropped write reached the previous handler"
        assert any("client had left" in r.message for r in caplog.records)

        # Anything else still reaches the handler that was there before.
        async def fails() -> None:
            raise ValueError("not ours")

        task = loop.create_task(fails())
        await asyncio.wait([task])
        del task
        gc.collect()
        assert [type(c.get("exception")).__name__ for c in reported] == ["ValueError"]
    finally:
        loop.set_exception_handler(before)
