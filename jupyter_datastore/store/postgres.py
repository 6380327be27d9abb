"""The PostgreSQL store: the same tables and statements as the SQLite store, over asyncpg.

For several servers on one store, or a store that must live off the machine. Every call is
a coroutine on a small pool of connections, so nothing waits on the event loop's thread. A
write returns once PostgreSQL has committed it (durable as its `synchronous_commit` says: on
disk, by default); a single statement is its own transaction, so the hot path, `append`, is
one round trip. A read of more than one statement sees one snapshot (REPEATABLE READ), as a
SQLite read transaction does. Merging and decompressing rows is CPU work and runs in a
worker thread. `?schema=NAME` in the URL keeps the tables in a schema of their own (created
if missing), so several stores can share a database.

The tables and statements are those of `schema.py` and `sql.py`; this module owns the
pool, the URL and its secrets, the advisory locks, and the checks of the rows' consistency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlparse, urlunparse

import asyncpg

from ..errors import BadRequest, StoreCorrupt, StoreError
from .schema import SCHEMA_VERSION, TABLE_NAMES, Dialect, Many, Steps, setup, wants_rows
from .sql import SQLStore

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

Connection = Any  # asyncpg.Connection; asyncpg has no type hints

# Text that is compared or sorted (document names, ISO times) uses the "C" collation: byte
# order, as in SQLite, whatever the database's locale.
DIALECT = Dialect(
    numbered=True,
    integer="BIGINT",
    serial="BIGSERIAL PRIMARY KEY",
    log_id="BIGSERIAL PRIMARY KEY",
    real="DOUBLE PRECISION",
    blob="BYTEA",
    sorted_text='TEXT COLLATE "C"',
    boolean="BOOLEAN",
    false="FALSE",
    cascade=" ON DELETE CASCADE",
    order="seq",
    order_column="\n    seq BIGSERIAL,",
    has_meta="SELECT to_regclass('meta') IS NOT NULL",
)
# Advisory locks (per database) are (class, hashtext(schema)): the schema's creation, so
# that two servers starting at once create it once; and the event log's appends, so that
# event ids are committed in the order they are given (a reader resuming after id N must
# never find a smaller id committed later).
_SCHEMA_LOCK = 0x4A445301
_EVENTS_LOCK = 0x4A444501
_LOCK = "SELECT pg_advisory_xact_lock(?, hashtext(?))"
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


def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _affected(status: str) -> int:
    """The row count of a command's status, "DELETE 3" or "INSERT 0 1" (0: "CREATE TABLE")."""
    count = status.rsplit(" ", 1)[-1]
    return int(count) if count.isdigit() else 0


async def _step(db: Connection, query: str, args: Any) -> Any:
    """One statement: its rows, or the number of rows it changed."""
    text = DIALECT.text(query)
    if wants_rows(query):
        return list(await db.fetch(text, *args))
    return _affected(await db.execute(text, *args))


async def _drive(db: Connection, steps: Steps) -> Any:
    """Run the statements `steps` yields on `db`; what it returns."""
    result: Any = None
    try:
        while True:
            step = steps.send(result)
            if isinstance(step, Many):
                await db.executemany(DIALECT.text(step.query), step.rows)
                result = None
            elif callable(step):
                result = await asyncio.to_thread(step)
            else:
                result = await _step(db, *step)
    except StopIteration as done:
        return done.value


class PostgresStore(SQLStore):
    dialect = DIALECT

    def __init__(self, url: str) -> None:
        super().__init__()
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
        self._pool: Any = None  # asyncpg.Pool

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
                await _step(db, _LOCK, (_SCHEMA_LOCK, self.schema))
                if self.schema:
                    await db.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(self.schema)}")
                self.session_id = await _drive(db, setup(DIALECT, self._location))
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

    async def _write(self, steps: Steps) -> Any:
        async with self._connection() as db, db.transaction():
            return await _drive(db, steps)

    async def _read(self, steps: Steps) -> Any:
        async with (
            self._connection() as db,
            db.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await _drive(db, steps)

    async def _query(self, query: str, *args: Any) -> list[Any]:
        async with self._connection() as db:
            return list(await _step(db, query, args))

    async def _run(self, query: str, *args: Any) -> Any:
        """One statement, its own transaction: committed when this returns."""
        async with self._connection() as db:
            return await _step(db, query, args)

    def _gone(self, exc: StoreError) -> bool:
        return isinstance(exc.__cause__, asyncpg.ForeignKeyViolationError)

    def _event_order(self) -> Steps:
        yield (_LOCK, (_EVENTS_LOCK, self.schema))  # ids commit in order

    # --- what only PostgreSQL checks and tells ---

    async def check_integrity(self) -> list[str]:
        """The rows' own consistency; PostgreSQL checks its pages itself (and says so in an
        error when it finds one damaged, which becomes `StoreCorrupt`)."""
        [row] = await self._query(
            "SELECT (SELECT value FROM meta WHERE key = 'schema_version'),"
            " (SELECT COUNT(*) FROM meta WHERE key = 'store_id'),"
            " (SELECT COUNT(*) FROM updates u"
            "  WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.id = u.doc)),"
            " (SELECT COUNT(*) FROM updates WHERE seq < 1),"
            " (SELECT COUNT(*) FROM updates WHERE codec NOT IN (0, 1)),"
            " (SELECT string_agg(i.indexrelid::regclass::text, ', ') FROM pg_index i"
            "  WHERE NOT i.indisvalid AND i.indrelid = ANY("
            "   SELECT to_regclass(t) FROM unnest(?::text[]) t))",
            TABLE_NAMES,
        )
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
        [(total,)] = await self._query(
            "SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(t))), 0)"
            " FROM unnest(?::text[]) t",
            TABLE_NAMES,
        )
        return int(total)
