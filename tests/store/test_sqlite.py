"""What only the SQLite store has: its file, its schema versions, its URLs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pycrdt import Doc, Text

from jupyter_datastore.errors import BadRequest, StoreCorrupt
from jupyter_datastore.store import SQLiteStore, open_store
from jupyter_datastore.store.base import Retention


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreCorrupt, match=r"not a database.*store verify"):
        await SQLiteStore(str(path)).start()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StoreCorrupt, match="schema 99"):
        await SQLiteStore(str(path)).start()


async def test_the_schema_version_is_kept_in_meta_as_on_every_backend(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(str(path))
    await store.start()
    await store.close()
    with sqlite3.connect(path) as db:
        found = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert found == ("3",)
        assert db.execute("PRAGMA user_version").fetchone() == (3,)  # for earlier releases
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(StoreCorrupt, match=r"has store schema 99; this version .* reads schema 3"):
        await SQLiteStore(str(path)).start()


async def test_a_store_of_schema_1_is_migrated_and_keeps_its_documents(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    doc: Doc = Doc()
    doc.get("t", type=Text).insert(0, "kept")
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE documents (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
            saved_seq INTEGER, saving_seq INTEGER, file_hash TEXT, base BLOB,
            updated REAL NOT NULL);
        CREATE TABLE updates (doc INTEGER NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
            PRIMARY KEY (doc, seq));
        INSERT INTO meta VALUES ('store_id', 'old-store');
        INSERT INTO documents (id, name, saved_seq, updated) VALUES (1, 'd', 1, 0);
        PRAGMA user_version=1;
        """
    )
    db.execute("INSERT INTO updates VALUES (1, 1, ?)", (doc.get_update(),))
    db.commit()
    db.close()
    store = SQLiteStore(str(path))
    await store.start()
    try:
        assert store.session_id == "old-store"
        stored = await store.load("d")
        assert stored is not None and stored.saved_seq == 1
        fresh: Doc = Doc()
        fresh.apply_update(stored.state() or b"")
        assert str(fresh.get("t", type=Text)) == "kept"
        assert [p.seq for p in await store.history("d")] == [1]
        assert await store.forks() == {}
    finally:
        await store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3


def test_store_urls() -> None:
    assert isinstance(open_store("sqlite:///tmp/x.db"), SQLiteStore)
    assert open_store("sqlite:///tmp/x.db").path == "/tmp/x.db"  # type: ignore[attr-defined]
    assert open_store("/tmp/y.db").path == "/tmp/y.db"  # type: ignore[attr-defined]
    assert open_store("sqlite://:memory:").location() == ":memory:"
    with pytest.raises(BadRequest, match="unsupported store URL scheme 'mysql'"):
        open_store("mysql://db/x")


async def test_compaction_gives_the_freed_space_back_to_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "shrink.db"
    doc: Doc = Doc()
    text = doc.get("t", type=Text)
    store = SQLiteStore(str(path))
    await store.start()
    for seq in range(1, 2001):
        before = doc.get_state()
        text.insert(len(str(text)), f"line {seq} of a document that keeps growing\n")
        await store.append("d", seq, doc.get_update(before))
    await store.close()
    grown = path.stat().st_size
    store = SQLiteStore(str(path))
    await store.start()
    await store.compact("d", Retention(history=0))
    await store.close()
    assert path.stat().st_size < grown / 2  # the rest is the empty tables and indexes
