"""The SQLite store: one writer thread, one connection, group commit, WAL.

Every operation is a job for the writer thread. The thread takes all jobs that are waiting,
runs them in one transaction and commits once, so a burst of appends from many rooms costs
one commit. With `journal_mode=WAL` and `synchronous=NORMAL` a committed transaction
survives the process being killed (not a power cut, which needs `synchronous=FULL`; set
`durability="full"`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from .base import Store, StoredDocument, merge

__all__ = ["SQLiteStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    saved_seq INTEGER,
    saving_seq INTEGER,
    file_hash TEXT,
    base BLOB,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS updates (
    doc INTEGER NOT NULL REFERENCES documents(id),
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (doc, seq)
);
"""

_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]
_STOP = None


class SQLiteStore(Store):
    def __init__(self, path: str, *, durability: str = "normal") -> None:
        self.path = path
        self.durability = durability
        self.session_id = ""
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._doc_ids: dict[str, int] = {}

    async def start(self) -> None:
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="datastore-sqlite", daemon=True
        )
        self._thread.start()
        await ready
        self.session_id = await self._submit(self._read_or_create_id)

    async def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(_STOP)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._thread = None

    # --- the writer thread ---

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
        db.execute("PRAGMA busy_timeout=5000")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(
                f"{self.path} has store schema {version}; this version reads {SCHEMA_VERSION}"
            )
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return db

    def _run(self, ready: asyncio.Future[None]) -> None:
        loop = ready.get_loop()
        try:
            db = self._connect()
        except Exception as exc:  # reported to start(), which re-raises it
            loop.call_soon_threadsafe(_settle, ready, None, exc)
            return
        loop.call_soon_threadsafe(_settle, ready, None, None)
        stopping = False
        while not stopping:
            batch = [self._jobs.get()]
            while True:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            jobs = [job for job in batch if job is not _STOP]
            stopping = len(jobs) < len(batch)
            if jobs:
                self._run_batch(db, jobs)
        db.close()

    def _run_batch(self, db: sqlite3.Connection, jobs: list[_Job]) -> None:
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for fn, future in jobs:
                db.execute("SAVEPOINT job")
                try:
                    results.append((future, fn(db), None))
                    db.execute("RELEASE job")
                except sqlite3.Error:
                    raise
                except Exception as exc:  # a job's own error fails that job only
                    self._doc_ids.clear()
                    db.execute("ROLLBACK TO job")
                    db.execute("RELEASE job")
                    results.append((future, None, exc))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("store write failed: %s", exc)
            self._doc_ids.clear()
            if db.in_transaction:
                db.execute("ROLLBACK")
            results = [(future, None, exc) for _, future in jobs]
        for future, result, error in results:
            future.get_loop().call_soon_threadsafe(_settle, future, result, error)

    def _submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        if self._thread is None:
            raise RuntimeError("the store is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((fn, future))
        return future

    # --- jobs (run on the writer thread) ---

    @staticmethod
    def _read_or_create_id(db: sqlite3.Connection) -> str:
        row = db.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
        if row:
            return str(row[0])
        store_id = str(uuid.uuid4())
        db.execute("INSERT INTO meta (key, value) VALUES ('store_id', ?)", (store_id,))
        return store_id

    def _doc_id(self, db: sqlite3.Connection, name: str, create: bool) -> int | None:
        doc_id = self._doc_ids.get(name)
        if doc_id is not None:
            return doc_id
        row = db.execute("SELECT id FROM documents WHERE name = ?", (name,)).fetchone()
        if row:
            doc_id = int(row[0])
        elif create:
            cursor = db.execute(
                "INSERT INTO documents (name, updated) VALUES (?, ?)", (name, time.time())
            )
            doc_id = int(cursor.lastrowid or 0)
        else:
            return None
        self._doc_ids[name] = doc_id
        return doc_id

    # --- the interface ---

    async def load(self, name: str) -> StoredDocument | None:
        def job(db: sqlite3.Connection) -> StoredDocument | None:
            row = db.execute(
                "SELECT id, saved_seq, saving_seq, file_hash, base FROM documents WHERE name = ?",
                (name,),
            ).fetchone()
            if row is None:
                return None
            rows = db.execute(
                "SELECT seq, data FROM updates WHERE doc = ? ORDER BY seq", (row[0],)
            ).fetchall()
            return StoredDocument(
                updates=[(int(seq), bytes(data)) for seq, data in rows],
                saved_seq=row[1],
                saving_seq=row[2],
                file_hash=row[3],
                base=bytes(row[4]) if row[4] is not None else None,
            )

        return await self._submit(job)

    async def append(self, name: str, seq: int, update: bytes) -> None:
        def job(db: sqlite3.Connection) -> None:
            doc_id = self._doc_id(db, name, create=True)
            db.execute(
                "INSERT INTO updates (doc, seq, data) VALUES (?, ?, ?)", (doc_id, seq, update)
            )

        await self._submit(job)

    async def mark_saving(self, name: str, seq: int) -> None:
        await self._set(name, "saving_seq = ?", (seq,))

    async def mark_saved(self, name: str, seq: int, file_hash: str) -> None:
        await self._set(
            name, "saved_seq = ?, saving_seq = NULL, file_hash = ?, base = NULL", (seq, file_hash)
        )

    async def mark_merged(self, name: str, base: bytes, file_hash: str) -> None:
        await self._set(name, "base = ?, file_hash = ?", (base, file_hash))

    async def _set(self, name: str, assignments: str, values: tuple[Any, ...]) -> None:
        def job(db: sqlite3.Connection) -> None:
            doc_id = self._doc_id(db, name, create=True)
            db.execute(
                f"UPDATE documents SET {assignments}, updated = ? WHERE id = ?",
                (*values, time.time(), doc_id),
            )

        await self._submit(job)

    async def compact(self, name: str) -> None:
        def job(db: sqlite3.Connection) -> None:
            doc_id = self._doc_id(db, name, create=False)
            if doc_id is None:
                return
            saved = db.execute(
                "SELECT saved_seq FROM documents WHERE id = ?", (doc_id,)
            ).fetchone()[0]
            rows = db.execute(
                "SELECT seq, data FROM updates WHERE doc = ? ORDER BY seq", (doc_id,)
            ).fetchall()
            before = [(s, d) for s, d in rows if saved is not None and s <= saved]
            after = [(s, d) for s, d in rows if saved is None or s > saved]
            for part in (before, after):
                if len(part) > 1:
                    last = part[-1][0]
                    db.execute(
                        "DELETE FROM updates WHERE doc = ? AND seq >= ? AND seq <= ?",
                        (doc_id, part[0][0], last),
                    )
                    db.execute(
                        "INSERT INTO updates (doc, seq, data) VALUES (?, ?, ?)",
                        (doc_id, last, merge([bytes(d) for _, d in part])),
                    )

        await self._submit(job)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
