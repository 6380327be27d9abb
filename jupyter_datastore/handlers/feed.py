"""`WS /api/events/subscribe/notification`: one user's notifications, live and resumable.

It runs on the same WebSocket layer as the event subscriptions and the rooms
(`websocket.py`: frames written straight to the socket, a reader too far behind closed with
1013), and speaks as the event socket does: data frames for what it streams, and control
frames `{"__control__": ...}` for everything else.

    server -> {"type": "notification", "notification": {...}}     a row, as it is created
    server -> {"type": "notification_updated", "notification"}     a row marked read or unread
    server -> {"type": "notification_deleted", "id"}               a row deleted
    client -> {"since": "<ISO time>"}                              resume (once, as the first
                                                                   message; or ?since=)
    server -> {"__control__": "resumed", "since", "count"}         the rows after it came first
    server -> {"__control__": "error", "detail"}                   a bad message; nothing changed

No row is sent twice: rows created while a resume reads the older ones wait for it, and a
row the resume already sent is not sent again live. Changes (read, unread, deleted) are
live only, sent to each of the recipient's feeds, the one whose window made them included;
a client that was away lists the rows again with GET. A resume of more than the feed's limit
closes with 1013 (list with GET then); the server stopping closes with 1001.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from tornado.iostream import StreamClosedError

from ..errors import BadRequest, DatastoreError, close_reason
from ..notifications import Change, Feed, Notifications, parse_time
from ..protocol.frames import Outgoing
from .base import read_json
from .websocket import WebSocket

__all__ = ["FeedReader"]


class FeedReader:
    """One feed socket: the rows of one recipient, after an optional resume."""

    _running: ClassVar[set[FeedReader]] = set()  # keeps live connections referenced

    def __init__(self, service: Notifications, recipient: str, since: str | None) -> None:
        self.service = service
        self.recipient = recipient
        self.since = since
        self.socket: WebSocket | None = None
        # At once, before anything awaits: no row created after the handshake is missed.
        self.feed: Feed = service.open_feed(recipient)
        self._sent: set[str] = set()  # ids a resume sent, not to be sent again live
        self._resumable = since is None  # a first message may still resume
        self._resuming: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None

    async def run(self, socket: WebSocket, response: bytes) -> None:
        try:
            await socket.accept(response)
        except StreamClosedError:
            self.on_closed()
            return
        self.socket = socket
        FeedReader._running.add(self)
        if self.since is not None:
            self._resuming = asyncio.ensure_future(self._resume(self.since))
        self._sender = asyncio.ensure_future(self._send())
        socket.start()

    async def _send(self) -> None:
        while rows := await self.feed.next():
            if self._resuming is not None:
                await asyncio.gather(self._resuming, return_exceptions=True)
            for item in rows:
                if isinstance(item, Change):
                    self._write_change(item)
                else:
                    self._write_row(item)
        if self.feed.closed == "overflow":
            self._close(1013, "slow_subscriber", "resume with ?since=")
        elif self.feed.closed == "stopped":
            self._close(1001, "stopped", "the server is stopping")

    def _write_row(self, row: dict[str, Any]) -> None:
        if row["id"] not in self._sent:
            self._frame({"type": "notification", "notification": row})

    def _write_change(self, change: Change) -> None:
        if change.kind == "deleted":
            self._frame({"type": "notification_deleted", "id": change.row["id"]})
        else:
            self._frame({"type": f"notification_{change.kind}", "notification": change.row})

    async def _resume(self, since: str) -> None:
        """Send the rows created after `since` (closed if there are too many)."""
        rows = await self.service.after(self.recipient, since, self.service.policy.feed_limit)
        if rows is None:
            self._close(1013, "too_far_behind", "list with GET /api/notifications?since=")
            return
        for row in rows:
            self._write_row(row)
            self._sent.add(row["id"])
        self._frame({"__control__": "resumed", "since": since, "count": len(rows)})

    def on_message(self, message: bytes | str) -> None:
        try:
            request = read_json(message, "the message")
            if not isinstance(request, dict) or set(request) != {"since"}:
                raise BadRequest('a message must be {"since": "<ISO time>"}')
            if not self._resumable:
                raise BadRequest("a feed resumes once: with ?since= or the first message")
            since = parse_time(request["since"], "since")
        except DatastoreError as exc:
            self._frame({"__control__": "error", "detail": exc.detail})
        else:
            self._resuming = asyncio.ensure_future(self._resume(since))
        finally:
            self._resumable = False

    def _frame(self, body: dict[str, Any]) -> None:
        if self.socket is not None:
            self.socket.send(Outgoing(json.dumps(body).encode(), text=True))

    def _close(self, code: int, error: str, detail: str) -> None:
        if self.socket is not None:
            self.socket.close(code, close_reason({"error": error, "detail": detail}))

    def on_closed(self) -> None:
        FeedReader._running.discard(self)
        self.service.close_feed(self.feed)
        for task in (self._sender, self._resuming):
            if task is not None:
                task.cancel()
