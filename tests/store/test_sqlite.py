"""The SQLite store on real files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from pycrdt import Doc, Text

from jupyter_datastore.errors import StoreCorrupt
from jupyter_datastore.store import SQLiteStore, open_store
from jupyter_datastore.store.base import Retention


def updates(count: int) -> list[bytes]:
    doc: Doc = Doc()
    text = doc.get("t", type=Text)
    out = []
    for i in range(count):
        before = doc.get_state()
        text.insert(len(str(text)), f"{i},")
        out.append(doc.get_update(before))
    return out


def text_of(update: bytes | None) -> str:
    doc: Doc = Doc()
    if update is not None:
        doc.apply_update(update)
    return str(doc.get("t", type=Text))


async def test_session_id_is_kept_across_reopens(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    await store.start()
    first = store.session_id
    await store.close()
    again = SQLiteStore(str(tmp_path / "s.db"))
    await again.start()
    assert again.session_id == first and len(first) == 36
    await again.close()
    other = SQLiteStore(str(tmp_path / "other.db"))
    await other.start()
    assert other.session_id != first
    await other.close()


async def test_appends_from_many_rooms_at_once_are_all_durable(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    await store.start()
    batch = updates(50)
    await asyncio.gather(
        *(store.append(f"doc{d}", seq + 1, u) for d in range(4) for seq, u in enumerate(batch))
    )
    await store.close()
    reopened = SQLiteStore(str(tmp_path / "s.db"))
    await reopened.start()
    for d in range(4):
        stored = await reopened.load(f"doc{d}")
        assert stored is not None
        assert [seq for seq, _ in stored.updates] == list(range(1, 51))
        assert text_of(stored.state()) == "".join(f"{i}," for i in range(50))
    assert await reopened.load("never") is None
    await reopened.close()


async def test_saves_and_compaction_keep_the_base_of_a_merge(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    await store.start()
    batch = updates(6)
    for seq, update in enumerate(batch, start=1):
        await store.append("d", seq, update)
    await store.mark_saving("d", 4)
    stored = await store.load("d")
    assert stored is not None and stored.saving_seq == 4 and stored.saved_seq is None
    await store.mark_saved("d", 4, "hash4")
    assert await store.compact("d", Retention(history=0)) == 4
    stored = await store.load("d")
    assert stored is not None
    assert [seq for seq, _ in stored.updates] == [4, 6]  # one row to the save, one after it
    assert (stored.saved_seq, stored.saving_seq, stored.file_hash) == (4, None, "hash4")
    assert text_of(stored.state_at(4)) == "0,1,2,3,"
    assert text_of(stored.state()) == "0,1,2,3,4,5,"
    assert text_of(stored.file_state()) == "0,1,2,3,"
    # A change on disk merged but left unsaved: the file holds an explicit base until a save.
    await store.mark_merged("d", batch[0], "merged")
    stored = await store.load("d")
    assert (
        stored is not None and text_of(stored.file_state()) == "0," and stored.file_hash == "merged"
    )
    await store.mark_saved("d", 6, "hash6")
    stored = await store.load("d")
    assert (
        stored is not None
        and stored.base is None
        and text_of(stored.file_state()) == "0,1,2,3,4,5,"
    )
    await store.close()


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not sqlite" * 100)
    store = SQLiteStore(str(path))
    with pytest.raises(StoreCorrupt, match="not a database"):
        await store.start()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StoreCorrupt, match="schema 99"):
        await SQLiteStore(str(path)).start()


def test_store_urls() -> None:
    assert isinstance(open_store("sqlite:///tmp/x.db"), SQLiteStore)
    assert open_store("sqlite:///tmp/x.db").path == "/tmp/x.db"  # type: ignore[attr-defined]
    assert open_store("sqlite://:memory:").path == ":memory:"  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="unsupported store URL"):
        open_store("mongodb://localhost/x")
