"""Tornado WebSocket writes that nobody awaits, to a client that has left: one debug line.

jupyter_server sends kernel messages and server events to each open page without awaiting
the write (`write_message` returns a Task). When a page closes or reloads while such a write
is on its way (a page reloaded while a cell prints, say), the Task ends with
`WebSocketClosedError`, and asyncio logs "Task exception was never retrieved" with two
tracebacks in the server's log, for an event that is normal: the client is gone, and a page
that comes back gets the document and the kernel's state afresh. This loop exception handler
logs those at debug level and passes everything else to the handler that was there before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tornado.websocket import WebSocketClosedError

__all__ = ["quiet_writes_to_closed_websockets"]

log = logging.getLogger(__name__)

# The coroutine of the Task that Tornado's `WebSocketProtocol13.write_message` returns.
_WRITE = "WebSocketProtocol13.write_message.<locals>.wrapper"


def _unawaited_write_to_closed_socket(context: dict[str, Any]) -> bool:
    task = context.get("future")
    if not isinstance(context.get("exception"), WebSocketClosedError):
        return False
    if not isinstance(task, asyncio.Task):
        return False
    return getattr(task.get_coro(), "__qualname__", "") == _WRITE


def quiet_writes_to_closed_websockets(loop: asyncio.AbstractEventLoop) -> None:
    """Install the handler on `loop` (once)."""
    previous = loop.get_exception_handler()
    if getattr(previous, "_drops_closed_writes", False):
        return

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if _unawaited_write_to_closed_socket(context):
            log.debug("a write to a WebSocket whose client had left was dropped")
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handle._drops_closed_writes = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handle)
