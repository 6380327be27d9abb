"""Durability: updates made durable per second, reopening after eviction, store size.

- Durable updates per second into one document: a writer sends one-character inserts into
  a cell, a reader in the same room counts what it receives. Both servers store an update
  before the reader gets it (ours persists each batch before broadcasting it; the anchor's
  room writes its YStore as it applies the update), so what the reader has is durable.
  "acked": the writer sends the next insert once the reader has the previous one (the
  latency of one durable edit); "pipelined": the writer sends them all at once and the clock
  stops when the reader has the last (throughput).
- Reopen after eviction: a 5,000-cell notebook is opened, edited once and left; once its
  room is freed (ours: gone from /api/datastore/status; the anchor: "Room ... deleted" in
  its log, both with an idle delay of 1 s), a new client opens it: session request to
  SyncStep2. The median of several.
- Store size: 10,000 small edits (inserts and deletes in random cells, each batch of 100
  acknowledged by the reader) into a notebook of about 1 MB; then the clients leave, the room
  is freed, the server stops cleanly, and the store's files are measured on disk (ours:
  datastore.db with its -wal and -shm files; the anchor: its SQLiteYStore's ystore.db).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

from pycrdt import Array, Doc, Text
from websockets.asyncio.client import ClientConnection

from notebooks import write_notebook
from servers import Server
from ywire import STEP2, UPDATE, open_room, read_var_uint, sync, sync_payload, sync_update

OURS_OPTIONS = ("--DatastoreApp.room_idle_timeout=1",)
ANCHOR_OPTIONS = ("--YDocExtension.document_cleanup_delay=1",)


@dataclass(frozen=True)
class Load:
    updates: int = 2000
    reopen_cells: int = 5000
    reopen_repeats: int = 5
    edits: int = 10_000
    edit_cells: int = 5000


class Peer:
    """A pycrdt document synced over a room's WebSocket; applies what the server sends."""

    def __init__(self, ws: ClientConnection, doc: Doc[Any]) -> None:
        self.ws = ws
        self.doc = doc
        self.changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, server: Server, path: str) -> Peer:
        ws = await open_room(server.endpoint.room_url(server.endpoint.session(path)))
        doc: Doc[Any] = Doc()
        doc.apply_update(await sync(ws))
        return cls(ws, doc)

    async def _read(self) -> None:
        async for frame in self.ws:
            parsed = sync_payload(frame) if isinstance(frame, bytes) else None
            if parsed is not None and parsed[0] in (STEP2, UPDATE):
                self.doc.apply_update(parsed[1])
                self.changed.set()

    def change(self, edit: Any) -> bytes:
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
        return self.doc.get("cells", type=Array)[index]["source"]

    async def wait_for(self, done: Any, timeout: float = 120) -> None:
        """Until `done()` holds, woken by each change the server sends."""
        deadline = time.monotonic() + timeout
        while not done():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the reader did not get every update in time")
            await asyncio.wait_for(self.changed.wait(), left)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


def inserts(doc: Doc[Any], count: int) -> list[bytes]:
    """`count` one-character appends to the first cell, each as its own update."""
    source = doc.get("cells", type=Array)[0]["source"]
    out = []
    for i in range(count):
        before = doc.get_state()
        source.insert(len(str(source)), "abcdefghij"[i % 10])
        out.append(doc.get_update(before))
    return out


async def updates_per_second(server: Server, count: int, name: str) -> dict[str, float]:
    path = write_notebook(server.root, f"{name}.ipynb", 10)
    writer, reader = await Peer.open(server, path), await Peer.open(server, path)
    try:
        base = len(str(reader.source(0)))
        frames = [sync_update(u) for u in inserts(writer.doc, count)]
        start = time.perf_counter()
        for i, frame in enumerate(frames[: count // 2]):
            await writer.ws.send(frame)
            await reader.wait_for(lambda n=base + i + 1: len(str(reader.source(0))) >= n)
        acked = time.perf_counter() - start
        base += count // 2
        rest = frames[count // 2 :]
        start = time.perf_counter()
        for frame in rest:
            await writer.ws.send(frame)
        await reader.wait_for(lambda: len(str(reader.source(0))) >= base + len(rest))
        pipelined = time.perf_counter() - start
    finally:
        await writer.close()
        await reader.close()
    return {"acked_per_s": (count // 2) / acked, "pipelined_per_s": len(rest) / pipelined}


def rooms_deleted(server: Server, room: str) -> int:
    """How many times the anchor has freed this room so far (its log says each time)."""
    return server.log_path.read_text(errors="replace").count(f"Room {room} deleted")


async def wait_freed(server: Server, room: str, deleted_before: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.name == "ours":
            if room not in json.dumps(server.endpoint.get("/api/datastore/status")):
                return
        elif rooms_deleted(server, room) > deleted_before:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{server.name} did not free room {room} in {timeout} s")


async def reopen_after_eviction(server: Server, cells: int, repeats: int) -> dict[str, Any]:
    path = write_notebook(server.root, f"reopen-{cells}.ipynb", cells)
    session = server.endpoint.session(path)
    room = f"{session['format']}:{session['type']}:{session['fileId']}"
    runs = []
    for i in range(repeats + 1):  # the first open loads the file: not counted
        deleted = rooms_deleted(server, room)
        start = time.perf_counter()
        peer = await Peer.open(server, path)
        seconds = time.perf_counter() - start
        # a change, so that the store has the room's edits
        cell = peer.source(i % cells)
        update = peer.change(lambda c=cell: c.insert(0, "#"))
        await peer.ws.send(sync_update(update))
        await peer.close()
        if i:
            runs.append(seconds)
        await wait_freed(server, room, deleted)
    return {"median_ms": statistics.median(runs) * 1e3, "runs_ms": [round(r * 1e3) for r in runs]}


def clocks(state_vector: bytes) -> dict[int, int]:
    """A Yjs state vector: each client's next clock."""
    count, pos = read_var_uint(state_vector, 0)
    found = {}
    for _ in range(count):
        client, pos = read_var_uint(state_vector, pos)
        found[client], pos = read_var_uint(state_vector, pos)
    return found


def lacks_nothing(reader: Doc[Any], writer: Doc[Any]) -> bool:
    """Whether the reader has every change the writer made (it may have more: the server's)."""
    client = writer.client_id
    return clocks(reader.get_state()).get(client, 0) >= clocks(writer.get_state()).get(client, 0)


def store_bytes(server: Server) -> int:
    name = "datastore.db" if server.name == "ours" else "ystore.db"
    return sum(f.stat().st_size for f in server.home.glob(f"{name}*"))


async def edit_and_measure_store(server: Server, load: Load, seed: int) -> dict[str, Any]:
    path = write_notebook(server.root, "store-size.ipynb", load.edit_cells)
    file_size = (server.root / path).stat().st_size
    rng = random.Random(seed)
    writer, reader = await Peer.open(server, path), await Peer.open(server, path)
    encoded = len(reader.doc.get_update())
    session = server.endpoint.session(path)
    room = f"{session['format']}:{session['type']}:{session['fileId']}"
    try:
        for batch in range(load.edits // 100):
            for _ in range(100):
                source = writer.source(rng.randrange(load.edit_cells))
                length = len(str(source))
                if length > 20 and rng.random() < 0.3:
                    update = writer.change(lambda s=source, n=length: s.__delitem__(n - 1))
                else:
                    place = rng.randrange(length + 1)
                    update = writer.change(lambda s=source, at=place: s.insert(at, "x"))
                await writer.ws.send(sync_update(update))
            await reader.wait_for(lambda: lacks_nothing(reader.doc, writer.doc))
            if batch % 20 == 0:
                await asyncio.sleep(0)
        deleted = rooms_deleted(server, room)
    finally:
        await writer.close()
        await reader.close()
    await wait_freed(server, room, deleted)
    server.stop()  # a clean stop: each server flushes and closes its store
    return {
        "file_bytes": file_size,
        "encoded_state_bytes": encoded,
        "edits": load.edits,
        "store_bytes": store_bytes(server),
    }


def run_updates(server: Server, load: Load, seed: int) -> dict[str, Any]:
    return asyncio.run(updates_per_second(server, load.updates, "durable-updates"))


def run_reopen(server: Server, load: Load, seed: int) -> dict[str, Any]:
    return asyncio.run(reopen_after_eviction(server, load.reopen_cells, load.reopen_repeats))


def run_store_size(server: Server, load: Load, seed: int) -> dict[str, Any]:
    """The store size after the edits (the server is stopped at the end)."""
    return asyncio.run(edit_and_measure_store(server, load, seed))


PARTS = {"updates": run_updates, "reopen": run_reopen, "store": run_store_size}
"""Each is measured on freshly started servers: the anchor's store, loaded by one, slowed
or failed the next ("database is locked") when they shared a server."""
