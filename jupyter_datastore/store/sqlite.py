"""The SQLite store: writes on the event loop's thread, checkpoints and big reads off it.

In WAL mode with `synchronous=NORMAL` a commit is a write into the WAL file, with no fsync:
tens of microseconds, less than handing the work to another thread and back. A committed
transaction survives the process being killed (not a power cut; `durability="full"` adds an
fsync to every commit, on the event loop). The fsyncs of WAL checkpoints happen in a
background thread with its own connection, and reads run in a worker thread with a
connection of their own, so neither blocks the event loop. Pages that compaction frees go
back to the disk (incremental vacuum).

The tables and statements are those of `schema.py` and `sql.py`; this module owns the
file, its connections and its threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from typing import Any

from ..errors import StoreCorrupt, StoreError
from .schema import Dialect, Many, Steps, setup, wants_rows
from .sql import SQLStore

__all__ = ["SQLiteStore"]

log = logging.getLogger(__name__)

DIALECT = Dialect(
    numbered=False,
    integer="INTEGER",
    serial="INTEGER PRIMARY KEY",
    log_id="INTEGER PRIMARY KEY AUTOINCREMENT",
    real="REAL",
    blob="BLOB",
    sorted_text="TEXT",
    boolean="INTEGER",
    false="0",
    cascade="",
    order="rowid",
    order_column="",
    has_meta="SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
    legacy_version="PRAGMA user_version",
    stamp_version="PRAGMA user_version={}",
)
_CHECKPOINT_EVERY = 1.0  # seconds, while there are new writes
_VACUUM_PAGES = 8192  # free pages given back after one compaction, at most (8 MB)
# What SQLite says when the file is not a sound database (as opposed to a busy or full one).
_CORRUPT = ("not a database", "malformed", "corrupt", "encrypted")


def _store_error(exc: sqlite3.Error, path: str) -> StoreError:
    """An SQLite error as the store's own: damaged data, or a failure worth retrying."""
    text = str(exc)
    if any(word in text for word in _CORRUPT):
        return StoreCorrupt(f"{path}: {text} (run `jupyter-datastore store verify`)")
    return StoreError(f"{path}: {text}")


def _drive(db: sqlite3.Connection, steps: Steps) -> Any:
    """Run the statements `steps` yields on `db`; what it returns."""
    result: Any = None
    try:
        while True:
            step = steps.send(result)
            if isinstance(step, Many):
                result = db.executemany(step.query, step.rows).rowcount
            elif callable(step):
                result = step()  # in a worker thread already, or a store in memory
            else:
                cursor = db.execute(*step)
                result = cursor.fetchall() if wants_rows(step[0]) else cursor.rowcount
    except StopIteration as done:
        return done.value


class SQLiteStore(SQLStore):
    dialect = DIALECT

    def __init__(self, path: str, *, durability: str = "normal") -> None:
        super().__init__()
        self.path = path
        self.durability = durability
        self._db: sqlite3.Connection | None = None
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
            self._db = self._connect(writer=True)
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path) from exc
        try:
            # a migration happens whole or not at all
            self.session_id = self._transaction(setup(DIALECT, self.path))
        except BaseException:
            self._db.close()
            self._db = None
            raise
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
                try:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:  # a full disk: the log is applied at next open
                    log.warning("cannot checkpoint %s at close: %s", self.path, exc)
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

    def _writer(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the store is not running")
        return self._db

    def _transaction(self, steps: Steps) -> Any:
        """Drive `steps` in one transaction on the writer connection, and commit it."""
        db = self._writer()
        try:
            db.execute("BEGIN IMMEDIATE")
            result = _drive(db, steps)
            db.execute("COMMIT")
        except BaseException as exc:
            self._doc_ids.clear()  # a document may have gone meanwhile
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _store_error(exc, self.path) from exc
            raise
        self._writes += 1
        return result

    async def _write(self, steps: Steps) -> Any:
        return self._transaction(steps)

    async def _run(self, query: str, *args: Any) -> Any:
        """One statement on the writer connection, committed on its own: the hot path."""
        db = self._writer()
        try:
            cursor = db.execute(query, args)
            result = cursor.fetchall() if wants_rows(query) else cursor.rowcount
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path) from exc
        self._writes += 1
        return result

    async def _read(self, steps: Steps) -> Any:
        """Run reads in a worker thread with their own connection (WAL lets them go on
        alongside the writes), in one read transaction."""
        if self._in_memory:
            return _drive(self._writer(), steps)

        def job() -> Any:
            try:
                db = self._connect(writer=False)
                try:
                    db.execute("BEGIN")
                    return _drive(db, steps)
                finally:
                    db.close()
            except sqlite3.Error as exc:
                raise _store_error(exc, self.path) from exc

        return await asyncio.to_thread(job)

    def _compacted(self) -> None:
        """Give the pages compaction freed back to the file system, a bounded number at a
        time (a store made before auto_vacuum was set keeps them for reuse instead)."""
        if self._db is not None and not self._in_memory:
            try:
                # run to the end: a plain execute frees one page per step of the statement
                self._db.executescript(f"PRAGMA incremental_vacuum({_VACUUM_PAGES});")
            except sqlite3.Error as exc:
                log.warning("cannot release free pages of %s: %s", self.path, exc)

    async def check_integrity(self) -> list[str]:
        found = [str(row[0]) for row in await self._query("PRAGMA integrity_check")]
        return [] if found == ["ok"] else found

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
