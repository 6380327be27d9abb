"""The PostgreSQL store: the same tables and meaning as the SQLite store, over asyncpg.

For several replicas of the server behind one load balancer, or a store that must live
off the machine. Every call is a coroutine on a small connection pool; a commit returns once
PostgreSQL says the transaction is durable (its `synchronous_commit`). Merging rows for
compaction is CPU work and runs in a worker thread. `?schema=NAME` in the URL keeps the
tables in a schema of their own (created if missing).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import asyncpg

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
from .compaction import plan

__all__ = ["PostgresStore"]

T = TypeVar("T")

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    saved_seq BIGINT,
    saving_seq BIGINT,
    file_hash TEXT,
    base BYTEA,
    updated DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS updates (
    doc BIGINT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    data BYTEA NOT NULL,
    time DOUBLE PRECISION NOT NULL DEFAULT 0,
    codec INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (doc, seq)
);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    room TEXT,
    kernel_id TEXT,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    seq BIGSERIAL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_room ON executions (room, created);
CREATE TABLE IF NOT EXISTS events (
    id BIGSERIAL PRIMARY KEY,
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
    read BOOLEAN NOT NULL DEFAULT FALSE,
    seq BIGSERIAL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_recipient ON notifications (recipient, created);
CREATE TABLE IF NOT EXISTS permissions (path TEXT PRIMARY KEY, rule TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS forks (id TEXT PRIMARY KEY, root TEXT NOT NULL, info TEXT NOT NULL);
"""
_LOCK = 7_305_514_820  # an advisory lock: two servers starting at once create the schema once
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


class _Changed(Exception):
    """The rows to swap changed since they were read: the compaction is abandoned."""


class PostgresStore(Store):
    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        query = dict(parse_qsl(parsed.query))
        self.schema = query.pop("schema", "")
        self.url = urlunparse(parsed._replace(scheme="postgresql", query=urlencode(query)))
        shown = parsed.hostname or "localhost"
        if parsed.port:
            shown += f":{parsed.port}"
        self._shown = (
            f"postgresql://{parsed.username + '@' if parsed.username else ''}{shown}{parsed.path}"
        )
        self.session_id = ""
        self._pool: asyncpg.Pool | None = None
        self._doc_ids: dict[str, int] = {}

    def location(self) -> str:
        return self._shown + (f"?schema={self.schema}" if self.schema else "")

    def _error(self, exc: BaseException) -> StoreError:
        return StoreError(f"{self.location()}: {type(exc).__name__}: {exc}")

    async def start(self) -> None:
        settings = {"search_path": self.schema} if self.schema else None
        try:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=4, timeout=10, server_settings=settings
            )
            self.session_id = await self._transaction(self._create_schema)
        except StoreError:
            await self.close()
            raise
        except _DRIVER_ERRORS as exc:
            await self.close()
            raise StoreError(
                f"cannot use the PostgreSQL store at {self.location()}: {exc} (is the server "
                "running and the database created?)"
            ) from exc

    async def _create_schema(self, db: asyncpg.Connection) -> str:
        await db.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        if self.schema:
            await db.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        await db.execute(_SCHEMA)
        version = await db.fetchval("SELECT value FROM meta WHERE key = 'schema_version'")
        if version is not None and int(version) != SCHEMA_VERSION:
            raise StoreCorrupt(
                f"{self.location()} has store schema {version}; this version reads {SCHEMA_VERSION}"
            )
        await db.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', $1) ON CONFLICT DO NOTHING",
            str(SCHEMA_VERSION),
        )
        await db.execute(
            "INSERT INTO meta (key, value) VALUES ('store_id', $1) ON CONFLICT DO NOTHING",
            str(uuid.uuid4()),
        )
        return str(await db.fetchval("SELECT value FROM meta WHERE key = 'store_id'"))

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _transaction(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `fn` in one transaction and commit it; driver errors become StoreError."""
        if self._pool is None:
            raise StoreError("the store is not running")
        try:
            async with self._pool.acquire() as db, db.transaction():
                return await fn(db)
        except _DRIVER_ERRORS as exc:
            self._doc_ids.clear()  # ids made in a rolled back transaction are gone
            raise self._error(exc) from exc

    async def _doc_id(self, db: asyncpg.Connection, name: str) -> int:
        """A document's id, made if new. Only an id read back committed is cached: one made
        in this transaction is gone if it rolls back."""
        doc_id = self._doc_ids.get(name)
        if doc_id is not None:
            return doc_id
        found = await db.fetchval("SELECT id FROM documents WHERE name = $1", name)
        if found is not None:
            self._doc_ids[name] = int(found)
            return int(found)
        made = await db.fetchval(
            "INSERT INTO documents (name, updated) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET updated = EXCLUDED.updated RETURNING id",
            name,
            time.time(),
        )
        return int(made)

    # --- documents ---

    async def load(self, name: str) -> StoredDocument | None:
        async def job(db: asyncpg.Connection) -> StoredDocument | None:
            row = await db.fetchrow(
                "SELECT id, saved_seq, saving_seq, file_hash, base FROM documents WHERE name = $1",
                name,
            )
            if row is None:
                return None
            rows = await db.fetch(
                "SELECT seq, data, codec FROM updates WHERE doc = $1 ORDER BY seq", row["id"]
            )
            return StoredDocument(
                updates=[(int(r["seq"]), decode_row(bytes(r["data"]), r["codec"])) for r in rows],
                saved_seq=row["saved_seq"],
                saving_seq=row["saving_seq"],
                file_hash=row["file_hash"],
                base=bytes(row["base"]) if row["base"] is not None else None,
            )

        return await self._transaction(job)

    async def append(self, name: str, seq: int, update: bytes) -> None:
        async def job(db: asyncpg.Connection) -> None:
            await db.execute(
                "INSERT INTO updates (doc, seq, data, time) VALUES ($1, $2, $3, $4)",
                await self._doc_id(db, name),
                seq,
                update,
                time.time(),
            )

        await self._transaction(job)

    async def mark_saving(self, name: str, seq: int) -> None:
        await self._set(name, "saving_seq = $2", seq)

    async def mark_saved(self, name: str, seq: int, file_hash: str) -> None:
        await self._set(
            name, "saved_seq = $2, saving_seq = NULL, file_hash = $3, base = NULL", seq, file_hash
        )

    async def mark_merged(self, name: str, base: bytes, file_hash: str) -> None:
        await self._set(name, "base = $2, file_hash = $3", base, file_hash)

    async def _set(self, name: str, assignments: str, *values: Any) -> None:
        async def job(db: asyncpg.Connection) -> None:
            doc_id = await self._doc_id(db, name)
            await db.execute(
                f"UPDATE documents SET {assignments}, updated = ${len(values) + 2} WHERE id = $1",
                doc_id,
                *values,
                time.time(),
            )

        await self._transaction(job)

    async def history(self, name: str) -> list[HistoryPoint]:
        async def job(db: asyncpg.Connection) -> list[HistoryPoint]:
            rows = await db.fetch(
                "SELECT u.seq, u.time FROM updates u JOIN documents d ON u.doc = d.id"
                " WHERE d.name = $1 ORDER BY u.seq",
                name,
            )
            return [HistoryPoint(int(r["seq"]), float(r["time"])) for r in rows]

        return await self._transaction(job)

    async def compact(self, name: str, retention: Retention, now: float | None = None) -> int:
        moment = time.time() if now is None else now

        async def read(
            db: asyncpg.Connection,
        ) -> tuple[int, list[tuple[tuple[int, int], list[Any]]]]:
            row = await db.fetchrow(
                "SELECT id, saved_seq, saving_seq FROM documents WHERE name = $1", name
            )
            if row is None:
                return 0, []
            rows = await db.fetch(
                "SELECT seq, time FROM updates WHERE doc = $1 ORDER BY seq", row["id"]
            )
            keep = {row["saved_seq"], row["saving_seq"]} - {None}
            runs = plan([(int(r["seq"]), float(r["time"])) for r in rows], keep, retention, moment)
            found = []
            for first, last in runs:
                data = await db.fetch(
                    "SELECT data, codec, time FROM updates WHERE doc = $1 AND seq BETWEEN $2 AND $3"
                    " ORDER BY seq",
                    row["id"],
                    first,
                    last,
                )
                found.append(((first, last), list(data)))
            return int(row["id"]), found

        doc_id, found = await self._transaction(read)
        if not found:
            return 0

        def merge_all() -> list[tuple[tuple[int, int], int, bytes, float, int]]:
            merged = []
            for run, rows in found:
                update = merge([decode_row(bytes(r["data"]), r["codec"]) for r in rows])
                data, codec = encode_row(update)
                merged.append((run, len(rows), data, float(rows[-1]["time"]), codec))
            return merged

        merged = await asyncio.to_thread(merge_all)

        async def swap(db: asyncpg.Connection) -> int:
            removed = 0
            for (first, last), count, data, last_time, codec in merged:
                status = await db.execute(
                    "DELETE FROM updates WHERE doc = $1 AND seq BETWEEN $2 AND $3",
                    doc_id,
                    first,
                    last,
                )
                if int(status.split()[-1]) != count:
                    raise _Changed
                await db.execute(
                    "INSERT INTO updates (doc, seq, data, time, codec) VALUES ($1, $2, $3, $4, $5)",
                    doc_id,
                    last,
                    data,
                    last_time,
                    codec,
                )
                removed += count - 1
            return removed

        try:
            return await self._transaction(swap)
        except _Changed:
            return 0

    async def documents(self) -> list[DocumentInfo]:
        async def job(db: asyncpg.Connection) -> list[DocumentInfo]:
            rows = await db.fetch(
                "SELECT d.name, COUNT(u.seq), COALESCE(SUM(LENGTH(u.data)), 0),"
                " COALESCE(MAX(u.seq), 0), d.saved_seq, d.updated"
                " FROM documents d LEFT JOIN updates u ON u.doc = d.id"
                " GROUP BY d.id ORDER BY d.name"
            )
            return [
                DocumentInfo(r[0], int(r[1]), int(r[2]), int(r[3]), r[4], float(r[5])) for r in rows
            ]

        return await self._transaction(job)

    async def delete_document(self, name: str) -> None:
        async def job(db: asyncpg.Connection) -> None:
            await db.execute("DELETE FROM documents WHERE name = $1", name)

        await self._transaction(job)
        self._doc_ids.pop(name, None)

    async def counts(self) -> dict[str, int]:
        tables = ("events", "executions", "notifications", "permissions", "forks")

        async def job(db: asyncpg.Connection) -> dict[str, int]:
            return {t: int(await db.fetchval(f"SELECT COUNT(*) FROM {t}")) for t in tables}

        return await self._transaction(job)

    async def check_integrity(self) -> list[str]:
        async def job(db: asyncpg.Connection) -> list[str]:
            problems = []
            bad = await db.fetchval("SELECT COUNT(*) FROM updates WHERE seq <= 0")
            if bad:
                problems.append(f"{bad} update rows have a sequence number below 1")
            bad = await db.fetchval("SELECT COUNT(*) FROM updates WHERE codec NOT IN (0, 1)")
            if bad:
                problems.append(f"{bad} update rows have an unknown encoding")
            return problems

        return await self._transaction(job)

    async def size_on_disk(self) -> int | None:
        async def job(db: asyncpg.Connection) -> int:
            total = 0
            for table in ("documents", "updates", "events", "executions", "notifications"):
                total += int(
                    await db.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
                )
            return total

        return await self._transaction(job)

    # --- forks ---

    async def put_fork(self, fork_id: str, root: str, info: dict[str, Any]) -> None:
        async def job(db: asyncpg.Connection) -> None:
            await db.execute(
                "INSERT INTO forks (id, root, info) VALUES ($1, $2, $3)"
                " ON CONFLICT (id) DO UPDATE SET root = EXCLUDED.root, info = EXCLUDED.info",
                fork_id,
                root,
                json.dumps(info),
            )

        await self._transaction(job)

    async def forks(self, root: str | None = None) -> dict[str, dict[str, Any]]:
        async def job(db: asyncpg.Connection) -> dict[str, dict[str, Any]]:
            if root is None:
                rows = await db.fetch("SELECT id, info FROM forks")
            else:
                rows = await db.fetch("SELECT id, info FROM forks WHERE root = $1", root)
            return {r["id"]: json.loads(r["info"]) for r in rows}

        return await self._transaction(job)

    async def delete_fork(self, fork_id: str) -> None:
        async def job(db: asyncpg.Connection) -> None:
            await db.execute("DELETE FROM forks WHERE id = $1", fork_id)

        await self._transaction(job)

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

        async def job(db: asyncpg.Connection) -> None:
            await db.executemany(
                "INSERT INTO executions (id, room, kernel_id, status, created, data)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET"
                " room = EXCLUDED.room, kernel_id = EXCLUDED.kernel_id,"
                " status = EXCLUDED.status, created = EXCLUDED.created, data = EXCLUDED.data",
                rows,
            )

        await self._transaction(job)

    async def get_execution(self, execution_id: str) -> dict[str, Any] | None:
        async def job(db: asyncpg.Connection) -> dict[str, Any] | None:
            found = await db.fetchval("SELECT data FROM executions WHERE id = $1", execution_id)
            return dict(json.loads(found)) if found is not None else None

        return await self._transaction(job)

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
                values.append(value)
                where.append(f"{column} = ${len(values)}")
        if statuses:
            values.append(list(statuses))
            where.append(f"status = ANY(${len(values)})")
        return await self._newest("executions", "seq", where, values, limit)

    async def _newest(
        self, table: str, tiebreak: str, where: list[str], values: list[Any], limit: int
    ) -> list[dict[str, Any]]:
        """The JSON `data` of a table's rows matching all conditions, newest first."""
        query = (
            f"SELECT data FROM {table} WHERE {' AND '.join(where) or 'TRUE'}"
            f" ORDER BY created DESC, {tiebreak} DESC LIMIT ${len(values) + 1}"
        )

        async def job(db: asyncpg.Connection) -> list[dict[str, Any]]:
            return [dict(json.loads(r["data"])) for r in await db.fetch(query, *values, limit)]

        return await self._transaction(job)

    async def prune_executions(self, keep: int) -> int:
        async def job(db: asyncpg.Connection) -> int:
            status = await db.execute(
                "DELETE FROM executions WHERE status NOT IN ('queued', 'running', 'awaiting_input')"
                " AND id NOT IN (SELECT id FROM executions ORDER BY created DESC LIMIT $1)",
                keep,
            )
            return int(status.split()[-1])

        return await self._transaction(job)

    # --- the event log ---

    async def append_event(
        self, schema_id: str, version: str, timestamp: str, data: dict[str, Any]
    ) -> StoredEvent:
        async def job(db: asyncpg.Connection) -> int:
            return int(
                await db.fetchval(
                    "INSERT INTO events (schema_id, version, timestamp, data)"
                    " VALUES ($1, $2, $3, $4) RETURNING id",
                    schema_id,
                    version,
                    timestamp,
                    json.dumps(data),
                )
            )

        return StoredEvent(await self._transaction(job), schema_id, version, timestamp, data)

    async def read_events(
        self, since: int, *, schema_ids: Sequence[str] = (), limit: int = 1000
    ) -> list[StoredEvent]:
        query = "SELECT id, schema_id, version, timestamp, data FROM events WHERE id > $1"
        values: list[Any] = [since]
        if schema_ids:
            values.append(list(schema_ids))
            query += " AND schema_id = ANY($2)"
        query += f" ORDER BY id LIMIT ${len(values) + 1}"

        async def job(db: asyncpg.Connection) -> list[StoredEvent]:
            rows = await db.fetch(query, *values, limit)
            return [StoredEvent(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

        return await self._transaction(job)

    async def last_event_id(self) -> int:
        async def job(db: asyncpg.Connection) -> int:
            return int(await db.fetchval("SELECT COALESCE(MAX(id), 0) FROM events"))

        return await self._transaction(job)

    async def prune_events(self, keep: int) -> int:
        async def job(db: asyncpg.Connection) -> int:
            top = int(await db.fetchval("SELECT COALESCE(MAX(id), 0) FROM events"))
            status = await db.execute("DELETE FROM events WHERE id <= $1", top - keep)
            return int(status.split()[-1])

        return await self._transaction(job)

    async def put_event_schema(self, schema: dict[str, Any]) -> None:
        async def job(db: asyncpg.Connection) -> None:
            await db.execute(
                "INSERT INTO event_schemas (id, schema) VALUES ($1, $2)"
                " ON CONFLICT (id) DO UPDATE SET schema = EXCLUDED.schema",
                str(schema["$id"]),
                json.dumps(schema),
            )

        await self._transaction(job)

    async def event_schemas(self) -> list[dict[str, Any]]:
        async def job(db: asyncpg.Connection) -> list[dict[str, Any]]:
            return [
                dict(json.loads(r[0])) for r in await db.fetch("SELECT schema FROM event_schemas")
            ]

        return await self._transaction(job)

    async def get_cursor(self, name: str) -> int:
        async def job(db: asyncpg.Connection) -> int:
            found = await db.fetchval("SELECT value FROM meta WHERE key = $1", f"cursor:{name}")
            return int(found) if found is not None else 0

        return await self._transaction(job)

    async def set_cursor(self, name: str, event_id: int) -> None:
        async def job(db: asyncpg.Connection) -> None:
            await db.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2)"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                f"cursor:{name}",
                str(event_id),
            )

        await self._transaction(job)

    # --- notifications ---

    async def put_notifications(self, notifications: Sequence[dict[str, Any]]) -> None:
        rows = [
            (n["id"], n["recipient"], n["created_at"], bool(n.get("read")), json.dumps(n))
            for n in notifications
        ]

        async def job(db: asyncpg.Connection) -> None:
            await db.executemany(
                "INSERT INTO notifications (id, recipient, created, read, data)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET"
                " recipient = EXCLUDED.recipient, created = EXCLUDED.created,"
                " read = EXCLUDED.read, data = EXCLUDED.data",
                rows,
            )

        await self._transaction(job)

    async def list_notifications(
        self,
        recipient: str,
        *,
        unread: bool | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        where: list[str] = ["recipient = $1"]
        values: list[Any] = [recipient]
        read = None if unread is None else not unread
        conditions = (("read = ", read), ("created >= ", since), ("created < ", until))
        for condition, value in conditions:
            if value is not None:
                values.append(value)
                where.append(f"{condition}${len(values)}")
        return await self._newest("notifications", "seq", where, values, limit)

    async def get_notification(self, recipient: str, notification_id: str) -> dict[str, Any] | None:
        async def job(db: asyncpg.Connection) -> dict[str, Any] | None:
            found = await db.fetchval(
                "SELECT data FROM notifications WHERE id = $1 AND recipient = $2",
                notification_id,
                recipient,
            )
            return dict(json.loads(found)) if found is not None else None

        return await self._transaction(job)

    async def delete_notification(self, recipient: str, notification_id: str) -> bool:
        async def job(db: asyncpg.Connection) -> bool:
            status = await db.execute(
                "DELETE FROM notifications WHERE id = $1 AND recipient = $2",
                notification_id,
                recipient,
            )
            return int(status.split()[-1]) > 0

        return await self._transaction(job)

    # --- permissions ---

    async def get_permissions(self) -> dict[str, dict[str, Any]]:
        async def job(db: asyncpg.Connection) -> dict[str, dict[str, Any]]:
            rows = await db.fetch("SELECT path, rule FROM permissions")
            return {r["path"]: json.loads(r["rule"]) for r in rows}

        return await self._transaction(job)

    async def put_permission(self, path: str, rule: dict[str, Any] | None) -> None:
        async def job(db: asyncpg.Connection) -> None:
            if rule is None:
                await db.execute("DELETE FROM permissions WHERE path = $1", path)
            else:
                await db.execute(
                    "INSERT INTO permissions (path, rule) VALUES ($1, $2)"
                    " ON CONFLICT (path) DO UPDATE SET rule = EXCLUDED.rule",
                    path,
                    json.dumps(rule),
                )

        await self._transaction(job)
