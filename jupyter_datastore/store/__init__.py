"""Durable storage of document update logs. `open_store` picks the backend from a URL.

`base.py` says what a store keeps and the interface; `compaction.py` which rows merge;
`schema.py` the tables, the dialects and the schema versions; `sql.py` every operation,
written once in SQL; `sqlite.py` and `postgres.py` what only each backend has;
`maintenance.py` stats, compaction and checks of a whole store, from outside a server.
"""

from __future__ import annotations

from urllib.parse import urlparse

from ..errors import BadRequest
from .base import Store, StoredDocument
from .sqlite import SQLiteStore

__all__ = ["SQLiteStore", "Store", "StoredDocument", "open_store"]


def open_store(url: str) -> Store:
    """`sqlite:///abs/path.db`, `sqlite:relative.db`, `sqlite://:memory:`, a plain file path,
    or `postgresql://user@host:port/database[?schema=NAME]`."""
    parsed = urlparse(url)
    if parsed.scheme in ("postgresql", "postgres"):
        try:
            from .postgres import PostgresStore
        except ModuleNotFoundError as exc:
            if exc.name != "asyncpg":
                raise
            raise BadRequest(
                "a PostgreSQL store needs asyncpg: pip install 'jupyter-datastore[postgresql]'"
            ) from exc
        return PostgresStore(url)
    if parsed.scheme in ("", "file"):
        return SQLiteStore(url if parsed.scheme == "" else parsed.path)
    if parsed.scheme == "sqlite":
        path = (parsed.netloc + parsed.path) if parsed.netloc == ":memory:" else parsed.path
        return SQLiteStore(path or parsed.netloc)
    raise BadRequest(
        f"unsupported store URL scheme {parsed.scheme!r} (use sqlite:///path or postgresql://...)"
    )
