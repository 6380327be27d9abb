"""The SQLite store: writes on the event loop's thread, checkpoints and big reads off it.

In WAL mode with `synchronous=NORMAL` a commit is a write into the WAL file, with no fsync:
tens of microseconds, less than handing the work to another thread and back. A committed
transaction survives the process being killed (not a power cut; `durability="full"` adds an
fsync to every commit, on the event loop). The fsyncs of WAL checkpoints happen in a
background thread with its own connection, and whole documents are read in a worker thread,
so neither blocks the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..errors import StoreCorrupt, StoreError
from .base import (
    DocumentInfo,
    HistoryPoint,
    Retention,
    Store,
    StoredDocument,
    StoredEvent,
    decode_row,
    encode_row,
    merge,
)
from .compaction import Run, plan

__all__ = ["SQLiteStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 2
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
    time REAL NOT NULL DEFAULT 0,
    codec INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (doc, seq)
);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    room TEXT,
    kernel_id TEXT,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_room ON executions (room, created);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    schema_id TEXT NOT NULL,
    version TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_schema ON events (schema_id, id);
CREATE TABLE IF NOT EXISTS event_schemas (id TEXT PRIMARY KEY, schema TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY,
    recipient TEXT NOT NULL,
    created TEXT NOT NULL,
    read INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_recipient ON notifications (recipient, created);
CREATE TABLE IF NOT EXISTS permissions (path TEXT PRIMARY KEY, rule TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS forks (id TEXT PRIMARY KEY, root TEXT NOT NULL, info TEXT NOT NULL);
"""
# Schema 1 had no row times, encodings or forks: its rows count as old, raw updates.
_MIGRATE_FROM_1 = """
ALTER TABLE updates ADD COLUMN time REAL NOT NULL DEFAULT 0;
ALTER TABLE updates ADD COLUMN codec INTEGER NOT NULL DEFAULT 0;
"""
_CHECKPOINT_EVERY = 1.0  # seconds, while there are new writes
_VACUUM_PAGES = 8192  # free pages given back after one compaction, at most (8 MB)
_APPEND = "INSERT INTO updates (doc, seq, data, time) VALUES (?, ?, ?, ?)"
# What SQLite says when the file is not a sound database (as opposed to a busy or full one).
_CORRUPT = ("not a database", "malformed", "corrupt", "encrypted")


def _store_error(exc: sqlite3.Error, path: str) -> StoreError:
    """An SQLite error as the store's own: damaged data, or a failure worth retrying."""
    text = str(exc)
    if any(word in text for word in _CORRUPT):
        return StoreCorrupt(f"{path}: {text} (run `jupyter-datastore store verify`)")
    return StoreError(f"{path}: {text}")


class SQLiteStore(Store):
    def __init__(self, path: str, *, durability: str = "normal") -> None:
        self.path = path
        self.durability = durability
        self.session_id = ""
        self._db: sqlite3.Connection | None = None
        self._doc_ids: dict[str, int] = {}
        self._writes = 0
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None

    @property
    def _in_memory(self) -> bool:
        return self.path == ":memory:"

    def _connect(self, *, writer: bool) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=5000")
        if writer:
            # Before anything is written (SQLite fixes both when it creates the file): pages
            # that compaction frees go back to the disk, and small pages, so that the dozen
            # tables and indexes of an almost empty store take 20 KB, not 90.
            db.execute("PRAGMA page_size=1024")
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
            db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
        return db

    async def start(self) -> None:
        if not self._in_memory:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        try:
            db = self._connect(writer=True)
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path) from exc
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, SCHEMA_VERSION):
                raise StoreCorrupt(
                    f"{self.path} has store schema {version}; this version reads {SCHEMA_VERSION}"
                )
            db.execute("BEGIN IMMEDIATE")  # a migration happens whole or not at all
            script = (_MIGRATE_FROM_1 if version == 1 else "") + _SCHEMA
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            db.close()
            raise _store_error(exc, self.path) from exc
        except BaseException:
            db.close()
            raise
        self._db = db
        self.session_id = self._write(self._read_or_create_id)
        if not self._in_memory:
            self._stop.clear()
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="datastore-checkpoint", daemon=True
            )
            self._checkpointer.start()

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._stop.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        if self._db is not None:
            if not self._in_memory:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None

    def _checkpoint_loop(self) -> None:
        db = self._connect(writer=False)
        done, failing = 0, False
        try:
            while not self._stop.wait(_CHECKPOINT_EVERY):
                if self._writes != done:
                    try:
                        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    except sqlite3.Error as exc:  # a full disk: tried again at the next write
                        if not failing:
                            log.error("store checkpoints fail: %s", exc)
                        failing = True
                        continue
                    done, failing = self._writes, False
        finally:
            db.close()

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one transaction on the writer connection and commit it."""
        db = self._db
        if db is None:
            raise StoreError("the store is not running")
        try:
            db.execute("BEGIN IMMEDIATE")
            result = fn(db)
            db.execute("COMMIT")
        except BaseException as exc:
            self._doc_ids.clear()  # ids created in the rolled back transaction are gone
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _store_error(exc, self.path) from exc
            raise
        self._writes += 1
        return result

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read in a worker thread with its own connection (WAL lets it go on alongside)."""
        if self._in_memory:
            assert self._db is not None
            return fn(self._db)

        def job() -> T:
            try:
                db = self._connect(writer=False)
                try:
                    return fn(db)
                finally:
                    db.close()
            except sqlite3.Error as exc:
                raise _store_error(exc, self.path) from exc

        return await asyncio.to_thread(job)

    @staticmethod
    def _read_or_create_id(db: sqlite3.Connection) -> str:
        row = db.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
        if row:
            return str(row[0])
        store_id = str(uuid.uuid4())
        db.execute("INSERT INTO meta (key, value) VALUES ('store_id', ?)", (store_id,))
        return store_id

    def _doc_id(self, db: sqlite3.Connection, name: str) -> int:
        doc_id = self._doc_ids.get(name)
        if doc_id is None:
            row = db.execute("SELECT id FROM documents WHERE name = ?", (name,)).fetchone()
            if row:
                doc_id = int(row[0])
            else:
                cursor = db.execute(
                    "INSERT INTO documents (name, updated) VALUES (?, ?)", (name, time.time())
                )
                doc_id = int(cursor.lastrowid or 0)
            self._doc_ids[name] = doc_id
        return doc_id

    # --- the interface ---

    async def load(self, name: str) -> StoredDocument | None:
        return await self._read(lambda db: _load(db, name))

    async def append(self, name: str, seq: int, update: bytes) -> None:
        doc_id = self._doc_ids.get(name)
        now = time.time()
        if doc_id is not None and self._db is not None:
            # The hot path: one statement, committed on its own.
            try:
                self._db.execute(_APPEND, (doc_id, seq, update, now))
            except sqlite3.Error as exc:
                raise _store_error(exc, self.path) from exc
            self._writes += 1
            return

        def job(db: sqlite3.Connection) -> None:
            db.execute(_APPEND, (self._doc_id(db, name), seq, update, now))

        self._write(job)

    async def mark_saving(self, name: str, seq: int) -> None:
        self._set(name, "saving_seq = ?", (seq,))

    async def mark_saved(self, name: str, seq: int, file_hash: str) -> None:
        self._set(
            name, "saved_seq = ?, saving_seq = NULL, file_hash = ?, base = NULL", (seq, file_hash)
        )

    async def mark_merged(self, name: str, base: bytes, file_hash: str) -> None:
        self._set(name, "base = ?, file_hash = ?", (base, file_hash))

    def _set(self, name: str, assignments: str, values: tuple[Any, ...]) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.execute(
                f"UPDATE documents SET {assignments}, updated = ? WHERE id = ?",
                (*values, time.time(), self._doc_id(db, name)),
            )

        self._write(job)

    async def history(self, name: str) -> list[HistoryPoint]:
        def job(db: sqlite3.Connection) -> list[HistoryPoint]:
            rows = db.execute(
                "SELECT u.seq, u.time FROM updates u JOIN documents d ON u.doc = d.id"
                " WHERE d.name = ? ORDER BY u.seq",
                (name,),
            )
            return [HistoryPoint(int(seq), float(t)) for seq, t in rows]

        return await self._read(job)

    async def compact(self, name: str, retention: Retention, now: float | None = None) -> int:
        """Plan and merge in a worker thread, then swap the rows in one short transaction."""
        moment = time.time() if now is None else now

        def prepare(db: sqlite3.Connection) -> list[tuple[Run, int, bytes, float, int]]:
            row = db.execute(
                "SELECT id, saved_seq, saving_seq FROM documents WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                return []
            doc_id, saved, saving = row
            rows = db.execute("SELECT seq, time FROM updates WHERE doc = ? ORDER BY seq", (doc_id,))
            runs = plan(rows.fetchall(), {saved, saving} - {None}, retention, moment)
            merged = []
            for first, last in runs:
                found = db.execute(
                    "SELECT data, codec, time FROM updates WHERE doc = ? AND seq BETWEEN ? AND ?"
                    " ORDER BY seq",
                    (doc_id, first, last),
                ).fetchall()
                data, codec = encode_row(merge([decode_row(d, c) for d, c, _ in found]))
                merged.append(((first, last), len(found), data, float(found[-1][2]), codec))
            return merged

        merged = await self._read(prepare)
        if not merged:
            return 0

        def swap(db: sqlite3.Connection) -> int:
            doc_id = self._doc_id(db, name)
            removed = 0
            for (first, last), count, data, last_time, codec in merged:
                cursor = db.execute(
                    "DELETE FROM updates WHERE doc = ? AND seq BETWEEN ? AND ?",
                    (doc_id, first, last),
                )
                if cursor.rowcount != count:  # compacted meanwhile by someone else
                    raise _Changed
                db.execute(
                    "INSERT INTO updates (doc, seq, data, time, codec) VALUES (?, ?, ?, ?, ?)",
                    (doc_id, last, data, last_time, codec),
                )
                removed += count - 1
            return removed

        try:
            removed = self._write(swap)
        except _Changed:
            return 0
        self._release_free_pages()
        return removed

    def _release_free_pages(self) -> None:
        """Give the pages compaction freed back to the file system, a bounded number at a
        time (a store made before auto_vacuum was set keeps them for reuse instead)."""
        if self._db is not None and not self._in_memory:
            try:
                # run to the end: a plain execute frees one page per step of the statement
                self._db.executescript(f"PRAGMA incremental_vacuum({_VACUUM_PAGES});")
            except sqlite3.Error as exc:
                log.warning("cannot release free pages of %s: %s", self.path, exc)

    async def documents(self) -> list[DocumentInfo]:
        def job(db: sqlite3.Connection) -> list[DocumentInfo]:
            rows = db.execute(
                "SELECT d.name, COUNT(u.seq), COALESCE(SUM(LENGTH(u.data)), 0),"
                " COALESCE(MAX(u.seq), 0), d.saved_seq, d.updated"
                " FROM documents d LEFT JOIN updates u ON u.doc = d.id"
                " GROUP BY d.id ORDER BY d.name"
            )
            return [DocumentInfo(*row) for row in rows]

        return await self._read(job)

    async def delete_document(self, name: str) -> None:
        def job(db: sqlite3.Connection) -> None:
            found = db.execute("SELECT id FROM documents WHERE name = ?", (name,)).fetchone()
            if found is not None:
                db.execute("DELETE FROM updates WHERE doc = ?", (found[0],))
                db.execute("DELETE FROM documents WHERE id = ?", (found[0],))

        self._write(job)
        self._doc_ids.pop(name, None)

    async def counts(self) -> dict[str, int]:
        tables = ("events", "executions", "notifications", "permissions", "forks")

        def job(db: sqlite3.Connection) -> dict[str, int]:
            return {t: int(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in tables}

        return await self._read(job)

    async def check_integrity(self) -> list[str]:
        def job(db: sqlite3.Connection) -> list[str]:
            found = [str(row[0]) for row in db.execute("PRAGMA integrity_check")]
            return [] if found == ["ok"] else found

        return await self._read(job)

    def location(self) -> str:
        return self.path

    async def size_on_disk(self) -> int | None:
        if self._in_memory:
            return None
        return sum(
            os.path.getsize(self.path + suffix)
            for suffix in ("", "-wal", "-shm")
            if os.path.exists(self.path + suffix)
        )

    # --- forks ---

    async def put_fork(self, fork_id: str, root: str, info: dict[str, Any]) -> None:
        row = (fork_id, root, json.dumps(info))
        self._write(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO forks (id, root, info) VALUES (?, ?, ?)", row
            )
        )

    async def forks(self, root: str | None = None) -> dict[str, dict[str, Any]]:
        def job(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            if root is None:
                rows = db.execute("SELECT id, info FROM forks")
            else:
                rows = db.execute("SELECT id, info FROM forks WHERE root = ?", (root,))
            return {fork_id: json.loads(info) for fork_id, info in rows}

        return await self._read(job)

    async def delete_fork(self, fork_id: str) -> None:
        self._write(lambda db: db.execute("DELETE FROM forks WHERE id = ?", (fork_id,)))

    # --- execution records ---

    async def put_executions(self, records: Sequence[dict[str, Any]]) -> None:
        rows = [
            (
                r["id"],
                r.get("room_id"),
                r.get("kernel_id"),
                r["status"],
                r["created_at"],
                json.dumps(r),
            )
            for r in records
        ]
        self._write(
            lambda db: db.executemany(
                "INSERT OR REPLACE INTO executions (id, room, kernel_id, status, created, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        )

    async def get_execution(self, execution_id: str) -> dict[str, Any] | None:
        def job(db: sqlite3.Connection) -> dict[str, Any] | None:
            row = db.execute("SELECT data FROM executions WHERE id = ?", (execution_id,))
            found = row.fetchone()
            return dict(json.loads(found[0])) if found else None

        return await self._read(job)

    async def list_executions(
        self,
        *,
        room: str | None = None,
        kernel_id: str | None = None,
        statuses: Sequence[str] = (),
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        where: list[str] = []
        values: list[Any] = []
        for column, value in (("room", room), ("kernel_id", kernel_id)):
            if value is not None:
                where.append(f"{column} = ?")
                values.append(value)
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            values.extend(statuses)
        return await self._newest("executions", where, values, limit)

    async def _newest(
        self, table: str, where: list[str], values: list[Any], limit: int
    ) -> list[dict[str, Any]]:
        """The JSON `data` of a table's rows matching all conditions, newest first."""
        query = (
            f"SELECT data FROM {table} WHERE {' AND '.join(where) or '1'}"
            " ORDER BY created DESC, rowid DESC LIMIT ?"
        )

        def job(db: sqlite3.Connection) -> list[dict[str, Any]]:
            return [dict(json.loads(row[0])) for row in db.execute(query, (*values, limit))]

        return await self._read(job)

    async def prune_executions(self, keep: int) -> int:
        def job(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "DELETE FROM executions WHERE status NOT IN ('queued', 'running', 'awaiting_input')"
                " AND id NOT IN (SELECT id FROM executions ORDER BY created DESC LIMIT ?)",
                (keep,),
            )
            return cursor.rowcount

        return self._write(job)

    # --- the event log ---

    async def append_event(
        self, schema_id: str, version: str, timestamp: str, data: dict[str, Any]
    ) -> StoredEvent:
        row = (schema_id, version, timestamp, json.dumps(data))
        cursor = self._write(
            lambda db: db.execute(
                "INSERT INTO events (schema_id, version, timestamp, data) VALUES (?, ?, ?, ?)", row
            )
        )
        return StoredEvent(int(cursor.lastrowid or 0), schema_id, version, timestamp, data)

    async def read_events(
        self, since: int, *, schema_ids: Sequence[str] = (), limit: int = 1000
    ) -> list[StoredEvent]:
        query = "SELECT id, schema_id, version, timestamp, data FROM events WHERE id > ?"
        values: list[Any] = [since]
        if schema_ids:
            query += f" AND schema_id IN ({', '.join('?' * len(schema_ids))})"
            values.extend(schema_ids)

        def job(db: sqlite3.Connection) -> list[StoredEvent]:
            rows = db.execute(query + " ORDER BY id LIMIT ?", (*values, limit))
            return [StoredEvent(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

        return await self._read(job)

    async def last_event_id(self) -> int:
        def job(db: sqlite3.Connection) -> int:
            return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

        return await self._read(job)

    async def prune_events(self, keep: int) -> int:
        def job(db: sqlite3.Connection) -> int:
            top = db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
            return db.execute("DELETE FROM events WHERE id <= ?", (top - keep,)).rowcount

        return self._write(job)

    async def put_event_schema(self, schema: dict[str, Any]) -> None:
        row = (str(schema["$id"]), json.dumps(schema))
        self._write(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO event_schemas (id, schema) VALUES (?, ?)", row
            )
        )

    async def event_schemas(self) -> list[dict[str, Any]]:
        def job(db: sqlite3.Connection) -> list[dict[str, Any]]:
            return [dict(json.loads(r[0])) for r in db.execute("SELECT schema FROM event_schemas")]

        return await self._read(job)

    async def get_cursor(self, name: str) -> int:
        def job(db: sqlite3.Connection) -> int:
            key = (f"cursor:{name}",)
            row = db.execute("SELECT value FROM meta WHERE key = ?", key).fetchone()
            return int(row[0]) if row else 0

        return await self._read(job)

    async def set_cursor(self, name: str, event_id: int) -> None:
        row = (f"cursor:{name}", str(event_id))
        self._write(
            lambda db: db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", row)
        )

    # --- notifications ---

    async def put_notifications(self, notifications: Sequence[dict[str, Any]]) -> None:
        rows = [
            (n["id"], n["recipient"], n["created_at"], 1 if n.get("read") else 0, json.dumps(n))
            for n in notifications
        ]

        def job(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT OR REPLACE INTO notifications (id, recipient, created, read, data)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )

        self._write(job)

    async def list_notifications(
        self,
        recipient: str,
        *,
        unread: bool | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        where, values = ["recipient = ?"], [recipient]
        if unread is not None:
            where.append("read = ?")
            values.append("0" if unread else "1")
        if since is not None:
            where.append("created >= ?")
            values.append(since)
        if until is not None:
            where.append("created < ?")
            values.append(until)
        return await self._newest("notifications", where, values, limit)

    async def get_notification(self, recipient: str, notification_id: str) -> dict[str, Any] | None:
        def job(db: sqlite3.Connection) -> dict[str, Any] | None:
            row = db.execute(
                "SELECT data FROM notifications WHERE id = ? AND recipient = ?",
                (notification_id, recipient),
            ).fetchone()
            return dict(json.loads(row[0])) if row else None

        return await self._read(job)

    async def delete_notification(self, recipient: str, notification_id: str) -> bool:
        def job(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "DELETE FROM notifications WHERE id = ? AND recipient = ?",
                (notification_id, recipient),
            )
            return cursor.rowcount > 0

        return self._write(job)

    # --- permissions ---

    async def get_permissions(self) -> dict[str, dict[str, Any]]:
        def job(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            rows = db.execute("SELECT path, rule FROM permissions").fetchall()
            return {path: json.loads(rule) for path, rule in rows}

        return await self._read(job)

    async def put_permission(self, path: str, rule: dict[str, Any] | None) -> None:
        def job(db: sqlite3.Connection) -> None:
            if rule is None:
                db.execute("DELETE FROM permissions WHERE path = ?", (path,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO permissions (path, rule) VALUES (?, ?)",
                    (path, json.dumps(rule)),
                )

        self._write(job)


class _Changed(Exception):
    """The rows to swap changed since they were read: the compaction is abandoned."""


def _load(db: sqlite3.Connection, name: str) -> StoredDocument | None:
    row = db.execute(
        "SELECT id, saved_seq, saving_seq, file_hash, base FROM documents WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        return None
    rows = db.execute("SELECT seq, data, codec FROM updates WHERE doc = ? ORDER BY seq", (row[0],))
    return StoredDocument(
        updates=[(int(seq), decode_row(bytes(data), codec)) for seq, data, codec in rows],
        saved_seq=row[1],
        saving_seq=row[2],
        file_hash=row[3],
        base=bytes(row[4]) if row[4] is not None else None,
    )
