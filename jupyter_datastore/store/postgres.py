"""The PostgreSQL store: the same tables and meaning as the SQLite store, over asyncpg.

For several servers on one store, or a store that must live off the machine. Every call is
a coroutine on a small pool of connections, so nothing waits on the event loop's thread. A
write returns once PostgreSQL has committed it (durable as its `synchronous_commit` says: on
disk, by default); a single statement is its own transaction, so the hot path, `append`, is
one round trip. A read of more than one statement sees one snapshot (REPEATABLE READ), as a
SQLite read transaction does. Merging and decompressing rows is CPU work and runs in a
worker thread. `?schema=NAME` in the URL keeps the tables in a schema of their own (created
if missing), so several stores can share a database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlparse, urlunparse

import asyncpg

from ..errors import BadRequest, StoreCorrupt, StoreError
from .base import (
    RAW,
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

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Connection = Any  # asyncpg.Connection; asyncpg has no type hints

SCHEMA_VERSION = 2
# Text that is compared or sorted (document names, ISO times) uses the "C" collation: byte
# order, as in SQLite, whatever the database's locale.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id BIGSERIAL PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE,
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
    created TEXT COLLATE "C" NOT NULL,
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
    created TEXT COLLATE "C" NOT NULL,
    read BOOLEAN NOT NULL DEFAULT FALSE,
    seq BIGSERIAL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_recipient ON notifications (recipient, created);
CREATE TABLE IF NOT EXISTS permissions (path TEXT PRIMARY KEY, rule TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS forks (id TEXT PRIMARY KEY, root TEXT NOT NULL, info TEXT NOT NULL);
"""
_TABLES = (
    "meta",
    "documents",
    "updates",
    "executions",
    "events",
    "event_schemas",
    "notifications",
    "permissions",
    "forks",
)
_RECORDS = ("events", "executions", "notifications", "permissions", "forks")
# Advisory locks (per database) are (class, hashtext(schema)): the schema's creation, so
# that two servers starting at once create it once; and the event log's appends, so that
# event ids are committed in the order they are given (a reader resuming after id N must
# never find a smaller id committed later).
_SCHEMA_LOCK = 0x4A445301
_EVENTS_LOCK = 0x4A444501
_LOCK = "SELECT pg_advisory_xact_lock($1, hashtext($2))"
_APPEND = "INSERT INTO updates (doc, seq, data, time) VALUES ($1, $2, $3, $4)"
_POOL_MIN, _POOL_MAX = 1, 4
_CONNECT_TIMEOUT = 10.0  # seconds
_COMMAND_TIMEOUT = 60.0  # seconds: a lost server is a StoreError, not a room that hangs
_CLOSE_TIMEOUT = 10.0  # seconds for calls under way to finish, then connections are cut
_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    asyncio.TimeoutError,
)
# A URL that asyncpg cannot use (ClientConfigurationError is a ValueError), or the above.
_START_ERRORS: tuple[type[BaseException], ...] = (*_DRIVER_ERRORS, ValueError)
# What PostgreSQL says when it finds its own pages damaged (as opposed to a lost server).
_CORRUPT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataCorruptedError,
    asyncpg.exceptions.IndexCorruptedError,
)


class _Changed(Exception):
    """The rows to swap changed since they were read: the compaction is abandoned."""


def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _affected(status: str) -> int:
    """The row count of a command's status, "DELETE 3" or "INSERT 0 1"."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresStore(Store):
    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        query = dict(parse_qsl(parsed.query))
        self.schema = query.pop("schema", "")
        user = f"{parsed.username}@" if parsed.username else ""
        server = parsed.netloc.rsplit("@", 1)[-1]
        schema = f"?schema={self.schema}" if self.schema else ""
        self._location = f"postgresql://{user}{server}{parsed.path}{schema}"
        self._secrets = {parsed.password, unquote(parsed.password or ""), query.get("password")}
        self._secrets -= {None, ""}
        try:
            parsed.port  # noqa: B018 (validates it)
        except ValueError as exc:
            raise BadRequest(f"not a PostgreSQL URL: {self._location}: {exc}") from exc
        self._dsn = urlunparse(parsed._replace(scheme="postgresql", query=urlencode(query)))
        self.session_id = ""
        self._pool: Any = None  # asyncpg.Pool
        self._doc_ids: dict[str, int] = {}
        """Ids of documents known committed; a statement that finds one gone drops them."""

    def location(self) -> str:
        return self._location

    def _text(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(str(secret), "***")
        return text

    def _error(self, exc: BaseException) -> StoreError:
        """A driver's error as the store's own, naming the store (never its password)."""
        # A transaction that cannot roll back on a lost connection hides why it was lost.
        while isinstance(exc, asyncpg.InterfaceError) and isinstance(
            exc.__context__, _DRIVER_ERRORS
        ):
            exc = exc.__context__
        detail = str(exc) or "no details"
        text = self._text(f"{self._location}: {type(exc).__name__}: {detail}")
        if isinstance(exc, _CORRUPT_ERRORS):
            return StoreCorrupt(f"{text} (run `jupyter-datastore store verify`)")
        return StoreError(text)

    # --- running ---

    async def start(self) -> None:
        settings = {"application_name": "jupyter-datastore"}
        if self.schema:
            settings["search_path"] = _ident(self.schema)
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=_POOL_MIN,
                max_size=_POOL_MAX,
                timeout=_CONNECT_TIMEOUT,
                command_timeout=_COMMAND_TIMEOUT,
                server_settings=settings,
            )
            async with self._pool.acquire() as db, db.transaction():
                self.session_id = await self._create_schema(db)
        except _START_ERRORS as exc:
            await self.close()
            detail = self._text(f"{type(exc).__name__}: {exc}")
            raise StoreError(
                f"cannot use the PostgreSQL store at {self._location}: {detail} (is the server"
                " running, the database created and the user allowed in?)"
            ) from exc
        except BaseException:
            await self.close()
            raise

    async def _create_schema(self, db: Connection) -> str:
        """The tables, made if missing, and the store's id; refuses a schema it cannot read."""
        await db.execute(_LOCK, _SCHEMA_LOCK, self.schema)
        if self.schema:
            await db.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(self.schema)}")
        if await db.fetchval("SELECT to_regclass('meta')") is not None:
            found = await db.fetchval("SELECT value FROM meta WHERE key = 'schema_version'")
            if found is not None and found != str(SCHEMA_VERSION):
                raise StoreCorrupt(
                    f"{self._location} has store schema {found}; this version of"
                    f" jupyter-datastore reads schema {SCHEMA_VERSION}"
                )
        await db.execute(_SCHEMA)
        await db.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', $1), ('store_id', $2)"
            " ON CONFLICT (key) DO NOTHING",
            str(SCHEMA_VERSION),
            str(uuid.uuid4()),
        )
        return str(await db.fetchval("SELECT value FROM meta WHERE key = 'store_id'"))

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._doc_ids.clear()
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT)
        except _DRIVER_ERRORS as exc:  # (a timeout too) the connections are cut instead
            log.warning("closing the store at %s: %s", self._location, self._error(exc).detail)
            pool.terminate()

    # --- running statements: every driver error becomes a StoreError ---

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        pool = self._pool
        if pool is None:
            raise StoreError(f"{self._location}: the store is not running")
        try:
            async with pool.acquire() as db:
                yield db
        except _DRIVER_ERRORS as exc:
            self._doc_ids.clear()  # a document may have gone, or its id never committed
            raise self._error(exc) from exc

    async def _write(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """Run `fn` in one transaction and commit it."""
        async with self._connection() as db, db.transaction():
            return await fn(db)

    async def _snapshot(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """Run reads that must agree with each other in one read-only snapshot."""
        async with (
            self._connection() as db,
            db.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await fn(db)

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        async with self._connection() as db:
            return list(await db.fetch(query, *args))

    async def _fetchval(self, query: str, *args: Any) -> Any:
        async with self._connection() as db:
            return await db.fetchval(query, *args)

    async def _execute(self, query: str, *args: Any) -> str:
        """One statement, its own transaction: committed when this returns. Its status."""
        async with self._connection() as db:
            return str(await db.execute(query, *args))

    async def _doc_id(self, db: Connection, name: str) -> int:
        """A document's id, its row made if new (by whichever server comes first)."""
        cached = self._doc_ids.get(name)
        if cached is not None:
            return cached
        found = await db.fetchval("SELECT id FROM documents WHERE name = $1", name)
        if found is None:
            found = await db.fetchval(
                "INSERT INTO documents (name, updated) VALUES ($1, $2)"
                " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                name,
                time.time(),
            )
        return int(found)

    # --- documents ---

    async def load(self, name: str) -> StoredDocument | None:
        async def job(db: Connection) -> tuple[Any, list[Any]]:
            doc = await db.fetchrow(
                "SELECT id, saved_seq, saving_seq, file_hash, base FROM documents WHERE name = $1",
                name,
            )
            if doc is None:
                return None, []
            rows = await db.fetch(
                "SELECT seq, data, codec FROM updates WHERE doc = $1 ORDER BY seq", doc["id"]
            )
            return doc, list(rows)

        doc, rows = await self._snapshot(job)
        if doc is None:
            return None

        def decode() -> list[tuple[int, bytes]]:
            return [(int(r["seq"]), decode_row(bytes(r["data"]), r["codec"])) for r in rows]

        compressed = any(r["codec"] != RAW for r in rows)
        return StoredDocument(
            updates=await asyncio.to_thread(decode) if compressed else decode(),
            saved_seq=doc["saved_seq"],
            saving_seq=doc["saving_seq"],
            file_hash=doc["file_hash"],
            base=bytes(doc["base"]) if doc["base"] is not None else None,
        )

    async def append(self, name: str, seq: int, update: bytes) -> None:
        now = time.time()
        doc_id = self._doc_ids.get(name)
        if doc_id is not None:
            # The hot path: one INSERT, committed on its own.
            try:
                await self._execute(_APPEND, doc_id, seq, update, now)
                return
            except StoreError as exc:
                if not isinstance(exc.__cause__, asyncpg.ForeignKeyViolationError):
                    raise
                # The document was deleted meanwhile (by another server): it starts over.

        async def job(db: Connection) -> int:
            made = await self._doc_id(db, name)
            await db.execute(_APPEND, made, seq, update, now)
            return made

        self._doc_ids[name] = await self._write(job)

    async def mark_saving(self, name: str, seq: int) -> None:
        await self._set(name, saving_seq=seq)

    async def mark_saved(self, name: str, seq: int, file_hash: str) -> None:
        await self._set(name, saved_seq=seq, saving_seq=None, file_hash=file_hash, base=None)

    async def mark_merged(self, name: str, base: bytes, file_hash: str) -> None:
        await self._set(name, base=base, file_hash=file_hash)

    async def _set(self, name: str, **columns: Any) -> None:
        """Set columns of a document's row, made if new: one statement."""
        names = ["name", "updated", *columns]
        values = [name, time.time(), *columns.values()]
        places = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        assignments = ", ".join(f"{column} = EXCLUDED.{column}" for column in names[1:])
        doc_id = await self._fetchval(
            f"INSERT INTO documents ({', '.join(names)}) VALUES ({places})"
            f" ON CONFLICT (name) DO UPDATE SET {assignments} RETURNING id",
            *values,
        )
        self._doc_ids[name] = int(doc_id)

    async def history(self, name: str) -> list[HistoryPoint]:
        rows = await self._fetch(
            "SELECT u.seq, u.time FROM updates u JOIN documents d ON u.doc = d.id"
            " WHERE d.name = $1 ORDER BY u.seq",
            name,
        )
        return [HistoryPoint(int(r["seq"]), float(r["time"])) for r in rows]

    async def compact(self, name: str, retention: Retention, now: float | None = None) -> int:
        """Plan and read in one snapshot, merge in a worker thread, then swap the rows in one
        transaction that gives up if any of them changed meanwhile."""
        moment = time.time() if now is None else now

        async def read(db: Connection) -> tuple[int, list[tuple[Run, list[Any]]]]:
            doc = await db.fetchrow(
                "SELECT id, saved_seq, saving_seq FROM documents WHERE name = $1", name
            )
            if doc is None:
                return 0, []
            found = await db.fetch(
                "SELECT seq, time FROM updates WHERE doc = $1 ORDER BY seq", doc["id"]
            )
            keep = {doc["saved_seq"], doc["saving_seq"]} - {None}
            rows = [(int(r["seq"]), float(r["time"])) for r in found]
            runs = await asyncio.to_thread(plan, rows, keep, retention, moment)
            if not runs:
                return 0, []
            # The rows of every run, each with its run's number, in one statement.
            data = await db.fetch(
                "SELECT r.n, u.data, u.codec, u.time"
                " FROM unnest($2::bigint[], $3::bigint[]) WITH ORDINALITY AS r(first, last, n)"
                " JOIN updates u ON u.doc = $1 AND u.seq BETWEEN r.first AND r.last"
                " ORDER BY u.seq",
                doc["id"],
                [first for first, _ in runs],
                [last for _, last in runs],
            )
            grouped: list[list[Any]] = [[] for _ in runs]
            for row in data:
                grouped[row["n"] - 1].append(row)
            return int(doc["id"]), list(zip(runs, grouped, strict=True))

        doc_id, found = await self._snapshot(read)
        if not found:
            return 0

        def merge_all() -> list[tuple[Run, int, bytes, float, int]]:
            merged = []
            for run, rows in found:
                update = merge([decode_row(bytes(r["data"]), r["codec"]) for r in rows])
                data, codec = encode_row(update)
                merged.append((run, len(rows), data, float(rows[-1]["time"]), codec))
            return merged

        merged = await asyncio.to_thread(merge_all)

        async def swap(db: Connection) -> int:
            removed = 0
            for (first, last), count, data, last_time, codec in merged:
                status = await db.execute(
                    "DELETE FROM updates WHERE doc = $1 AND seq BETWEEN $2 AND $3",
                    doc_id,
                    first,
                    last,
                )
                if _affected(status) != count:  # compacted meanwhile by someone else
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
            return await self._write(swap)
        except _Changed:
            return 0

    async def documents(self) -> list[DocumentInfo]:
        rows = await self._fetch(
            "SELECT d.name, COUNT(u.seq), COALESCE(SUM(LENGTH(u.data)), 0),"
            " COALESCE(MAX(u.seq), 0), d.saved_seq, d.updated"
            " FROM documents d LEFT JOIN updates u ON u.doc = d.id"
            " GROUP BY d.id ORDER BY d.name"
        )
        return [
            DocumentInfo(r[0], int(r[1]), int(r[2]), int(r[3]), r[4], float(r[5])) for r in rows
        ]

    async def delete_document(self, name: str) -> None:
        await self._execute("DELETE FROM documents WHERE name = $1", name)  # rows cascade
        self._doc_ids.pop(name, None)

    async def counts(self) -> dict[str, int]:
        row = await self._fetch(
            "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {t})" for t in _RECORDS)
        )
        return {table: int(count) for table, count in zip(_RECORDS, row[0], strict=True)}

    async def check_integrity(self) -> list[str]:
        """The rows' own consistency; PostgreSQL checks its pages itself (and says so in an
        error when it finds one damaged, which becomes `StoreCorrupt`)."""
        row = (
            await self._fetch(
                "SELECT (SELECT value FROM meta WHERE key = 'schema_version'),"
                " (SELECT COUNT(*) FROM meta WHERE key = 'store_id'),"
                " (SELECT COUNT(*) FROM updates u"
                "  WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.id = u.doc)),"
                " (SELECT COUNT(*) FROM updates WHERE seq < 1),"
                " (SELECT COUNT(*) FROM updates WHERE codec NOT IN (0, 1)),"
                " (SELECT string_agg(i.indexrelid::regclass::text, ', ') FROM pg_index i"
                "  WHERE NOT i.indisvalid AND i.indrelid = ANY("
                "   SELECT to_regclass(t) FROM unnest($1::text[]) t))",
                list(_TABLES),
            )
        )[0]
        version, ids, orphans, unnumbered, unknown, invalid = row
        problems = []
        if version != str(SCHEMA_VERSION):
            problems.append(f"the schema version recorded is {version}, not {SCHEMA_VERSION}")
        if ids != 1:
            problems.append("the store has no id (meta 'store_id')")
        if orphans:
            problems.append(f"{orphans} update rows belong to no document")
        if unnumbered:
            problems.append(f"{unnumbered} update rows have a sequence number below 1")
        if unknown:
            problems.append(f"{unknown} update rows have an unknown encoding")
        if invalid:
            problems.append(f"invalid indexes (rebuild them with REINDEX): {invalid}")
        return problems

    async def size_on_disk(self) -> int | None:
        """The bytes of our tables with their indexes and TOAST (not the whole database)."""
        total = await self._fetchval(
            "SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(t))), 0)"
            " FROM unnest($1::text[]) t",
            list(_TABLES),
        )
        return int(total)

    # --- forks ---

    async def put_fork(self, fork_id: str, root: str, info: dict[str, Any]) -> None:
        await self._execute(
            "INSERT INTO forks (id, root, info) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO UPDATE SET root = EXCLUDED.root, info = EXCLUDED.info",
            fork_id,
            root,
            json.dumps(info),
        )

    async def forks(self, root: str | None = None) -> dict[str, dict[str, Any]]:
        if root is None:
            rows = await self._fetch("SELECT id, info FROM forks")
        else:
            rows = await self._fetch("SELECT id, info FROM forks WHERE root = $1", root)
        return {r["id"]: json.loads(r["info"]) for r in rows}

    async def delete_fork(self, fork_id: str) -> None:
        await self._execute("DELETE FROM forks WHERE id = $1", fork_id)

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

        async def job(db: Connection) -> None:
            # A replaced record counts as the newest of its `created` (SQLite's new rowid).
            await db.executemany(
                "INSERT INTO executions (id, room, kernel_id, status, created, data)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET"
                " room = EXCLUDED.room, kernel_id = EXCLUDED.kernel_id,"
                " status = EXCLUDED.status, created = EXCLUDED.created, data = EXCLUDED.data,"
                " seq = DEFAULT",
                rows,
            )

        await self._write(job)

    async def get_execution(self, execution_id: str) -> dict[str, Any] | None:
        found = await self._fetchval("SELECT data FROM executions WHERE id = $1", execution_id)
        return dict(json.loads(found)) if found is not None else None

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
        return await self._newest("executions", where, values, limit)

    async def _newest(
        self, table: str, where: list[str], values: list[Any], limit: int
    ) -> list[dict[str, Any]]:
        """The JSON `data` of a table's rows matching all conditions, newest first."""
        rows = await self._fetch(
            f"SELECT data FROM {table} WHERE {' AND '.join(where) or 'TRUE'}"
            f" ORDER BY created DESC, seq DESC LIMIT ${len(values) + 1}",
            *values,
            limit,
        )
        return [dict(json.loads(r["data"])) for r in rows]

    async def prune_executions(self, keep: int) -> int:
        status = await self._execute(
            "DELETE FROM executions WHERE status NOT IN ('queued', 'running', 'awaiting_input')"
            " AND id NOT IN (SELECT id FROM executions ORDER BY created DESC LIMIT $1)",
            keep,
        )
        return _affected(status)

    # --- the event log ---

    async def append_event(
        self, schema_id: str, version: str, timestamp: str, data: dict[str, Any]
    ) -> StoredEvent:
        async def job(db: Connection) -> int:
            await db.execute(_LOCK, _EVENTS_LOCK, self.schema)  # ids commit in order
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

        return StoredEvent(await self._write(job), schema_id, version, timestamp, data)

    async def read_events(
        self, since: int, *, schema_ids: Sequence[str] = (), limit: int = 1000
    ) -> list[StoredEvent]:
        query = "SELECT id, schema_id, version, timestamp, data FROM events WHERE id > $1"
        values: list[Any] = [since]
        if schema_ids:
            values.append(list(schema_ids))
            query += " AND schema_id = ANY($2)"
        rows = await self._fetch(query + f" ORDER BY id LIMIT ${len(values) + 1}", *values, limit)
        return [StoredEvent(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    async def last_event_id(self) -> int:
        return int(await self._fetchval("SELECT COALESCE(MAX(id), 0) FROM events"))

    async def prune_events(self, keep: int) -> int:
        status = await self._execute(
            "DELETE FROM events WHERE id <= (SELECT COALESCE(MAX(id), 0) FROM events) - $1", keep
        )
        return _affected(status)

    async def put_event_schema(self, schema: dict[str, Any]) -> None:
        await self._execute(
            "INSERT INTO event_schemas (id, schema) VALUES ($1, $2)"
            " ON CONFLICT (id) DO UPDATE SET schema = EXCLUDED.schema",
            str(schema["$id"]),
            json.dumps(schema),
        )

    async def event_schemas(self) -> list[dict[str, Any]]:
        rows = await self._fetch("SELECT schema FROM event_schemas")
        return [dict(json.loads(r[0])) for r in rows]

    async def get_cursor(self, name: str) -> int:
        found = await self._fetchval("SELECT value FROM meta WHERE key = $1", f"cursor:{name}")
        return int(found) if found is not None else 0

    async def set_cursor(self, name: str, event_id: int) -> None:
        await self._execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            f"cursor:{name}",
            str(event_id),
        )

    # --- notifications ---

    async def put_notifications(self, notifications: Sequence[dict[str, Any]]) -> None:
        rows = [
            (n["id"], n["recipient"], n["created_at"], bool(n.get("read")), json.dumps(n))
            for n in notifications
        ]

        async def job(db: Connection) -> None:
            await db.executemany(
                "INSERT INTO notifications (id, recipient, created, read, data)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET"
                " recipient = EXCLUDED.recipient, created = EXCLUDED.created,"
                " read = EXCLUDED.read, data = EXCLUDED.data, seq = DEFAULT",
                rows,
            )

        await self._write(job)

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
        for condition, value in (("read =", read), ("created >=", since), ("created <", until)):
            if value is not None:
                values.append(value)
                where.append(f"{condition} ${len(values)}")
        return await self._newest("notifications", where, values, limit)

    async def get_notification(self, recipient: str, notification_id: str) -> dict[str, Any] | None:
        found = await self._fetchval(
            "SELECT data FROM notifications WHERE id = $1 AND recipient = $2",
            notification_id,
            recipient,
        )
        return dict(json.loads(found)) if found is not None else None

    async def delete_notification(self, recipient: str, notification_id: str) -> bool:
        status = await self._execute(
            "DELETE FROM notifications WHERE id = $1 AND recipient = $2",
            notification_id,
            recipient,
        )
        return _affected(status) > 0

    # --- permissions ---

    async def get_permissions(self) -> dict[str, dict[str, Any]]:
        rows = await self._fetch("SELECT path, rule FROM permissions")
        return {r["path"]: json.loads(r["rule"]) for r in rows}

    async def put_permission(self, path: str, rule: dict[str, Any] | None) -> None:
        if rule is None:
            await self._execute("DELETE FROM permissions WHERE path = $1", path)
        else:
            await self._execute(
                "INSERT INTO permissions (path, rule) VALUES ($1, $2)"
                " ON CONFLICT (path) DO UPDATE SET rule = EXCLUDED.rule",
                path,
                json.dumps(rule),
            )
