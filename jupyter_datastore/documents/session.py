"""A document session keeps one room and its file in step.

Loading: a document the store knows is resumed from the store (with every edit that was not
saved yet); otherwise it is built from the file, deterministically. Either way the room's
changes are then persisted by the room, and saved to the file by this session.

Autosave: a change starts a trailing debounce of `delay` seconds, but never waits more than
`max_wait` seconds after the first unsaved change, so a document under continuous typing or
streaming output is still written every few seconds. Autosave is skipped while every
connected client has switched it off (awareness field `autosave`); a RAW save request
(Ctrl-S) always saves.

Out-of-band changes: when the file changes on disk (its SHA-256, not only its modification
time), the change is merged into the room as a three-way merge: the file's new content is
applied, as granular edits, to a copy of the document as it was last saved, and the
resulting difference is applied to the room. Edits made in the room since the last save are
kept; the merged document is then saved back, unless autosave is off, in which case the
room's edits stay unsaved on top of the file's change until someone saves.

The session is its room's owner (`rooms.RoomOwner`): it makes the room and hears of its
flushes (autosave), RAW save requests and closing (the last save, compaction). Whoever opened
the session hears of its closing through `on_closed`, before the session closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Map

from ..errors import DatastoreError, NotFound, StoreError
from ..events.catalog import DOCUMENT, Emit, no_emit
from ..events.faults import FaultReport
from ..memory import cycles_uncollected
from ..rooms.room import Room, RoomOwner, RoomSettings
from ..store.base import Retention, Store, StoredDocument
from . import trust
from .contents import FileContent, FileIO, Signature, sha256
from .roomid import RoomId

__all__ = ["DISK", "LOAD", "STATE", "DocumentSession", "FileIds", "SavePolicy"]

log = logging.getLogger(__name__)

LOAD = "load"
"""Origin of the first load of a document from its file."""
DISK = "disk"
"""Origin of changes merged in from the file on disk."""
STATE = "state"
"""Origin of the server's bookkeeping in the `state` map (path, hash, dirty)."""
_NOT_EDITS = {LOAD, DISK, STATE}


@dataclass(frozen=True)
class SavePolicy:
    delay: float = 1.0
    """Seconds without a change before an autosave."""
    max_wait: float = 5.0
    """Seconds after the first unsaved change by which an autosave happens regardless."""
    autosave: bool = True


class FileIds:
    """File ids from jupyter_server_fileid: stable across renames."""

    def __init__(self, manager: Any) -> None:
        self._manager = manager

    def path(self, file_id: str) -> str | None:
        path: str | None = self._manager.get_path(file_id)
        return path

    def file_id(self, path: str) -> str | None:
        """The id of `path` if it has one (nothing is indexed)."""
        found: str | None = self._manager.get_id(path)
        return found

    def index(self, path: str) -> tuple[str, bool]:
        """The id of `path`, and whether it was assigned just now."""
        existing = self._manager.get_id(path)
        if existing is not None:
            return existing, False
        return self._manager.index(path), True


NotebookMetadata = Callable[[str], Awaitable[dict[str, Any]]]
"""Metadata to write into the file of the notebook at a path when it is saved."""


class DocumentSession(RoomOwner):
    def __init__(
        self,
        room_id: RoomId,
        path: str,
        *,
        io: FileIO,
        store: Store,
        ids: FileIds,
        policy: SavePolicy,
        settings: RoomSettings,
        updates: Sequence[bytes] = (),
        seq: int = 0,
        epoch: str = "",
        emit: Emit = no_emit,
        on_closed: Callable[[], None] = lambda: None,
        notebook_metadata: NotebookMetadata | None = None,
    ) -> None:
        self.kind = room_id.kind
        self.notebook_metadata = notebook_metadata if self.kind.type == "notebook" else None
        self.epoch = epoch
        """The epoch of the document's rows in the store (see `session_id`)."""
        self.file_id = room_id.file_id
        self.path = path
        self.io = io
        self.store = store
        self.ids = ids
        self.policy = policy
        self.emit = emit
        self._faults = FaultReport(
            emit, what="document_saves", subject="saves", log=log, room_id=str(room_id)
        )
        self._unnoted = False
        """The file holds `_saved_seq`, but the store could not note it yet."""
        self.retention = Retention()
        self.missing = False
        """The file is gone from disk: autosave stops until it is back or saved explicitly."""
        self.held = False
        """The file's home is away (`FileIO.unavailable`): saves wait until `catch_up`."""
        self._missing_told = False
        self._saved_seq = 0
        self._file_hash = ""
        self._signature: Signature | None = None
        self._loop = asyncio.get_running_loop()
        self._first_change: float | None = None
        self._last_change = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()  # one save or merge at a time
        self._save_task: asyncio.Task[str] | None = None
        self._on_closed = on_closed
        name = str(room_id)

        async def persist(seq: int, update: bytes) -> None:
            await store.append(name, seq, update)

        self.room = Room(
            name, updates, persist=persist, seq=seq, settings=settings, emit=emit, owner=self
        )

    @property
    def session_id(self) -> str:
        """What a client must send to join the room: the store's id and the epoch of the
        rows the room was made from, so a client that holds the rows of a deleted document
        is told to reload (close 1003) instead of merging them into the new ones."""
        return self.store.document_session_id(self.epoch)

    # --- opening ---

    @classmethod
    async def open(
        cls,
        room_id: RoomId,
        *,
        io: FileIO,
        store: Store,
        ids: FileIds,
        policy: SavePolicy,
        settings: RoomSettings,
        retention: Retention,
        emit: Emit = no_emit,
        on_closed: Callable[[], None] = lambda: None,
        notebook_metadata: NotebookMetadata | None = None,
    ) -> DocumentSession:
        """The session of a document room, its room made from the store or the file;
        `NotFound` if no file has the room's file id."""
        path = ids.path(room_id.file_id)
        if path is None:
            raise NotFound(f"no file has id {room_id.file_id}")
        name, kind = str(room_id), room_id.kind
        stored, disk = await asyncio.gather(store.load(name), io.read(path, kind))
        rows = [update for _, update in stored.updates] if stored is not None else []
        if stored is not None and rows:
            epoch = stored.epoch
        else:
            # Built from the file below, with Yjs items of its own: no client may merge rows
            # of an earlier build into it. A row that recorded a build (its file's hash) whose
            # updates are gone gets a new epoch; one the session PUT made keeps the one given.
            renew = stored is not None and stored.file_hash is not None
            epoch = await store.epoch(name, renew=renew)
        session = cls(
            room_id,
            path,
            io=io,
            store=store,
            ids=ids,
            policy=policy,
            settings=settings,
            updates=rows,
            seq=stored.last_seq if stored is not None and rows else 0,
            epoch=epoch,
            emit=emit,
            on_closed=on_closed,
            notebook_metadata=notebook_metadata,
        )
        room = session.room
        if stored is None or not stored.updates:
            content = disk.content
            if kind.type == "notebook":
                content = trust.marked(content, io.notary.signed(content))
            with cycles_uncollected():  # tens of thousands of objects, all dropped soon
                built = kind.build(content, path)
            room.push(built.update, origin=LOAD, state_vector=built.state_vector)
            session._saved(room.cut(), disk.hash, disk.signature)
            await store.mark_saved(name, session._saved_seq, disk.hash)
        else:
            await session._resume(stored, disk)
        session.retention = retention
        session._event("opened", from_store=stored is not None and bool(stored.updates))
        return session

    def _event(self, action: str, **data: Any) -> None:
        """A document event (see events/schemas/document.json)."""
        where = {"room_id": self.room.name, "path": self.path, "file_id": self.file_id}
        self.emit(DOCUMENT, {"action": action, **where, **data})

    async def _resume(self, stored: StoredDocument, disk: FileContent) -> None:
        """Reconcile a document from the store with its file, which may have moved on."""
        self._saved(stored.saved_seq or 0, stored.file_hash or "", disk.signature)
        if disk.hash == stored.file_hash:
            pass
        elif (
            stored.saving_seq is not None
            and self._content_at(stored, stored.saving_seq) == disk.content
        ):
            self._saved_seq, self._file_hash = stored.saving_seq, disk.hash  # that save completed
        elif self._read() == disk.content:
            self._saved_seq, self._file_hash = self.room.seq, disk.hash
        else:
            log.info("%s changed on disk while its room was closed: merging", self.path)
            await self._merge(stored.file_state() or self.room.state(), disk)
            return
        await self.store.mark_saved(self.room.name, self._saved_seq, self._file_hash)
        if self.room.seq > self._saved_seq:
            self._save_soon()

    def _read(self) -> Any:
        with self.room.document() as doc:
            return self.kind.read(doc)

    def _content_at(self, stored: StoredDocument, seq: int) -> Any:
        state = stored.state_at(seq)
        doc: Doc[Any] = Doc()
        if state is not None:
            doc.apply_update(state)
        return self.kind.read(doc)

    def _saved(self, seq: int, file_hash: str, signature: Signature | None) -> None:
        self._saved_seq, self._file_hash, self._signature = seq, file_hash, signature

    def _set_state(self, **values: Any) -> None:
        """Bookkeeping in the document's `state` map (path, hash, dirty), where it differs."""
        with self.room.document(origin=STATE) as doc:
            state = doc.get("state", type=Map)
            for key, value in values.items():
                if state.get(key) != value:
                    state[key] = value

    # --- autosave ---

    def on_flush(self, origins: set[object]) -> None:
        if origins <= _NOT_EDITS or not self.policy.autosave or self.missing:
            return
        now = self._loop.time()
        self._last_change = now
        if self._first_change is None:
            self._first_change = now
        if self._timer is None:  # a running timer re-arms itself if the deadline moved
            self._arm()

    def _due(self) -> float:
        first = self._first_change if self._first_change is not None else self._last_change
        return min(self._last_change + self.policy.delay, first + self.policy.max_wait)

    def _arm(self) -> None:
        self._timer = self._loop.call_at(self._due(), self._autosave)

    def _save_soon(self) -> None:
        self._first_change = self._last_change = self._loop.time() - self.policy.delay
        if self._timer is None:
            self._arm()

    def _autosave(self) -> None:
        self._timer = None
        if self._loop.time() < self._due():
            self._arm()  # there was a change since: the debounce moved on
        elif self._autosave_wanted():
            self._start_save()

    def _autosave_wanted(self) -> bool:
        flags = [
            s.get("autosave", True) for s in self.room.awareness.states() if isinstance(s, dict)
        ]
        return any(flags) or not flags

    def _start_save(self, explicit: bool = False) -> asyncio.Task[str]:
        task = asyncio.ensure_future(self.save(explicit=explicit))
        self._save_task = task
        return task

    async def on_save(self) -> str:
        return await self._start_save(explicit=True)

    async def save(self, *, explicit: bool = False) -> str:
        """Write the document to its file if it changed; 'success', 'skipped', 'held' (the
        file's home is away: see `catch_up`) or 'failed'."""
        async with self._lock:
            self._first_change = None
            if not explicit and self._hold():
                return "held"
            try:
                await self._check_disk()
                if self.missing and not explicit:
                    return "skipped"
                await self._write(explicit=explicit)
                return "success"
            except DatastoreError as exc:
                if not explicit and self._hold():
                    return "held"
                log.error("cannot save %s: %s", self.path, exc.detail)
                self._event("save_failed", explicit=explicit, detail=exc.detail)
                return "failed"

    def _hold(self) -> bool:
        """Whether autosaves wait, the file's home being away; told once per absence."""
        reason = self.io.unavailable()
        if reason is not None and not self.held:
            log.warning("the save of %s waits: %s", self.path, reason)
            self._event("save_held", detail=reason)
        self.held = reason is not None
        return self.held

    async def catch_up(self) -> None:
        """The file's home is back: merge what changed there meanwhile, and write what
        waited (as an autosave would: not when every client has autosave off)."""
        if self.room.seq > self._saved_seq and self.policy.autosave and self._autosave_wanted():
            await self.save()
        else:
            await self.check(verify=True)

    async def _write(self, *, explicit: bool = False) -> None:
        seq = self.room.cut()
        with self.room.document() as doc:
            content = self.kind.read(doc)
            sign = self.kind.type == "notebook" and trust.all_trusted(doc, content)
        if self.notebook_metadata is not None:
            extra = await self.notebook_metadata(self.path)
            if extra:
                content = {**content, "metadata": {**content["metadata"], **extra}}
        data = self.io.file_bytes(self.kind, content)
        await self.room.flushed()  # the state at `seq` must be in the store before we say so
        written = data is None or sha256(data) != self._file_hash or self.missing
        if not written:
            file_hash, signature = self._file_hash, self._signature  # the file already holds this
        else:
            try:  # before writing: a crash half way must be recognised at the next start
                await self.store.mark_saving(self.room.name, seq)
            except StoreError as exc:
                self._faults.failed("mark_saving", exc)
                raise
            file_hash, signature = await self.io.write(self.path, self.kind, content, data)
            self._set_missing(False)
        if sign:  # trusted when loaded again, as jupyter_server signs what it saves
            self.io.notary.sign(content)
        # The file holds our content from here on, whatever the store says next: known at
        # once, so that a store failing to note the save never makes our own write look like
        # a change made outside (and merged back into the room as one).
        self._saved(seq, file_hash, signature)
        await self._note_saved()
        self._set_state(dirty=False, hash=file_hash)
        was_held, self.held = self.held, False
        if written or explicit or was_held:  # an autosave that wrote nothing says nothing
            self._event("saved", explicit=explicit, written=written)

    async def _note_saved(self) -> None:
        """Note the save in the store. If the store fails, the save stands (the file holds
        the content; a restart recognises it by the `saving` mark) and the note is made
        again at the next save or when the room closes."""
        try:
            await self.store.mark_saved(self.room.name, self._saved_seq, self._file_hash)
        except StoreError as exc:
            self._faults.failed("mark_saved", exc)
            self._unnoted = True
            return
        self._unnoted = False
        self._faults.succeeded()

    # --- out-of-band changes ---

    async def check(self, *, verify: bool = False) -> None:
        """Look for a rename or a change on disk (called by the watcher)."""
        async with self._lock:
            await self._check_disk(verify=verify)

    async def _check_disk(self, *, verify: bool = False) -> None:
        path = self.ids.path(self.file_id)
        if path is not None and path != self.path:
            log.info("%s was renamed to %s", self.path, path)
            self.path, from_path = path, self.path
            self._set_state(path=path)
            self._event("renamed", from_path=from_path)
        signature = await self.io.signature(self.path)
        self._set_missing(signature is None)
        if signature is None or (signature == self._signature and not verify):
            return
        try:
            disk = await self.io.read(self.path, self.kind)
        except NotFound:
            self._set_missing(True)
            return
        self._signature = disk.signature
        if disk.hash == self._file_hash:
            return
        log.info("%s changed on disk: merging the change into room %s", self.path, self.room.name)
        await self._merge(await self._base(), disk)

    def _set_missing(self, missing: bool) -> None:
        """Autosaves stop at once while the file is absent, but the `missing` event waits
        for a second look: a rename through the contents API moves the file before the file
        id manager hears of it, and the next look finds it under its new name."""
        if missing and self.missing and not self._missing_told:
            self._event("missing")
            self._missing_told = True
        if not missing:
            self._missing_told = False
        self.missing = missing

    async def _base(self) -> bytes:
        """The state the file holds; the room's current state if the store lacks it."""
        await self.room.flushed()
        stored = await self.store.load(self.room.name)
        base = stored.file_state() if stored is not None else None
        return base if base is not None else self.room.state()

    async def _merge(self, base: bytes, disk: FileContent) -> None:
        """Three-way merge of the file's content into the room (see the module docstring)."""
        fork: Doc[Any] = Doc()
        fork.apply_update(base)
        before = fork.get_state()
        self.kind.apply(fork, disk.content)
        if self.kind.type == "notebook" and self.io.notary.signed(disk.content):
            trust.trust_all(fork)  # signed where it was changed (`jupyter trust`)
        self.room.push(fork.get_update(before), origin=DISK)
        self._file_hash, self._signature = disk.hash, disk.signature
        kept_edits = self._read() != disk.content
        self._event("changed_on_disk", kept_edits=kept_edits)
        if not kept_edits:
            seq = self.room.cut()
            await self.room.flushed()
            await self.store.mark_saved(self.room.name, seq, disk.hash)
            self._saved(seq, disk.hash, disk.signature)
            self._set_state(dirty=False, hash=disk.hash)
        elif self.policy.autosave and self._autosave_wanted():
            await self._write()  # the room had edits of its own: save the merge
        else:
            # Autosave is off: the room keeps its edits unsaved, on top of the file's change.
            await self.room.flushed()
            await self.store.mark_merged(self.room.name, fork.get_update(), disk.hash)
            self._set_state(dirty=True)

    # --- closing ---

    async def on_close(self) -> None:
        """The room closes: the last save, then compaction (the room takes no more changes)."""
        self._on_closed()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._save_task is not None:
            await asyncio.gather(self._save_task, return_exceptions=True)
        if self.room.seq > self._saved_seq and not self.missing and self.policy.autosave:
            await self.save()
        elif self._unnoted:
            await self._note_saved()
        await self.room.flushed()
        try:
            # The room takes no more changes: its last step is over, not under way.
            now = time.time() + self.retention.step
            await self.store.compact(self.room.name, self.retention, now=now)
        except StoreError as exc:  # the rows stay as they are; the next close tries again
            log.warning("cannot compact %s: %s", self.room.name, exc.detail)
        self._event("closed")
