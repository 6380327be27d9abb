"""A document's epoch: set when its row is made, kept across reopens, new when the row is
made again, and part of its room's session id. On every backend (see conftest.py)."""

from __future__ import annotations

from pycrdt import Doc, Text

from jupyter_datastore.store import Store
from jupyter_datastore.store.sql import SQLStore

from .conftest import MakeStore


def one_update(text: str = "kept") -> bytes:
    doc: Doc = Doc()
    doc.get("t", type=Text).insert(0, text)
    return doc.get_update()


async def started(make_store: MakeStore) -> Store:
    store = make_store()
    await store.start()
    return store


async def epoch_of(store: Store, name: str) -> str:
    stored = await store.load(name)
    assert stored is not None
    return stored.epoch


async def test_the_epoch_survives_a_reopen_and_changes_when_the_document_is_made_again(
    make_store: MakeStore,
) -> None:
    store = await started(make_store)
    await store.append("d", 1, one_update())
    first = await epoch_of(store, "d")
    assert first and await store.epoch("d") == first
    assert store.document_session_id(first) == f"{store.session_id}.{first}"
    await store.close()

    store = await started(make_store)
    assert await epoch_of(store, "d") == first  # reopened: the same rows, the same epoch
    await store.delete_document("d")
    await store.append("d", 1, one_update("again"))  # made again by an append
    second = await epoch_of(store, "d")
    assert second not in ("", first)
    await store.delete_document("d")
    await store.mark_saved("d", 0, "hash")  # or by a save
    third = await epoch_of(store, "d")
    assert third not in ("", first, second)
    await store.delete_document("d")
    fourth = await store.epoch("d")  # or by asking for it (the session PUT)
    assert fourth not in ("", first, second, third) and await epoch_of(store, "d") == fourth
    stored = await store.load("d")
    assert stored is not None and stored.updates == [] and stored.saved_seq is None

    # A save or an append later keeps it; `renew` gives the same rows a new one.
    await store.mark_saved("d", 0, "hash")
    await store.append("d", 1, one_update())
    assert await epoch_of(store, "d") == fourth
    fifth = await store.epoch("d", renew=True)
    assert fifth not in ("", fourth) and await epoch_of(store, "d") == fifth
    stored = await store.load("d")
    assert stored is not None and [seq for seq, _ in stored.updates] == [1]


async def test_a_document_made_again_by_another_server_has_a_new_epoch_for_both(
    make_store: MakeStore,
) -> None:
    first, second = await started(make_store), await started(make_store)
    await first.append("d", 1, one_update())  # `first` knows its id now
    old = await first.epoch("d")
    await second.delete_document("d")
    await second.append("d", 1, one_update("new"))
    new = await first.epoch("d")
    assert new != old and await epoch_of(second, "d") == new
    await first.append("d", 2, one_update("more"))  # into the row made again
    stored = await second.load("d")
    assert stored is not None and [seq for seq, _ in stored.updates] == [1, 2]


async def test_a_store_of_schema_2_is_migrated_and_its_documents_keep_the_store_session(
    make_store: MakeStore,
) -> None:
    store = await started(make_store)
    assert isinstance(store, SQLStore)
    await store.append("old", 1, one_update())
    await store.mark_saved("old", 1, "hash")
    # What schema 2 was: the same tables, without the documents' epoch.
    await store._run("ALTER TABLE documents DROP COLUMN epoch")
    await store._run("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    await store.close()

    store = await started(make_store)
    old = await store.load("old")
    assert old is not None and old.saved_seq == 1 and old.file_hash == "hash"
    assert [seq for seq, _ in old.updates] == [1]
    # A document from before keeps the empty epoch: its clients' session id (the store's)
    # stays valid across the upgrade; documents made since have one.
    assert old.epoch == "" and await store.epoch("old") == ""
    assert store.document_session_id("") == store.session_id
    await store.append("new", 1, one_update())
    assert await epoch_of(store, "new") != ""
    await store.delete_document("old")
    await store.append("old", 1, one_update("again"))
    assert await epoch_of(store, "old") != ""
    version = await store._query("SELECT value FROM meta WHERE key = 'schema_version'")
    assert [row[0] for row in version] == ["3"]
