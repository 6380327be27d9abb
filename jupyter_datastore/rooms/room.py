"""A room: one shared document, the peers syncing it, and their awareness.

The document is held as Yjs update bytes: a merged base plus the updates received since.
Peers' updates are checked (decoded) and relayed without being applied to anything, so an
open room costs little more memory than its encoded size (a live Y document takes 10-15
times that) and an edit costs a decode, not an integration. A live `pycrdt.Doc` is built
only while the server itself reads or writes the document (`document()`: saving, merging a
change from disk, writing outputs) and is dropped `linger` seconds after its last use.

How a change travels: the update joins the open batch; the room's flusher seals the batch,
merges it into one update, persists it, and only then broadcasts it. Updates that arrive
while a write is in flight form the next batch, so a busy room commits and broadcasts in
groups (group commit) and a quiet one with no added delay.

Broadcast: each update is encoded and framed once and the same bytes are handed to every
peer but its sender. A peer's transport buffers what it cannot send yet, up to a limit; a
peer that falls further behind is closed (1013) and the room goes on without it (its client
reconnects and resyncs). Nothing is dropped silently: a peer gets every update or is closed.

A SyncStep2 reply is built when the request arrives but released only once everything in it
is durable, so no peer ever holds an update that the store could lose.

When the store fails (a full disk, a lost database), the write in flight is retried with
back-off and the room stops taking edits: every peer gets RAW `{"type": "store_fault",
"reason"}` once, and each edit it sends meanwhile a RAW `refused`; the edit stays in the
client, which still reads and shows presence. Nothing acknowledged is lost: what was
broadcast is durable, what was taken is retried until it is. Once a write succeeds again,
peers get RAW `{"type": "store_recovered"}` and a SyncStep1, to which they answer with the
edits the room refused.

Undo: each named user's own changes are undo steps of theirs (`undo.py`), which `undo` and
`redo` take back or redo, leaving everyone else's changes in place. Undoing needs the live
document, so a named user's first edit makes the room live and it stays live while anyone
has history: `undo_expiry` seconds after their last change or undo, at most, or until the
room closes. An undo is the server's change on the user's behalf: persisted and broadcast
(to every peer, the user's own clients too) like any other. A room only viewed, or edited
by peers with no name, never becomes live for this.

Owner and followers: a room's owner (a document session for a document's room) is given
when the room is made and is the one that hears of its flushes, saves and closing
(`RoomOwner`); there is one, and nothing can replace it later. Anyone else who must see
the room's durable changes (a synchronized fork following its root) subscribes with
`follow`, which returns the handle that stops it; any number may.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from pycrdt import Doc, TransactionEvent, get_state, get_update, merge_updates

from ..errors import BadRequest, Conflict
from ..events.catalog import STORE_FAULT, Emit, no_emit
from ..protocol.awareness import AwarenessEntry, encode_awareness_update
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
from .undo import Author, UndoHistory, UndoStatus, is_named, undo_roots

__all__ = [
    "EMPTY_UPDATE",
    "NO_OWNER",
    "SERVER",
    "AwarenessView",
    "Follower",
    "Peer",
    "Room",
    "RoomOwner",
    "RoomSettings",
]

AwarenessView = Callable[[str | None, list[AwarenessEntry]], list[AwarenessEntry]]
"""`view(user, entries)`: the entries as `user` may see them."""

log = logging.getLogger(__name__)

EMPTY_UPDATE = b"\x00\x00"
EMPTY_STATE_VECTOR = b"\x00"
SERVER = "server"
"""The origin of changes the server makes itself (as opposed to a peer's)."""
FULL_INTERVAL_PEERS = 16
"""Peers from which a busy room waits the whole `broadcast_interval` between broadcasts."""
# Fold the received updates into the base once there are this many of them.
_MAX_TAIL = 512

Persist = Callable[[int, bytes], Awaitable[None]]
Follower = Callable[[bytes], None]
"""Called with each durable change of a room as it is broadcast."""


@dataclass(frozen=True)
class RoomSettings:
    broadcast_interval: float = 1 / 60
    """Least seconds between two broadcasts of a busy room with many peers. A change in a
    quiet room goes out at once; in a busy room (several typists, a cell streaming output)
    the changes of each interval go out merged, one message per peer, so the work per
    change and the messages a client must apply stay bounded, at the cost of up to this much
    latency. A room with fewer than `FULL_INTERVAL_PEERS` peers waits proportionally less."""
    broadcast_burst: int = 4
    """Broadcasts a quiet room may send back to back before the interval applies: a cell
    run shows `[*]`, its first output and its end at once, not one interval apart."""
    linger: float = 30.0
    """Seconds a live Y document is kept after the server last used it: while a document is
    being edited and saved, it stays live rather than being rebuilt at every save."""
    undo_steps: int = 100
    """Undo steps kept per named user (0: no undo history, no room is ever live for it)."""
    undo_capture: float = 0.5
    """Seconds within which a user's changes make one undo step (a burst of typing)."""
    undo_expiry: float = 1800.0
    """Seconds a user's undo history is kept after their last change or undo in the room;
    while anyone has history the room keeps its live document (see `undo.py`)."""


class RoomOwner:
    """Whoever keeps a room: given when the room is made, one per room. Each hook does
    nothing by default; an owner overrides the ones it needs. An owner that must share a
    hook with another party calls it from its own (the room calls only its owner)."""

    def on_flush(self, origins: set[object]) -> None:
        """After each broadcast, with the origins of the changes in it."""

    async def on_save(self) -> str:
        """A peer asked to save (RAW save request): "success", "skipped" or "failed"."""
        return "failed"

    async def on_close(self) -> None:
        """The room is closing, everything applied is persisted; the changes made here are
        persisted too before the room stops."""


NO_OWNER = RoomOwner()
"""The owner of a room nobody keeps (presence, state, tests): every hook a no-op."""


class Peer(Protocol):
    """One connection to a room, as the room sees it."""

    @property
    def closed(self) -> bool: ...

    def send(self, message: Outgoing) -> None:
        """Queue a message without blocking; a peer over its send limit closes itself."""

    def close(self, code: int, reason: str) -> None: ...


class Screen(Protocol):
    """Looks at the changes of a peer that may not make every change, and mends what it
    may not make in the same broadcast (documents/trust.py: trust flags)."""

    def screens(self, user: str | None) -> bool:
        """Whether this user's changes are looked at."""

    def watching(self, doc: Doc[Any]) -> AbstractContextManager[None]: ...


class Room:
    def __init__(
        self,
        name: str,
        updates: Sequence[bytes] = (),
        *,
        persist: Persist | None = None,
        seq: int = 0,
        read_only: str | None = None,
        settings: RoomSettings = RoomSettings(),
        emit: Emit = no_emit,
        owner: RoomOwner = NO_OWNER,
    ) -> None:
        self.name = name
        self._owner = owner
        self.emit = emit
        self.read_only = read_only
        """Why peers' updates are refused (None: the room takes them)."""
        self.fault: str | None = None
        """Why the store cannot write now; peers' edits are refused until it can."""
        self.settings = settings
        self.peers: dict[Peer, str | None] = {}
        """The peers, and who each is (None: no name)."""
        self.awareness = AwarenessTable()
        self.awareness_view: AwarenessView | None = None
        self.screen: Screen | None = None
        """Applied to the updates of the peers whose user it screens (None: no peer's)."""
        """What of the peers' awareness each receiving user may see (None: all of it)."""
        self.holds = 0
        """Server-side users that keep the room open with no peer (see `RoomManager.hold`)."""
        self._followers: list[Follower] = []

        self._base = EMPTY_UPDATE
        self._tail = list(updates)
        self._tail_size = sum(map(len, self._tail))
        self._known: bytes | None = None  # the state vector of the bytes, made when a peer joins
        self._doc: Doc[Any] | None = None
        self._doc_users = 0
        self._drop_timer: asyncio.TimerHandle | None = None
        self._subscription: Any = None
        # The server's own client id, the same for every live document of this room, so
        # that its writes do not add a new client to the state vector each time.
        self._client_id: int = Doc().client_id
        self._undo_roots = undo_roots(name) if settings.undo_steps > 0 else None
        self._history: UndoHistory | None = None
        self._expiry_timer: asyncio.TimerHandle | None = None

        self._persist = persist
        self._seq = seq  # changes applied
        self._durable = seq  # changes persisted
        self._open: list[bytes] = []
        self._open_origins: set[object] = set()
        self._sealed: deque[tuple[int, list[bytes], set[object]]] = deque()
        self._replies: deque[tuple[int, Peer | None, Outgoing | asyncio.Future[None]]] = deque()
        self._origin: object = SERVER
        self._last_flush = 0.0
        self._tokens = float(settings.broadcast_burst)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    def __repr__(self) -> str:
        return f"<Room {self.name} peers={len(self.peers)} seq={self._seq}>"

    @property
    def owner(self) -> RoomOwner:
        """Whoever keeps the room, given when it was made (read-only: see `RoomOwner`)."""
        return self._owner

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def idle(self) -> bool:
        return not self.peers and not self.holds

    @property
    def live(self) -> bool:
        """Whether a live Y document is held in memory right now."""
        return self._doc is not None

    # --- the document ---

    def state(self) -> bytes:
        """The whole document as one update."""
        if self._doc is not None:
            return self._doc.get_update()
        if self._tail:
            if self._base == EMPTY_UPDATE and len(self._tail) == 1:
                self._base = self._tail[0]  # one update is the whole state already
            else:
                self._base = merge_updates(self._base, *self._tail)
            self._tail, self._tail_size = [], 0
        return self._base

    def _state_vector(self) -> bytes:
        if self._doc is not None:
            return self._doc.get_state()
        if self._known is None:
            # An incremental update carries no state vector of its own: ask the whole state.
            self._known = get_state(self.state())
        return self._known

    def merge_from(self, state: bytes, origin: object = SERVER) -> None:
        """Add what another copy of this document (a fork) has and this room lacks."""
        try:
            missing = get_update(state, self._state_vector())
        except ValueError as exc:
            raise BadRequest(f"malformed document state: {exc}") from exc
        self.push(missing, origin)

    def _update_since(self, state_vector: bytes) -> bytes:
        if state_vector == EMPTY_STATE_VECTOR and self._doc is None:
            return self.state()  # a new client wants everything: no diff to compute
        try:
            if self._doc is not None:
                return self._doc.get_update(state_vector)
            return get_update(self.state(), state_vector)
        except ValueError as exc:
            raise BadRequest(f"malformed state vector: {exc}") from exc

    def push(
        self,
        update: bytes,
        origin: object = SERVER,
        *,
        user: str | None = None,
        state_vector: bytes | None = None,
    ) -> None:
        """Add an update to the document; raises `BadRequest` if it is not one.

        `user`: whose change it is; a named user's change is one of their undo steps.
        `state_vector`: the update's own, when the server built it (not decoded again).
        """
        if update == EMPTY_UPDATE:
            return
        author = self._author(user)
        if self._doc is not None:
            try:
                self._apply(update, origin, author)
            finally:
                if author is not None:
                    self._settle(author.user)
            return
        known = state_vector
        if known is None:
            try:
                known = get_state(update)  # decodes the whole update: our validation
            except ValueError as exc:
                raise BadRequest(f"malformed update: {exc}") from exc
        # The first update of an empty room is its whole state: its state vector, too.
        self._known = known if self._base == EMPTY_UPDATE and not self._tail else None
        self._tail.append(update)
        self._tail_size += len(update)
        if len(self._tail) >= _MAX_TAIL or self._tail_size > max(len(self._base), 1 << 20):
            self.state()
        self._batch(update, origin)

    def _apply(self, update: bytes, origin: object, author: Author | None = None) -> None:
        assert self._doc is not None
        previous, self._origin = self._origin, origin
        try:
            with self._doc.transaction(origin=author):
                self._doc.apply_update(update)
        except ValueError as exc:
            raise BadRequest(f"malformed update: {exc}") from exc
        finally:
            self._origin = previous

    @contextmanager
    def document(self, origin: object = SERVER, *, user: str | None = None) -> Iterator[Doc[Any]]:
        """A live Y document to read or change, synchronously; changes are broadcast.

        Changes made inside are attributed to `origin`, and are no one's undo steps, unless
        `user` is given: then they are that user's own change, as if a client of theirs had
        sent it (one of a named user's undo steps), broadcast to every peer. Do not await
        inside the block: peers' updates must not interleave with a half-made change.
        """
        author = self._author(user) if user is not None else None
        doc = self._live()
        self._doc_users += 1
        previous, self._origin = self._origin, origin
        try:
            with doc.transaction(origin=author):
                yield doc
        finally:
            self._origin = previous
            self._doc_users -= 1
            if author is not None:
                self._settle(author.user)
            if not self._doc_users:
                self._schedule_drop()

    def _live(self) -> Doc[Any]:
        if self._drop_timer is not None:
            self._drop_timer.cancel()
            self._drop_timer = None
        if self._doc is None:
            doc: Doc[Any] = Doc(client_id=self._client_id)
            # Update by update rather than merged: one big update whose clients interleave
            # (many people typing at one place) integrates far slower than its parts.
            for update in (self._base, *self._tail):
                doc.apply_update(update)
            self._subscription = doc.observe(self._on_transaction)
            self._doc = doc
        return self._doc

    def _schedule_drop(self) -> None:
        if self._drop_timer is None:
            self._drop_timer = asyncio.get_running_loop().call_later(
                self.settings.linger, self._drop
            )

    def _drop(self) -> None:
        """Back to update bytes: the live document's state, garbage-collected, is the base."""
        self._drop_timer = None
        doc = self._doc
        if doc is None or self._doc_users or self._history is not None:
            return
        self._base = doc.get_update()
        self._known = doc.get_state()
        self._tail, self._tail_size = [], 0
        doc.unobserve(self._subscription)
        self._doc = self._subscription = None

    # --- undo, per user ---

    def _author(self, user: str | None) -> Author | None:
        """The origin of a change of `user`'s: a named user's starts or extends their undo
        history (making the document live); None for anyone else."""
        if self._undo_roots is None or not is_named(user):
            return None
        assert user is not None
        doc = self._live()
        if self._history is None:
            settings = self.settings
            self._history = UndoHistory(
                doc, self._undo_roots, steps=settings.undo_steps, capture=settings.undo_capture
            )
        author = self._history.author(user)
        if self._expiry_timer is None:
            self._expire()
        return author

    def _expire(self) -> None:
        """Forget the histories unused for `undo_expiry`; the document may then be dropped.
        One timer per room, re-armed for the next expiry when it fires."""
        self._expiry_timer = None
        history = self._history
        if history is None:
            return
        wait = history.expire(self.settings.undo_expiry)
        if wait is not None:
            self._expiry_timer = asyncio.get_running_loop().call_later(wait, self._expire)
        else:
            self._end_history()

    def _settle(self, user: str) -> None:
        """A change that left `user` nothing to undo (a peer's resync, a change outside the
        undoable roots) keeps no history, nor the live document."""
        if self._history is not None:
            self._history.settle(user)
            if not len(self._history):
                self._end_history()

    def _end_history(self) -> None:
        """No one has history left: back to update bytes once the document is unused."""
        self._history = None
        if not self._doc_users:
            self._schedule_drop()

    def undo(self, user: str, steps: int = 1) -> UndoStatus:
        """Undo `user`'s last `steps` steps (fewer if they have fewer); `Conflict` if none."""
        return self._undo(user, steps, redo=False)

    def redo(self, user: str, steps: int = 1) -> UndoStatus:
        """Redo `user`'s last undone `steps` steps (fewer if fewer); `Conflict` if none."""
        return self._undo(user, steps, redo=True)

    def undo_status(self, user: str) -> UndoStatus:
        """Whether `user` has something to undo or redo here."""
        if self._history is None:
            return UndoStatus(0, can_undo=False, can_redo=False)
        return self._history.status(user)

    def _undo(self, user: str, steps: int, *, redo: bool) -> UndoStatus:
        verb = "redo" if redo else "undo"
        if self.read_only is not None:
            raise Conflict(f"nothing to {verb}: the room takes no changes ({self.read_only})")
        history = self._history
        status = self.undo_status(user)
        if history is None or not (status.can_redo if redo else status.can_undo):
            raise Conflict(f"{user} has nothing to {verb} in room {self.name}")
        # The change is the server's, on the user's behalf: broadcast to all peers (the
        # user's own too) and made with the undo manager's origin, in no one's steps.
        previous, self._origin = self._origin, Author(user)
        try:
            done = history.undo(user, steps, redo=redo)
        finally:
            self._origin = previous
        return history.status(user, done)

    # --- peers ---

    def join(self, peer: Peer, user: str | None = None) -> None:
        """Start syncing a peer (`user`: who it is): our state vector, then everyone's
        awareness."""
        self.peers[peer] = user
        peer.send(Outgoing(sync_step1(self._state_vector())))
        self._send_awareness(self.awareness.present(), [peer])

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
            self._receive_update(peer, message.update)
        elif isinstance(message, AwarenessMessage):
            self._receive_awareness(peer, message)
        elif isinstance(message, SyncStep1):
            self._reply(peer, Outgoing(sync_step2(self._update_since(message.state_vector))))
        elif isinstance(message, QueryAwareness):
            self._send_awareness(self.awareness.present(), [peer])
        elif isinstance(message, SaveRequest):
            self._spawn(self._save(peer, message.request_id))

    def _receive_awareness(self, peer: Peer, message: AwarenessMessage) -> None:
        """Relay the entries of the peer's own clients (see `awareness.py`): the message as
        it came when all are, else re-encoded without the others; nothing if none is."""
        entries = self.awareness.apply(peer, message.entries, self.peers.get(peer))
        if self.awareness_view is not None:
            self._send_awareness(entries, list(self.peers))
        elif len(entries) == len(message.entries):
            self._broadcast(Outgoing(message.raw))
        elif entries:
            self._broadcast(Outgoing(awareness_message(encode_awareness_update(entries))))

    def _send_awareness(self, entries: list[AwarenessEntry], peers: list[Peer]) -> None:
        """Send entries to peers, each as its user may see them (`awareness_view`), encoded
        once per user."""
        if not entries:
            return
        encoded: dict[str | None, Outgoing | None] = {}
        for peer in peers:
            user = self.peers.get(peer)
            if user not in encoded:
                shown = (
                    entries if self.awareness_view is None else self.awareness_view(user, entries)
                )
                update = encode_awareness_update(shown) if shown else None
                encoded[user] = None if update is None else Outgoing(awareness_message(update))
            message = encoded[user]
            if message is not None:
                peer.send(message)

    def _receive_update(self, peer: Peer, update: bytes) -> None:
        if update == EMPTY_UPDATE:
            return
        refusal = self.read_only if self.fault is None else self.fault
        if refusal is not None:
            peer.send(Outgoing(raw_message({"type": "refused", "reason": refusal})))
            return
        try:
            if self.screen is not None and self.screen.screens(self.peers.get(peer)):
                self._push_screened(self.screen, peer, update)
            else:
                self.push(update, origin=peer, user=self.peers.get(peer))
        except BadRequest:
            raise
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            raise
        except BaseException as exc:  # yrs integration failure (pyo3 panics are BaseException)
            # A stale client refers to items this document no longer has: tell it, keep it.
            log.warning("room %s: update from a peer could not be integrated: %r", self.name, exc)
            peer.send(Outgoing(raw_message({"type": "conflict"})))

    def _push_screened(self, screen: Screen, peer: Peer, update: bytes) -> None:
        doc = self._live()
        self._doc_users += 1
        try:
            with screen.watching(doc):
                self.push(update, origin=peer, user=self.peers.get(peer))
        finally:
            self._doc_users -= 1
            if not self._doc_users:
                self._schedule_drop()

    def _reply(self, peer: Peer, message: Outgoing) -> None:
        """Send now if everything applied is durable, else once it is."""
        if self._durable == self._seq:
            peer.send(message)
        else:
            self._replies.append((self._seq, peer, message))

    async def _save(self, peer: Peer, request_id: int) -> None:
        status = "failed"
        try:
            status = await self._owner.on_save()
        except Exception:
            log.exception("room %s: save failed", self.name)
        if not peer.closed:
            reply = {"type": "save", "responseTo": request_id, "status": status}
            peer.send(Outgoing(raw_message(reply)))

    # --- batching, persistence, broadcast ---

    def follow(self, follower: Follower) -> Callable[[], None]:
        """Call `follower` with each durable change as it is broadcast, until the returned
        handle is called."""
        self._followers.append(follower)

        def stop() -> None:
            if follower in self._followers:
                self._followers.remove(follower)

        return stop

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._batch(event.update, self._origin)

    def _batch(self, update: bytes, origin: object) -> None:
        self._seq += 1
        self._open.append(update)
        self._open_origins.add(origin)
        self._wake.set()

    def _take_token(self, now: float) -> float:
        """Token bucket over broadcasts: refilled one per interval, up to the burst. Takes a
        token and returns 0, or returns how long to wait for one.

        The interval is the settings' for a room of `FULL_INTERVAL_PEERS` peers or more, and
        shorter in proportion below that: what waiting saves is sends to peers, so a room of
        two, where each change goes to one peer (an agent and its user, a writer and a
        reader), does not wait at all."""
        burst = self.settings.broadcast_burst
        receivers = len(self.peers) - 1
        share = min(1.0, max(0, receivers - 1) / (FULL_INTERVAL_PEERS - 2))
        interval = self.settings.broadcast_interval * share
        if interval <= 0:
            return 0.0
        self._tokens = min(float(burst), self._tokens + (now - self._last_flush) / interval)
        self._last_flush = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) * interval

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
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            pause = self._take_token(loop.time())
            if pause > 0:
                await asyncio.sleep(pause)
                self._take_token(loop.time())
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
                for follower in list(self._followers):
                    follower(update)
                self._owner.on_flush(origins)
                self.cut()

    async def _persist_with_retry(self, seq: int, update: bytes) -> None:
        assert self._persist is not None
        delay, failures, detail = 0.1, 0, ""
        while True:
            try:
                await self._persist(seq, update)
                if failures:
                    self._store_fault(detail, failures, recovered=True)
                return
            except Exception as exc:
                failures, detail = failures + 1, str(exc) or type(exc).__name__
                log.error(
                    "room %s: cannot persist an update, retrying in %.1fs: %s",
                    self.name,
                    delay,
                    exc,
                )
                if failures == 1:  # once per run of failures, not at every retry
                    self._store_fault(detail, failures, recovered=False)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _store_fault(self, detail: str, attempts: int, *, recovered: bool) -> None:
        data = {"operation": "append_update", "detail": detail, "room_id": self.name}
        self.emit(STORE_FAULT, {**data, "recovered": recovered, "attempts": attempts})
        if recovered:
            self.fault = None
            self._broadcast(Outgoing(raw_message({"type": "store_recovered"})))
            # Peers answer with what the room refused meanwhile.
            self._broadcast(Outgoing(sync_step1(self._state_vector())))
        else:
            self.fault = (
                f"the store cannot save changes now ({detail}); edits are refused until it "
                "can, and yours are sent again then"
            )
            self._broadcast(Outgoing(raw_message({"type": "store_fault", "reason": self.fault})))

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
        """Persist what is pending, let the owner close (`RoomOwner.on_close`), and stop."""
        await self.flushed()
        await self._owner.on_close()
        await self.flushed()
        for task in [*self._tasks, self._flusher]:
            task.cancel()
        await asyncio.gather(*self._tasks, self._flusher, return_exceptions=True)
        if self._drop_timer is not None:
            self._drop_timer.cancel()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        if self._history is not None:
            self._history.clear()
            self._history = None
        self._doc_users = 0
        self._drop()
