"""Durability: updates made durable per second, reopening after eviction, store size.

Both servers free a room 1 s after its last client left (`OURS_OPTIONS`, `ANCHOR_OPTIONS`).

- Durable updates per second into one document: a writer sends one-character inserts into a
  cell, a reader in the same room receives them. Ours persists each batch of updates before
  it broadcasts it, so what the reader has is durable. The anchor (pycrdt-websocket's YRoom)
  starts the broadcast and its YStore write of an update side by side, and writes one update
  at a time, so its reader may be ahead of its store: its clock stops only once its
  database (read from outside, read-only) also holds every insert. "acked": the writer sends
  the next insert once the reader has the previous one; "pipelined": the writer sends them
  all at once. The figures at the reader alone are kept in the JSON too.
- Reopen after eviction: a 5,000-cell notebook is opened, edited once (the edit acknowledged
  by a sync round trip, then saved to the file by the server) and left; once its room is
  freed (ours: gone from /api/datastore/status; the anchor: "Room ... deleted" in its log)
  and the server is quiet, a new client opens it: from the session request to the SyncStep2
  reply. The median of several; each reopened document is checked for every edit before.
- Store size: 10,000 small edits (inserts and deletes in random cells, each as a Yjs client
  sends it, batches of 100 received by a reader) into a notebook of about 1 MB; the anchor's
  YStore is waited for until it holds them all (freeing the room cancels the writes it still
  has queued); then the clients leave, the room is freed, the server goes quiet and is
  stopped cleanly, and the store's files are measured on disk (ours: datastore.db with its
  -wal and -shm files; the anchor: its SQLiteYStore's ystore.db with its journal).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycrdt import Array, Doc, Text
from websockets.asyncio.client import ClientConnection

from notebooks import notebook_bytes, write_notebook
from servers import CpuWatch, Server, quiesce
from ywire import (
    STEP2,
    UPDATE,
    open_room,
    read_var_uint,
    sync,
    sync_payload,
    sync_step1,
    sync_update,
)

OURS_OPTIONS = ("--DatastoreApp.room_idle_timeout=1",)
ANCHOR_OPTIONS = ("--YDocExtension.document_cleanup_delay=1",)
STORE_FILES = {"ours": "datastore.db", "anchor": "ystore.db"}
"""The store's database in the server's home (see servers.py), measured with its companions."""
STORE_POLL = 0.05
"""Seconds between two reads of the anchor's YStore: each holds a lock its writer waits out."""


@dataclass(frozen=True)
class Load:
    updates: int = 2000
    """Inserts in each of the acked and the pipelined run."""
    reopen_cells: int = 5000
    reopen_repeats: int = 5
    edits: int = 10_000
    edit_file_bytes: int = 1_000_000
    """The size on disk of the notebook that takes the edits (about)."""
    edit_batch: int = 100


class Peer:
    """A pycrdt document synced over a room's WebSocket; applies what the server sends."""

    def __init__(self, ws: ClientConnection, doc: Doc[Any]) -> None:
        self.ws = ws
        self.doc = doc
        self.changed = asyncio.Event()
        self.replies = 0
        """SyncStep2 messages received since the first."""
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, server: Server, path: str) -> tuple[Peer, float, int]:
        """The peer, the seconds from the session request to the SyncStep2 reply (before
        the client applies it), and that reply's size."""
        start = time.perf_counter()
        ws = await open_room(server.endpoint.room_url(server.endpoint.session(path)))
        state = await sync(ws)
        seconds = time.perf_counter() - start
        doc: Doc[Any] = Doc()
        doc.apply_update(state)
        return cls(ws, doc), seconds, len(state)

    async def _read(self) -> None:
        async for frame in self.ws:
            parsed = sync_payload(frame) if isinstance(frame, bytes) else None
            if parsed is not None and parsed[0] in (STEP2, UPDATE):
                self.doc.apply_update(parsed[1])
                self.replies += parsed[0] == STEP2
                self.changed.set()

    def change(self, edit: Callable[[], None]) -> bytes:
        """Make a change as a Yjs client does, and return its update: the transaction's own
        (`get_update(state)` would also repeat every deletion the document ever had)."""
        made: list[bytes] = []
        subscription = self.doc.observe(lambda event: made.append(event.update))
        try:
            with self.doc.transaction():
                edit()
        finally:
            self.doc.unobserve(subscription)
        return made[0]

    def source(self, index: int) -> Text:
        source: Text = self.doc.get("cells", type=Array)[index]["source"]
        return source

    def clock(self) -> int:
        """This peer's own next clock: how many changes of its own the document has."""
        return clocks(self.doc.get_state()).get(self.doc.client_id, 0)

    def has(self, client: int, clock: int) -> bool:
        """Whether this document has every change of `client` before `clock`."""
        return clocks(self.doc.get_state()).get(client, 0) >= clock

    async def wait_for(self, done: Callable[[], bool], timeout: float = 120) -> None:
        """Until `done()` holds, woken by each change the server sends."""
        deadline = time.monotonic() + timeout
        while not done():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the peer did not get every update in time")
            await asyncio.wait_for(self.changed.wait(), left)

    async def round_trip(self) -> None:
        """A SyncStep1 answered: the server has taken everything this peer sent before (a
        room reads a client's messages in order)."""
        before = self.replies
        await self.ws.send(sync_step1(self.doc.get_state()))
        await self.wait_for(lambda: self.replies > before)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


def clocks(state_vector: bytes) -> dict[int, int]:
    """A Yjs state vector: each client's next clock."""
    count, pos = read_var_uint(state_vector, 0)
    found = {}
    for _ in range(count):
        client, pos = read_var_uint(state_vector, pos)
        found[client], pos = read_var_uint(state_vector, pos)
    return found


class YStoreReader:
    """The anchor's YStore database, read from outside (read-only) while it grows: every
    stored update of one document applied to a document, to compare with the writer's. Its
    updates are only ever appended (the anchor squashes nothing by default), uncompressed."""

    def __init__(self, database: Path, path: str) -> None:
        self.uri = f"file:{database}?mode=ro"
        self.path = path
        self.doc: Doc[Any] = Doc()
        self.rowid = 0

    def clock(self, client: int) -> int:
        """The next clock of `client` in what is stored."""
        with contextlib.closing(sqlite3.connect(self.uri, uri=True, timeout=5)) as db:
            rows = db.execute(
                "SELECT rowid, yupdate FROM yupdates WHERE path = ? AND rowid > ? ORDER BY rowid",
                (self.path, self.rowid),
            ).fetchall()
        for self.rowid, update in rows:
            self.doc.apply_update(update)
        return clocks(self.doc.get_state()).get(client, 0)

    async def wait_for(self, client: int, clock: int, timeout: float = 600) -> float:
        """Polled (the anchor's writer waits out the lock a read holds: its busy timeout);
        the seconds it took."""
        start = time.monotonic()
        while self.clock(client) < clock:
            if time.monotonic() - start > timeout:
                raise TimeoutError("the anchor's YStore did not get every update in time")
            await asyncio.sleep(STORE_POLL)
        return time.monotonic() - start


def store_reader(server: Server, path: str) -> YStoreReader | None:
    """What tells when an update the reader has is stored, too; None: it is by then (ours)."""
    if server.name != "anchor":
        return None
    session = server.endpoint.session(path)  # the anchor's YStore names a document so:
    ystore_path = f".{session['type']}:{session['fileId']}.y"
    return YStoreReader(server.home / STORE_FILES["anchor"], ystore_path)


async def timed_run(
    writer: Peer, reader: Peer, store: YStoreReader | None, count: int, pipelined: bool
) -> dict[str, float]:
    """`count` one-character appends to the first cell, made before the clock starts: the
    seconds until the reader has them all, and until they are durable."""
    source = writer.source(0)
    frames, acks = [], []
    for i in range(count):
        insert = functools.partial(source.insert, len(source), "abcdefghij"[i % 10])
        frames.append(sync_update(writer.change(insert)))
        acks.append(writer.clock())
    client = writer.doc.client_id
    start = time.perf_counter()
    for frame, clock in zip(frames, acks, strict=True):
        await writer.ws.send(frame)
        if not pipelined:
            await reader.wait_for(functools.partial(reader.has, client, clock))
    await reader.wait_for(lambda: reader.has(client, acks[-1]))
    received = time.perf_counter() - start
    if store is not None:
        await store.wait_for(client, acks[-1])
    return {"received_s": received, "durable_s": time.perf_counter() - start}


async def updates_per_second(
    server: Server, load: Load, idle: list[Server], attempt: int
) -> dict[str, Any]:
    path = write_notebook(server.root, f"durable-updates-{attempt}.ipynb", 10)
    writer, reader = (await Peer.open(server, path))[0], (await Peer.open(server, path))[0]
    store = store_reader(server, path)
    result: dict[str, Any] = {"updates": load.updates}
    others = elapsed = 0.0
    try:
        for kind in ("acked", "pipelined"):
            await asyncio.to_thread(quiesce, [server, *idle])
            watch = CpuWatch({"server": [server.pid], "client": [os.getpid()]})
            run = await timed_run(writer, reader, store, load.updates, kind == "pipelined")
            used = watch.stop()
            others, elapsed = others + used["others"], elapsed + used["elapsed"]
            result[f"{kind}_per_s"] = load.updates / run["durable_s"]
            result[f"{kind}_received_per_s"] = load.updates / run["received_s"]
    finally:
        await writer.close()
        await reader.close()
    return {**result, "other_cpu_cores": others / elapsed}


def room_name(server: Server, path: str) -> str:
    session = server.endpoint.session(path)
    return f"{session['format']}:{session['type']}:{session['fileId']}"


def rooms_deleted(server: Server, room: str) -> int:
    """How many times the anchor has freed this room so far (its log says each time)."""
    return server.log_path.read_text(errors="replace").count(f"Room {room} deleted")


def room_open(server: Server, room: str, deleted_before: int) -> bool:
    if server.name == "ours":
        rooms = server.endpoint.get("/api/datastore/status")["rooms"]
        return any(r["name"] == room for r in rooms)
    return rooms_deleted(server, room) <= deleted_before


async def wait_freed(server: Server, room: str, deleted_before: int, timeout: float = 60) -> float:
    """Until the server has freed the room; the seconds that took."""
    start = time.monotonic()
    while room_open(server, room, deleted_before):
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{server.name} did not free room {room} in {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def leave(server: Server, room: str, peers: list[Peer]) -> float:
    """Close every peer and wait until the room is freed; the seconds that took."""
    deleted = rooms_deleted(server, room)
    for peer in peers:
        await peer.close()
    return await wait_freed(server, room, deleted)


def saved_source(server: Server, path: str) -> str | None:
    """The first cell's source in the notebook file; None while the file is being written."""
    try:
        source = json.loads((server.root / path).read_text())["cells"][0]["source"]
    except ValueError:
        return None
    return "".join(source) if isinstance(source, list) else str(source)


async def wait_saved(server: Server, path: str, source: str, timeout: float = 60) -> float:
    """Until the server saved the first cell's `source` to the file; the seconds that took.

    Waited for before the client leaves: the anchor saves 1 s after a change, which takes
    it about another second for 5,000 cells, and freeing the room after 1 s cuts that save
    off; its next open then finds the file out of sync with its YStore and loads the file,
    without the edit (with its default delay of 60 s the save would finish)."""
    start = time.monotonic()
    while saved_source(server, path) != source:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{server.name} did not save {path} in {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def reopen_after_eviction(
    server: Server, load: Load, idle: list[Server], attempt: int
) -> dict[str, Any]:
    path = write_notebook(server.root, f"reopen-{attempt}.ipynb", load.reopen_cells)
    room = room_name(server, path)
    peer = (await Peer.open(server, path))[0]  # the first open loads the file: not counted
    runs, saved, freed, kept = [], [], [], []
    others = elapsed = 0.0
    for i in range(load.reopen_repeats):
        mark = functools.partial(peer.source(0).insert, 0, "#")
        await peer.ws.send(sync_update(peer.change(mark)))
        await peer.round_trip()
        saved.append(await wait_saved(server, path, str(peer.source(0))))
        freed.append(await leave(server, room, [peer]))
        await asyncio.to_thread(quiesce, [server, *idle])
        watch = CpuWatch({"server": [server.pid], "client": [os.getpid()]})
        peer, seconds, _ = await Peer.open(server, path)
        used = watch.stop()
        others, elapsed = others + used["others"], elapsed + used["elapsed"]
        runs.append(seconds)
        kept.append(str(peer.source(0)).startswith("#" * (i + 1)))
    await peer.close()
    return {
        "cells": load.reopen_cells,
        "median_ms": statistics.median(runs) * 1e3,
        "runs_ms": [round(r * 1e3, 1) for r in runs],
        "saved_after_s": [round(s, 2) for s in saved],
        "freed_after_s": [round(s, 2) for s in freed],
        "edits_kept": kept,
        "other_cpu_cores": others / elapsed,
    }


def cells_for(file_bytes: int) -> int:
    """How many cells make a synthetic notebook of about `file_bytes` on disk."""
    return round(1000 * file_bytes / len(notebook_bytes(1000)))


def small_edit(rng: random.Random, source: Text) -> Callable[[], None]:
    """One character inserted at a random place, or (3 in 10 once the source is long enough)
    one deleted."""
    length = len(source)
    if length > 20 and rng.random() < 0.3:
        at = rng.randrange(length)
        return functools.partial(source.__delitem__, at)
    return functools.partial(source.insert, rng.randrange(length + 1), "x")


def store_bytes(server: Server) -> int:
    return sum(f.stat().st_size for f in server.home.glob(f"{STORE_FILES[server.name]}*"))


async def edit_and_measure_store(server: Server, load: Load, idle: list[Server]) -> dict[str, Any]:
    cells = cells_for(load.edit_file_bytes)
    path = write_notebook(server.root, "store-size.ipynb", cells)
    file_bytes = (server.root / path).stat().st_size  # before the server saves the edits
    room = room_name(server, path)
    rng = random.Random(1)
    writer, _, state_before = await Peer.open(server, path)
    reader = (await Peer.open(server, path))[0]
    client = writer.doc.client_id
    for _ in range(load.edits // load.edit_batch):
        for _ in range(load.edit_batch):
            edit = small_edit(rng, writer.source(rng.randrange(cells)))
            await writer.ws.send(sync_update(writer.change(edit)))
        await reader.wait_for(functools.partial(reader.has, client, writer.clock()))
    state_after = len(reader.doc.get_update())
    stored: dict[str, float] = {}
    store = store_reader(server, path)
    if store is not None:  # its YStore lags its broadcasts, and freeing the room drops the rest
        stored["stored_when_received"] = store.clock(client) / writer.clock()
        stored["stored_after_s"] = round(await store.wait_for(client, writer.clock()), 2)
    freed = await leave(server, room, [writer, reader])
    quiet = await asyncio.to_thread(quiesce, [server, *idle], 60.0)
    server.stop()  # SIGTERM: each server flushes and closes its store
    return {
        "cells": cells,
        "file_bytes": file_bytes,
        "encoded_state_bytes": state_before,
        "encoded_state_bytes_after": state_after,
        "edits": load.edits,
        **stored,
        "freed_after_s": round(freed, 2),
        "quiet_before_stop": quiet,
        "store_bytes": store_bytes(server),
        "store_files": {
            f.name: f.stat().st_size for f in server.home.glob(f"{STORE_FILES[server.name]}*")
        },
    }


def run_updates(server: Server, load: Load, idle: list[Server], attempt: int) -> dict[str, Any]:
    return asyncio.run(updates_per_second(server, load, idle, attempt))


def run_reopen(server: Server, load: Load, idle: list[Server], attempt: int) -> dict[str, Any]:
    return asyncio.run(reopen_after_eviction(server, load, idle, attempt))


def run_store_size(server: Server, load: Load, idle: list[Server], attempt: int) -> dict[str, Any]:
    """The store size after the edits; the server is stopped at the end (so: one attempt)."""
    return asyncio.run(edit_and_measure_store(server, load, idle))


PARTS = {"updates": run_updates, "reopen": run_reopen, "store": run_store_size}
"""Each is measured on freshly started servers: the anchor's store, loaded by one, slowed
or failed the next ("database is locked") when they shared a server."""
TIMED = ("updates", "reopen")
"""Tried again when other processes disturbed them (see run.calm)."""
