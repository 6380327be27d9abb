"""Supernode mode's watch over the upstream: is it there, and what did its own users change.

One WebSocket on the upstream's `/api/events/subscribe` does both. Its contents events
(a save, an upload, a rename, a delete made there by anyone) send the open document to
compare with its file at once, instead of at the next poll; a rename or a delete also moves
the file's id, as a local rename does, so the document follows its file. When the socket
cannot be opened or drops, the upstream is away: saves wait (`DocumentSession.held`) and
the state room's `status.upstream` says so, with the cause; the socket is tried again with
a back-off up to `retry_max` seconds. When it opens again every open document catches up:
it merges what changed upstream meanwhile and writes what waited.

An upstream that answers but refuses the event stream (an older server, or one whose
authorizer denies `events`) is followed by polling alone (the document watcher's); whether
it is there is then told by the contents requests, and asked with `GET /api/status` while
it is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketError, websocket_connect

from ..documents.service import Documents
from ..errors import DatastoreError
from .http import UpstreamHttp

__all__ = ["UpstreamLink"]

log = logging.getLogger(__name__)

CONTENTS_EVENTS = "https://events.jupyter.org/jupyter_server/contents_service/v1"
KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
_CHANGES = {"save", "upload", "create", "rename", "copy", "delete"}
"""Contents actions that change a file (`get` does not; our own polls make those)."""


class UpstreamLink:
    def __init__(
        self,
        http: UpstreamHttp,
        documents: Documents,
        file_ids: Any,
        set_status: Callable[[dict[str, Any]], None],
        kernel_action: Callable[[dict[str, Any]], None] = lambda data: None,
        *,
        retry_max: float = 5.0,
    ) -> None:
        self.http = http
        self.documents = documents
        self.file_ids = file_ids
        self._set_status = set_status
        self._kernel_action = kernel_action
        """Told of the upstream's `kernel_actions` events: a kernel restarted or shut down
        there, by its own users, says nothing on the kernel's WebSocket."""
        self.retry_max = retry_max
        self.events = "connecting"
        """How upstream changes are noticed: `live` (its event stream) or `polling`."""
        self.since = _now()
        self._task: asyncio.Task[None] | None = None
        self._catching_up: asyncio.Task[None] | None = None
        self._socket: WebSocketClientConnection | None = None

    async def start(self) -> None:
        self.http.on_change.append(self._on_reachability)
        self._publish()
        self._task = asyncio.ensure_future(self._follow())

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.http.on_change.remove(self._on_reachability)
        for task in (self._task, self._catching_up):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._socket is not None:
            self._socket.close()

    # --- the event stream ---

    async def _follow(self) -> None:
        delay = 0.25
        while True:
            try:
                await self._stream()
                delay = 0.25  # it was open: the next try comes soon
            except HTTPClientError as exc:
                if exc.code == 599:
                    self._away(exc)
                else:  # it answered, and refuses the stream: polling alone
                    self._polling(f"the upstream refuses its event stream ({exc.code})")
                    delay = self.retry_max
            except (OSError, WebSocketError, asyncio.TimeoutError) as exc:
                self._away(exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max)
            if self.events == "polling" and not self.http.reachable:
                await self._probe()

    async def _stream(self) -> None:
        request = HTTPRequest(
            self.http.ws_url("/api/events/subscribe"),
            headers=self.http.headers(),
            connect_timeout=self.http.connect_timeout,
            request_timeout=self.http.connect_timeout,
        )
        # Pings: an upstream gone without closing (a network cut) is noticed within 30 s.
        self._socket = await websocket_connect(request, ping_interval=10, ping_timeout=30)
        try:
            self.events = "live"
            self.http.note(True, "")
            self._publish()
            while (message := await self._socket.read_message()) is not None:
                if isinstance(message, str):
                    await self._on_message(message)
        finally:
            self._socket.close()
            self._socket = None
        self._away("it closed its event stream")

    def _away(self, cause: object) -> None:
        if isinstance(cause, OSError) and cause.strerror:
            cause = cause.strerror
        text = str(cause) or type(cause).__name__
        self.http.note(False, f"the upstream {self.http.url} cannot be reached: {text}")

    def _polling(self, why: str) -> None:
        if self.events != "polling":
            log.warning("%s: changes made there are noticed by polling", why)
            self.events = "polling"
            self._publish()

    async def _probe(self) -> None:
        """Whether an upstream followed by polling is back (it answers `GET /api/status`)."""
        with contextlib.suppress(DatastoreError, HTTPClientError, OSError):
            await self.http.request("GET", "/api/status")

    async def _on_message(self, message: str) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if event.get("schema_id") == KERNEL_ACTIONS and isinstance(event.get("kernel_id"), str):
            self._kernel_action(event)
            return
        if event.get("schema_id") != CONTENTS_EVENTS:
            return
        action, path = event.get("action"), event.get("path")
        if action not in _CHANGES or not isinstance(path, str):
            return
        source = event.get("source_path")
        if action == "rename" and isinstance(source, str):
            # Our own renames are moved already (their local event): only the upstream's.
            if self.file_ids.get_id(source) is not None and self.file_ids.get_id(path) is None:
                self.file_ids.move(source, path)
        elif action == "delete" and self.file_ids.get_id(path) is not None:
            self.file_ids.delete(path)
        try:
            await self.documents.look_at(path)
        except Exception:
            log.exception("cannot compare %s with its file on the upstream", path)

    # --- away and back ---

    def _on_reachability(self, reachable: bool, error: str) -> None:
        self.since = _now()
        self._publish()
        if reachable:
            log.info("the upstream %s is back: open documents catch up", self.http.url)
            if self._catching_up is None or self._catching_up.done():
                self._catching_up = asyncio.ensure_future(self.documents.catch_up())
        else:
            log.warning("the upstream %s is away, saves wait: %s", self.http.url, error)

    def entry(self) -> dict[str, Any]:
        """`status.upstream` in the state room."""
        return {
            "url": self.http.url,
            "reachable": self.http.reachable,
            "since": self.since,
            "error": None if self.http.reachable else self.http.error,
            "events": self.events,
        }

    def _publish(self) -> None:
        self._set_status(self.entry())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
