"""The tables of a store, how their SQL differs between backends, and the schema versions.

Both backends keep the same tables, made from one definition (`TABLES`) through a
`Dialect`: what SQLite and PostgreSQL spell differently (placeholders, upserts, booleans,
lists as parameters, identity columns, blobs). Statements are written once, with `?`
placeholders; a dialect with numbered parameters turns them into `$1`, `$2`...

The schema version is recorded in `meta` (key `schema_version`) on every backend, and the
same steps bring a store of an older version up to date (`setup`), in the transaction that
opens it. SQLite files made before the version was recorded there carry it in their
`PRAGMA user_version`, which stays in step for the releases that read only that.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable, Collection, Generator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from ..errors import StoreCorrupt

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "Dialect",
    "Many",
    "Statement",
    "Steps",
    "new_epoch",
    "setup",
]

SCHEMA_VERSION = 3


class Many(NamedTuple):
    """One statement run for every row of parameters (`executemany`)."""

    query: str
    rows: Sequence[Sequence[Any]]


Statement = tuple[str, Sequence[Any]]
"""A statement (or part of one) and its parameters."""
Step = Statement | Many | Callable[[], Any]
Steps = Generator[Step, Any, Any]
"""Statements run in one transaction or snapshot: each `yield` of a statement gets its rows
(a SELECT, or RETURNING) or the number of rows it changed; a callable is CPU work, run off
the event loop, and gets its result. Backends drive these, so the statements and the logic
between them are written once, for either driver."""


def wants_rows(query: str) -> bool:
    """Whether running `query` gives rows (else the number of rows it changed)."""
    return query.startswith(("SELECT", "PRAGMA")) or " RETURNING " in query


@dataclass(frozen=True)
class Dialect:
    """What one backend's SQL spells its own way."""

    numbered: bool
    """Placeholders are `$1`, `$2`... (else `?`)."""
    integer: str
    serial: str
    """An id the database assigns, growing."""
    log_id: str
    """An id that grows and is never given again, even after the newest rows are deleted."""
    real: str
    blob: str
    sorted_text: str
    """Text compared and sorted in byte order, whatever the locale."""
    boolean: str
    false: str
    cascade: str
    """How a document's update rows go with it."""
    order: str
    """The column that orders rows of one `created` time, newest last (renewed on replace)."""
    order_column: str
    """Its definition, when it is not built in."""
    has_meta: str
    """A query: 1 when the `meta` table exists."""
    legacy_version: str | None = None
    """A query for a schema version recorded before `meta` held it."""
    stamp_version: str | None = None
    """A statement that records the version where the legacy query reads it."""

    def text(self, query: str) -> str:
        """`query` with this dialect's placeholders."""
        return _numbered(query) if self.numbered else query

    def flag(self, value: bool) -> Any:
        return value if self.numbered else int(value)

    def one_of(self, column: str, values: Collection[Any], *, negate: bool = False) -> Statement:
        """`column` among `values` (or not): a condition and its parameters."""
        if self.numbered:
            return (f"{'NOT ' if negate else ''}{column} = ANY(?)", [list(values)])
        places = ", ".join("?" * len(values))
        return (f"{column} {'NOT ' if negate else ''}IN ({places})", list(values))

    def upsert(self, table: str, columns: Sequence[str], key: str, renumber: bool = False) -> str:
        """Insert a row, or replace the one with its `key`; `renumber`: it counts as new."""
        values = ", ".join("?" * len(columns))
        if not self.numbered:  # SQLite: a replaced row gets a new rowid
            return f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({values})"
        assignments = [f"{c} = EXCLUDED.{c}" for c in columns if c != key]
        if renumber:
            assignments.append(f"{self.order} = DEFAULT")
        return (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"
            f" ON CONFLICT ({key}) DO UPDATE SET {', '.join(assignments)}"
        )

    def tables(self) -> list[str]:
        return [s.strip() for s in TABLES.format_map(self.__dict__).split(";") if s.strip()]


@lru_cache(maxsize=256)
def _numbered(query: str) -> str:
    count = iter(range(1, query.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(count)}", query)


TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id {serial},
    name {sorted_text} NOT NULL UNIQUE,
    saved_seq {integer},
    saving_seq {integer},
    file_hash TEXT,
    base {blob},
    updated {real} NOT NULL,
    epoch TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS updates (
    doc {integer} NOT NULL REFERENCES documents(id){cascade},
    seq {integer} NOT NULL,
    data {blob} NOT NULL,
    time {real} NOT NULL DEFAULT 0,
    codec INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (doc, seq)
);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    room TEXT,
    kernel_id TEXT,
    status TEXT NOT NULL,
    created {sorted_text} NOT NULL,{order_column}
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_room ON executions (room, created);
CREATE TABLE IF NOT EXISTS events (
    id {log_id},
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
    created {sorted_text} NOT NULL,
    read {boolean} NOT NULL DEFAULT {false},{order_column}
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_recipient ON notifications (recipient, created);
CREATE TABLE IF NOT EXISTS permissions (path TEXT PRIMARY KEY, rule TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS forks (id TEXT PRIMARY KEY, root TEXT NOT NULL, info TEXT NOT NULL)
"""

TABLE_NAMES = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", TABLES)

MIGRATIONS: dict[int, list[str]] = {
    # Schema 1 had no row times, encodings or forks: its rows count as old, raw updates.
    1: [
        "ALTER TABLE updates ADD COLUMN time {real} NOT NULL DEFAULT 0",
        "ALTER TABLE updates ADD COLUMN codec INTEGER NOT NULL DEFAULT 0",
    ],
    # Schema 2 had no epochs: its documents keep the empty one, so the session ids their
    # clients hold (the store's id alone) stay valid across the upgrade.
    2: ["ALTER TABLE documents ADD COLUMN epoch TEXT NOT NULL DEFAULT ''"],
}
"""The statements that bring a store of each version to the next one."""


def new_epoch() -> str:
    """A document's epoch: set when its `documents` row is made (never reused, unlike an
    `INTEGER PRIMARY KEY`, which SQLite gives again once the newest row is deleted), so
    that a document deleted and made again is told apart from the one before."""
    return secrets.token_hex(6)


def setup(dialect: Dialect, where: str) -> Steps:
    """Make or migrate the tables; returns the store's id. Refuses a newer schema."""
    found = 0
    if (yield (dialect.has_meta, ()))[0][0]:
        rows = yield ("SELECT value FROM meta WHERE key = 'schema_version'", ())
        found = int(rows[0][0]) if rows else 0
    if not found and dialect.legacy_version:
        found = int((yield (dialect.legacy_version, ()))[0][0])
    if found > SCHEMA_VERSION:
        raise StoreCorrupt(
            f"{where} has store schema {found}; this version of jupyter-datastore reads"
            f" schema {SCHEMA_VERSION}"
        )
    for version in range(found or SCHEMA_VERSION, SCHEMA_VERSION):
        for statement in MIGRATIONS.get(version, []):
            yield (statement.format_map(dialect.__dict__), ())
    for statement in dialect.tables():
        yield (statement, ())
    yield (dialect.upsert("meta", ("key", "value"), "key"), ("schema_version", str(SCHEMA_VERSION)))
    if dialect.stamp_version:
        yield (dialect.stamp_version.format(SCHEMA_VERSION), ())
    yield (
        "INSERT INTO meta (key, value) VALUES ('store_id', ?) ON CONFLICT (key) DO NOTHING",
        (str(uuid.uuid4()),),
    )
    return str((yield ("SELECT value FROM meta WHERE key = 'store_id'", ()))[0][0])
