"""The document service: opens the room behind a room name, and watches the open files."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from ..errors import BadRequest, DocumentError, NotFound, Unavailable
from ..events.catalog import Emit, no_emit
from ..rooms.room import Room, RoomSettings
from ..store.base import Retention, Store
from .contents import FileIO
from .roomid import GLOBAL_AWARENESS, RoomId
from .session import DocumentSession, FileIds, NotebookMetadata, SavePolicy

__all__ = ["GLOBAL_AWARENESS", "Documents", "WatchPolicy"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchPolicy:
    interval: float = 1.0
    """Seconds between two looks at the open files' signatures (modification time, size)."""
    verify_every: float = 30.0
    """Seconds between two full content checks, which catch changes that kept the signature."""


class Documents:
    def __init__(
        self,
        *,
        io: FileIO,
        store: Store,
        ids: FileIds,
        save: SavePolicy,
        watch: WatchPolicy,
        room: RoomSettings,
        retention: Retention,
        compact_interval: float = 60.0,
        emit: Emit = no_emit,
    ) -> None:
        self.io = io
        self.retention = retention
        self.compact_interval = compact_interval
        self.store = store
        self.ids = ids
        self.save_policy = save
        self.watch_policy = watch
        self.room_settings = room
        self.emit = emit
        self.sessions: dict[str, DocumentSession] = {}
        self.notebook_metadata: NotebookMetadata | None = None
        """Metadata written into a notebook's file when it is saved, by path (the state of
        its kernel's widgets, as JupyterLab's "save widget state" writes it)."""
        self._watcher: asyncio.Task[None] | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._compacted: dict[str, int] = {}  # room -> its seq at the last compaction

    async def open_room(self, name: str) -> Room:
        if name == GLOBAL_AWARENESS:
            return Room(name, read_only="presence only", settings=self.room_settings)
        room_id = RoomId.parse(name)

        def closed() -> None:
            self.sessions.pop(name, None)
            self._compacted.pop(name, None)

        session = await DocumentSession.open(
            room_id,
            io=self.io,
            store=self.store,
            ids=self.ids,
            policy=self.save_policy,
            settings=self.room_settings,
            retention=self.retention,
            emit=self.emit,
            on_closed=closed,
            notebook_metadata=self.notebook_metadata,
        )
        self.sessions[name] = session
        return session.room

    async def notebook_room(self, path: str) -> str:
        """The room id of the notebook at `path` (a real path), its file given an id if it
        has none yet: `BadRequest` for a path that names no notebook, `NotFound` when no
        file is there."""
        if not path.endswith(".ipynb"):
            raise BadRequest(f"{path} is not a notebook (.ipynb)")
        known = self.ids.file_id(path)
        if known is not None and str(RoomId.notebook(known)) in self.sessions:
            return str(RoomId.notebook(known))  # open: no need to look on disk
        if not await self.io.exists(path):
            raise NotFound(f"no notebook at {path}")
        file_id, _ = self.ids.index(path)
        return str(RoomId.notebook(file_id))

    def start(self) -> None:
        if self.watch_policy.interval > 0:
            self._watcher = asyncio.ensure_future(self._watch())
        if self.compact_interval > 0:
            self._compactor = asyncio.ensure_future(self._compact_open_documents())

    async def stop(self) -> None:
        for task in (self._watcher, self._compactor):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _compact_open_documents(self) -> None:
        """Compact, in the background, each open document that changed since last time.

        The store merges off the event loop and swaps rows in one short transaction; the
        rooms go on taking and broadcasting changes meanwhile."""
        while True:
            await asyncio.sleep(self.compact_interval)
            for name, session in list(self.sessions.items()):
                seq = session.room.seq
                if self._compacted.get(name) == seq:
                    continue
                try:
                    await self.store.compact(name, self.retention)
                    self._compacted[name] = seq
                except Exception as exc:
                    log.warning("cannot compact %s now: %s", name, exc)

    async def look_at(self, path: str) -> None:
        """The file at `path` changed (told by whoever saw it): compare the open document."""
        for session in list(self.sessions.values()):
            if session.path == path:
                await session.check()

    async def catch_up(self) -> None:
        """The files' home is back (supernode mode): every open document merges what
        changed there meanwhile and writes what waited."""
        for session in list(self.sessions.values()):
            try:
                await session.catch_up()
            except Exception:
                log.exception("cannot catch up with %s", session.path)

    async def _watch(self) -> None:
        last_verify = time.monotonic()
        while True:
            await asyncio.sleep(self.watch_policy.interval)
            verify = 0 < self.watch_policy.verify_every <= time.monotonic() - last_verify
            if verify:
                last_verify = time.monotonic()
            if self.io.unavailable() is not None:
                continue  # files cannot be read now: `catch_up` looks when they can
            for session in list(self.sessions.values()):
                try:
                    await session.check(verify=verify)
                except Unavailable:
                    break  # gone away meanwhile: said once, by whoever watches it
                except DocumentError as exc:  # a file half written, or broken, on disk
                    log.warning("cannot merge %s from disk: %s", session.path, exc.detail)
                except Exception:
                    log.exception("cannot check %s for changes on disk", session.path)
