"""One live document: a pycrdt `Doc` kept in sync with a server room, across reconnections.

y-websocket sync (`protocol/messages.py`): on every connection we send SyncStep1 (our state
vector); the server sends its SyncStep1, answered with SyncStep2 (what it lacks: edits made
here while we were away), and answers ours with SyncStep2 (what we lack). Then each change
travels as a SyncUpdate. The server sends a SyncStep2 only once every update it received
before is durable, so a SyncStep1 sent after local edits, and its answer, acknowledges
them: `flush()` waits for one, and one is sent after each burst of edits, so that the
room knows which edits the server holds (y-websocket has no acknowledgements of its own).

How a connection ends decides what comes next:

    1003             the server has a new store session, or the document's rows were made
                     again (its session id names their epoch): our history means nothing
                     to it. Drop the doc, reopen the session, sync a fresh doc (never merge);
                     edits not acknowledged are lost, and `flush()` raises `EditsDiscarded`.
                     The same after a RAW `refused` with `reload` (an edit our role does not
                     allow): we close, and reopen fresh (the room tells our role: `role`).
    4xxx, 1008, ...  an error: stop, and raise it to whoever waits.
    anything else    (1001 stopping, 1013 fell behind, a dropped connection): reconnect
                     with exponential backoff and jitter, keeping the doc.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, TransactionEvent
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ..protocol.messages import (
    MessageType,
    ProtocolError,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    parse_message,
    parse_raw_reply,
    save_request,
    sync_step1,
    sync_step2,
)
from .errors import ClientError, ConnectionLost, EditsDiscarded, error_from_close, retriable
from .outbox import Outbox

__all__ = ["Backoff", "Endpoint", "Room"]

log = logging.getLogger(__name__)

Endpoint = tuple[str, str]
"""(room name, session id), as the server's session or state endpoint gives them."""
Opener = Callable[[], Awaitable[Endpoint]]
Dialer = Callable[[Endpoint], Awaitable[ClientConnection]]

EMPTY_UPDATE = b"\x00\x00"
_RETRY_CODES = {1000, 1001, 1005, 1006, 1011, 1012, 1013, 1014, 4503}
"""Close codes after which the client connects again: the server going away or restarting,
a slow reader dropped (1013), and the server's store unavailable for now (4503)."""


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnection attempts: `initial * factor**n`, capped, with jitter;
    after `give_up_after` seconds without a connection, waiters get `ConnectionLost`."""

    initial: float = 0.1
    maximum: float = 5.0
    factor: float = 2.0
    give_up_after: float | None = 120.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.maximum, self.initial * self.factor**attempt)
        return random.uniform(ceiling / 2, ceiling)


class _Interrupted(Exception):
    """The connection closed before a barrier's answer came: try again on the next one."""


class Room:
    def __init__(self, name: str, opener: Opener, dialer: Dialer, backoff: Backoff) -> None:
        self.name = name
        self.doc: Doc[Any] = Doc()
        self.reloads = 0
        """How many times the document was reopened from scratch (close code 1003)."""
        self.on_reload: list[Callable[[], None]] = []
        self.on_remote_change: list[Callable[[], None]] = []
        self._opener, self._dialer, self._backoff = opener, dialer, backoff
        self._endpoint: Endpoint | None = None
        self._outbox: Outbox | None = None
        self._synced = self._synced_once = False
        self._error: ClientError | None = None
        self._closed = False
        self._edits = self._acked = 0  # local transactions made, and known to be durable
        self._acking = False  # an acknowledgement of edits is asked for
        self._discarded = False  # a reload dropped edits not acknowledged
        self._refused = False  # the room refused an edit of ours: our copy is not its own
        self.role: str | None = None
        """Our role on the document's file, as the room last told it (None before)."""
        self._applying = False
        self._barriers: deque[tuple[int, asyncio.Future[None] | None]] = deque()
        self._saves: dict[int, asyncio.Future[str]] = {}
        self._save_ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._subscription = self.doc.observe(self._on_transaction)
        self._task: asyncio.Task[None] | None = None

    async def start(self, endpoint: Endpoint, timeout: float) -> None:
        """Connect and wait for the first sync; raises what stopped it."""
        self._endpoint = endpoint
        self._task = asyncio.create_task(self._run(), name=f"room {self.name}")
        try:
            await asyncio.wait_for(self._ready(), timeout)
        except BaseException:
            await self.close(flush=False)
            raise

    @property
    def connected(self) -> bool:
        return self._synced

    # --- waiting ---

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        """Wait until `predicate()` holds, checked at every change of the doc or connection;
        raises what ended the connection for good."""

        async def until() -> None:
            while not predicate():
                self._check()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise ClientError(f"{self.name} is closed")

    async def _ready(self) -> None:
        while not self._synced:
            self._check()
            await self._changed.wait()

    def _barrier(self, future: asyncio.Future[None] | None) -> None:
        """Ask for an acknowledgement of every edit made so far (see the module)."""
        assert self._outbox is not None
        self._barriers.append((self._edits, future))
        self._outbox.put(sync_step1(self.doc.get_state()))
        if future is None:
            self._acking = True

    def _ask_ack(self) -> None:
        self._acking = False
        if self._synced and self._edits > self._acked:
            self._barrier(None)

    async def flush(self) -> None:
        """Wait until the server holds, durably, every change made here so far."""
        while True:
            await self._ready()
            barrier = asyncio.get_running_loop().create_future()
            self._barrier(barrier)
            try:
                await barrier
            except _Interrupted:
                continue
            break
        if self._discarded:
            self._discarded = False
            raise EditsDiscarded(
                f"{self.name} was reopened from the server (it lost its store, or refused an "
                "edit: see `role`); edits made here that it had not taken were dropped"
            )

    async def save(self) -> str:
        """Ask the server to save the document to its file now; its answer's status."""
        await self._ready()
        assert self._outbox is not None
        request_id = next(self._save_ids)
        reply = self._saves[request_id] = asyncio.get_running_loop().create_future()
        self._outbox.put(save_request(request_id))
        try:
            return str(await reply)
        finally:
            self._saves.pop(request_id, None)

    # --- the connection loop ---

    async def _run(self) -> None:
        """Connect, sync, reconnect. It has no caller to raise to: what ends it is kept in
        `_error` and raised to whoever waits on the room."""
        try:
            await self._connect_and_reconnect()
        except Exception as exc:
            log.exception("room %s: the connection loop failed", self.name)
            self._fail(ClientError(f"{self.name}: the client failed: {exc!r}"))

    async def _connect_and_reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        attempt, since = 0, loop.time()
        while not self._closed:
            try:
                if self._endpoint is None:
                    self._endpoint = await self._opener()
                    self.name = self._endpoint[0]
                ws = await self._dialer(self._endpoint)
            except ClientError as exc:
                if not retriable(exc):
                    return self._fail(exc)
                log.info("room %s: cannot connect (%s); retrying", self.name, exc)
            else:
                code, reason = await self._serve(ws)
                if self._synced_once:
                    attempt, since = 0, loop.time()
                if code == 1003 or self._refused:
                    self._reload()
                    if attempt == 0:  # at once the first time; with backoff if it goes on
                        attempt = 1
                        continue
                elif code not in _RETRY_CODES:
                    return self._fail(error_from_close(code, reason, self.name))
                else:
                    log.info("room %s: connection closed (%s); reconnecting", self.name, code)
            give_up = self._backoff.give_up_after
            if give_up is not None and loop.time() - since > give_up:
                detail = f"{self.name}: no connection to the server for {give_up:.0f} s"
                return self._fail(ConnectionLost(detail))
            await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1

    async def _serve(self, ws: ClientConnection) -> tuple[int, str]:
        """Sync over one connection until it closes; its close code and reason."""
        self._synced_once = False
        outbox = Outbox()
        self._outbox = outbox
        outbox.put(sync_step1(self.doc.get_state()))
        sender = asyncio.create_task(self._send(ws, outbox))
        try:
            async for data in ws:
                if isinstance(data, bytes):
                    self._receive(data, outbox)
                if self._refused:
                    break
        except ConnectionClosed:
            pass
        finally:
            self._outbox, self._synced = None, False
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            await ws.close()
            self._interrupt()
        return ws.close_code or 1006, ws.close_reason or ""

    @staticmethod
    async def _send(ws: ClientConnection, outbox: Outbox) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.send(await outbox.get())

    def _receive(self, data: bytes, outbox: Outbox) -> None:
        if data[:1] == bytes([MessageType.RAW]):
            return self._receive_raw(data)
        try:
            message = parse_message(data)
        except ProtocolError as exc:
            log.warning("room %s: ignoring a message: %s", self.name, exc.detail)
            return
        if isinstance(message, SyncStep1):
            # What the server lacks: edits made here while we were disconnected.
            outbox.put(sync_step2(self.doc.get_update(message.state_vector)))
        elif isinstance(message, SyncStep2 | SyncUpdate):
            self._apply(message.update)
            if isinstance(message, SyncStep2):
                self._answered()

    def _answered(self) -> None:
        """A SyncStep2: the first sync of this connection, or an acknowledgement."""
        if not self._synced:
            self._synced = self._synced_once = True
        elif self._barriers:
            edits, future = self._barriers.popleft()
            self._acked = max(self._acked, edits)
            if future is None:
                self._acking = False
            elif not future.done():  # not given up on (a timeout cancels it)
                future.set_result(None)
        if self._edits > self._acked and not self._acking:
            self._barrier(None)  # edits made since, or sent by the resync
        self._notify()

    def _receive_raw(self, data: bytes) -> None:
        """Jupyter's RAW messages: JSON (save replies, refusals, conflicts)."""
        try:
            payload = parse_raw_reply(data)
        except ProtocolError:
            log.warning("room %s: ignoring a malformed RAW message", self.name)
            return
        kind = payload.get("type")
        request_id = payload.get("responseTo")
        if kind == "save" and isinstance(request_id, int):
            reply = self._saves.get(request_id)
            if reply is not None and not reply.done():
                reply.set_result(str(payload.get("status")))
        elif kind == "role":
            self.role = str(payload.get("role"))
        elif kind in ("refused", "conflict"):
            log.warning("room %s: the server did not take an edit: %s", self.name, payload)
            if payload.get("reload") is True:
                # Our copy holds what the room does not, and edits built on it would wait
                # there for ever: close (`_serve`), and start again from the room's content.
                self._refused = self._discarded = True

    def _apply(self, update: bytes) -> None:
        self._applying = True
        try:
            self.doc.apply_update(update)
        finally:
            self._applying = False
        for callback in self.on_remote_change:
            callback()

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._notify()
        if self._applying or event.update == EMPTY_UPDATE:
            return
        self._edits += 1
        if self._outbox is not None:  # else sent by the next connection's sync
            self._outbox.put_update(event.update)
            if self._synced and not self._acking:
                # After this transaction: the doc cannot be read inside its callback.
                self._acking = True
                asyncio.get_running_loop().call_soon(self._ask_ack)

    def _interrupt(self) -> None:
        self._acking = False
        while self._barriers:
            _, future = self._barriers.popleft()
            if future is not None and not future.done():
                future.set_exception(_Interrupted())
        for reply in self._saves.values():
            if not reply.done():
                reply.set_exception(ConnectionLost(f"{self.name}: disconnected during a save"))
        self._notify()

    def _reload(self) -> None:
        """Start again from the server's content, in a new doc (the old one is dropped)."""
        why = "refused an edit made here" if self._refused else "has a new session for it"
        log.warning("room %s: the server %s; reopening", self.name, why)
        self._discarded = self._discarded or self._edits > self._acked
        self._refused = False
        self._edits = self._acked = 0
        self.doc.unobserve(self._subscription)
        self.doc = Doc()
        self._subscription = self.doc.observe(self._on_transaction)
        self._endpoint = None
        self.reloads += 1
        for callback in self.on_reload:
            callback()
        self._notify()

    def _fail(self, exc: ClientError) -> None:
        log.warning("room %s: %s", self.name, exc)
        self._error = exc
        self._notify()

    async def close(self, flush: bool = True, timeout: float = 10.0) -> None:
        """Leave the room; first wait (up to `timeout`) for the server to hold our edits."""
        if self._closed:
            return
        if flush and self._error is None and self._edits > self._acked:
            with contextlib.suppress(ClientError, asyncio.TimeoutError):
                await asyncio.wait_for(self.flush(), timeout)
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.doc.unobserve(self._subscription)
        self._notify()
