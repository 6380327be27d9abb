"""A room: one shared Y document, the peers syncing it, and their awareness.

How a change travels: a peer's update (or a server-side write) is applied to the document
at once; the document's transaction hook appends the resulting update to the open batch;
the room's flusher seals the batch, merges it into one update, persists it, and only then
broadcasts it. Updates that arrive while a write is in flight form the next batch, so a busy
room commits and broadcasts in groups (group commit) and a quiet one with no added delay.

Broadcast: each update is encoded and framed once and the same bytes are handed to every
peer. A peer's transport buffers what it cannot send yet, up to a limit; a peer that falls
further behind is closed with code 1013 and a reason, and the room goes on without it (its
client reconnects and resyncs). Nothing is ever dropped silently: a peer either gets every
update or is disconnected.

A SyncStep2 reply is built when the request arrives but is released only once everything it
contains is durable, so no peer ever holds an update the store could lose.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from pycrdt import Doc, TransactionEvent

from ..errors import BadRequest
from ..protocol.frames import Outgoing
from ..protocol.messages import (
    AwarenessMessage,
    Message,
    QueryAwareness,
    SaveRequest,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    awareness_message,
    raw_message,
    sync_step1,
    sync_step2,
    sync_update,
)
from ..store.base import merge
from .awareness import AwarenessTable

__all__ = ["SERVER", "Peer", "Room"]

log = logging.getLogger(__name__)

EMPTY_UPDATE = b"\x00\x00"
SERVER = "server"
"""The origin of changes the server makes itself (as opposed to a peer's)."""

Persist = Callable[[int, bytes], Awaitable[None]]
SaveHandler = Callable[[], Awaitable[str]]


class Peer(Protocol):
    """One connection to a room, as the room sees it."""

    @property
    def closed(self) -> bool: ...

    def send(self, message: Outgoing) -> None:
        """Queue a message without blocking; a peer over its send limit closes itself."""

    def close(self, code: int, reason: str) -> None: ...


class Room:
    def __init__(
        self,
        name: str,
        doc: Doc[Any] | None = None,
        *,
        persist: Persist | None = None,
        seq: int = 0,
        writable: bool = True,
    ) -> None:
        self.name = name
        self.doc = doc if doc is not None else Doc()
        self.writable = writable
        self.peers: dict[Peer, None] = {}
        self.awareness = AwarenessTable()
        self.holds = 0
        """Server-side users that keep the room open with no peer (see `RoomManager.hold`)."""
        self.on_flush: Callable[[set[object]], None] | None = None
        """Called after each broadcast with the origins of the changes in it."""
        self.on_save: SaveHandler | None = None
        self.on_close: Callable[[], Awaitable[None]] | None = None

        self._persist = persist
        self._seq = seq  # transactions applied
        self._durable = seq  # transactions persisted
        self._open: list[bytes] = []
        self._open_origins: set[object] = set()
        self._sealed: deque[tuple[int, list[bytes], set[object]]] = deque()
        self._replies: deque[tuple[int, Peer | None, Outgoing | asyncio.Future[None]]] = deque()
        self._origin: object = SERVER
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscription = self.doc.observe(self._on_transaction)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    def __repr__(self) -> str:
        return f"<Room {self.name} peers={len(self.peers)} seq={self._seq}>"

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def idle(self) -> bool:
        return not self.peers and not self.holds

    # --- peers ---

    def join(self, peer: Peer) -> None:
        """Start syncing a peer: our state vector, then everyone's awareness."""
        self.peers[peer] = None
        peer.send(Outgoing(sync_step1(self.doc.get_state())))
        snapshot = self.awareness.snapshot()
        if snapshot is not None:
            peer.send(Outgoing(awareness_message(snapshot)))

    def leave(self, peer: Peer) -> None:
        if peer in self.peers:
            del self.peers[peer]
            removal = self.awareness.remove_owner(peer)
            if removal is not None:
                self._broadcast(Outgoing(awareness_message(removal)))
            self._replies = deque(r for r in self._replies if r[1] is not peer)

    def receive(self, peer: Peer, message: Message) -> None:
        """Handle one message from a peer; raises `BadRequest` when it must be disconnected."""
        if isinstance(message, SyncUpdate | SyncStep2):
            self._apply(peer, message.update)
        elif isinstance(message, AwarenessMessage):
            self.awareness.apply(peer, message.entries)
            self._broadcast(Outgoing(message.raw))
        elif isinstance(message, SyncStep1):
            self._reply(peer, self._state_since(message.state_vector))
        elif isinstance(message, QueryAwareness):
            snapshot = self.awareness.snapshot()
            if snapshot is not None:
                peer.send(Outgoing(awareness_message(snapshot)))
        elif isinstance(message, SaveRequest):
            self._spawn(self._save(peer, message.request_id))

    def _state_since(self, state_vector: bytes) -> Outgoing:
        try:
            return Outgoing(sync_step2(self.doc.get_update(state_vector)))
        except ValueError as exc:
            raise BadRequest(f"malformed state vector: {exc}") from exc

    def _apply(self, peer: Peer, update: bytes) -> None:
        if update == EMPTY_UPDATE:
            return
        if not self.writable:
            peer.send(Outgoing(raw_message({"type": "refused", "reason": "read-only room"})))
            return
        self._origin = peer
        try:
            self.doc.apply_update(update)
        except ValueError as exc:
            raise BadRequest(f"malformed update: {exc}") from exc
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            raise
        except BaseException as exc:  # yrs integration failure (pyo3 panics are BaseException)
            # A stale client refers to items this document no longer has: tell it, keep it.
            log.warning("room %s: update from a peer could not be integrated: %r", self.name, exc)
            peer.send(Outgoing(raw_message({"type": "conflict"})))
        finally:
            self._origin = SERVER

    def _reply(self, peer: Peer, message: Outgoing) -> None:
        """Send now if everything applied is durable, else once it is."""
        if self._durable == self._seq:
            peer.send(message)
        else:
            self._replies.append((self._seq, peer, message))

    async def _save(self, peer: Peer, request_id: int) -> None:
        status = "failed"
        if self.on_save is not None:
            try:
                status = await self.on_save()
            except Exception:
                log.exception("room %s: save failed", self.name)
        if not peer.closed:
            peer.send(
                Outgoing(raw_message({"type": "save", "responseTo": request_id, "status": status}))
            )

    # --- changes made on the server ---

    @contextmanager
    def transaction(self, origin: object = SERVER) -> Iterator[None]:
        """Change the document as the server; the change is persisted and broadcast."""
        self._origin = origin
        try:
            with self.doc.transaction():
                yield
        finally:
            self._origin = SERVER

    def apply_update(self, update: bytes, origin: object = SERVER) -> None:
        with self.transaction(origin):
            self.doc.apply_update(update)

    # --- batching, persistence, broadcast ---

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._seq += 1
        self._open.append(event.update)
        self._open_origins.add(self._origin)
        self._wake.set()

    def cut(self) -> int:
        """Close the open batch here, so a stored row ends exactly at the returned seq."""
        if self._open:
            self._sealed.append((self._seq, self._open, self._open_origins))
            self._open, self._open_origins = [], set()
        return self._seq

    def flushed(self) -> Awaitable[None]:
        """Resolves once everything applied so far is persisted and broadcast."""
        future = asyncio.get_running_loop().create_future()
        if self._durable == self._seq:
            future.set_result(None)
        else:
            self._replies.append((self._seq, None, future))
        return future

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self.cut()
            while self._sealed:
                seq, updates, origins = self._sealed[0]
                update = merge(updates)
                if self._persist is not None:
                    await self._persist_with_retry(seq, update)
                self._sealed.popleft()
                self._durable = seq
                self._release_replies()
                exclude = next(iter(origins)) if len(origins) == 1 else None
                self._broadcast(Outgoing(sync_update(update)), exclude=exclude)
                if self.on_flush is not None:
                    self.on_flush(origins)
                self.cut()

    async def _persist_with_retry(self, seq: int, update: bytes) -> None:
        assert self._persist is not None
        delay = 0.1
        while True:
            try:
                await self._persist(seq, update)
                return
            except Exception as exc:
                log.error(
                    "room %s: cannot persist an update, retrying in %.1fs: %s",
                    self.name,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _release_replies(self) -> None:
        replies = self._replies
        while replies and replies[0][0] <= self._durable:
            _, peer, waiting = replies.popleft()
            if isinstance(waiting, Outgoing):
                if peer is not None and not peer.closed:
                    peer.send(waiting)
            elif not waiting.done():
                waiting.set_result(None)

    def _broadcast(self, message: Outgoing, exclude: object = None) -> None:
        for peer in list(self.peers):
            if peer is not exclude:
                peer.send(message)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- life cycle ---

    async def close(self) -> None:
        """Persist what is pending, run the owner's close hook, and stop."""
        await self.flushed()
        if self.on_close is not None:
            await self.on_close()
            await self.flushed()
        for task in [*self._tasks, self._flusher]:
            task.cancel()
        await asyncio.gather(*self._tasks, self._flusher, return_exceptions=True)
        self.doc.unobserve(self._subscription)
