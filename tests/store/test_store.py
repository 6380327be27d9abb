"""The store's contract, run on every backend (see conftest.py: SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from pycrdt import Doc, Text

from jupyter_datastore.errors import StoreError
from jupyter_datastore.store import Store, open_store
from jupyter_datastore.store.base import Retention

MakeStore = Callable[[], Store]


def updates(count: int, start: int = 0, width: int = 1) -> list[bytes]:
    """`count` appends to one text, each of `width` copies of its number and a comma."""
    doc: Doc = Doc()
    text = doc.get("t", type=Text)
    out = []
    for i in range(start + count):
        before = doc.get_state()
        text.insert(len(str(text)), f"{i}" * width + ",")
        if i >= start:
            out.append(doc.get_update(before))
    return out


def text_of(update: bytes | None) -> str:
    doc: Doc = Doc()
    if update is not None:
        doc.apply_update(update)
    return str(doc.get("t", type=Text))


def numbers(count: int, width: int = 1) -> str:
    return "".join(f"{i}" * width + "," for i in range(count))


async def started(make_store: MakeStore) -> Store:
    store = make_store()
    await store.start()
    return store


async def test_the_session_id_is_kept_across_reopens(make_store: MakeStore) -> None:
    first = await started(make_store)
    again = await started(make_store)
    assert again.session_id == first.session_id and len(first.session_id) == 36


async def test_appends_from_many_rooms_at_once_are_all_durable(make_store: MakeStore) -> None:
    store = await started(make_store)
    batch = updates(50)
    await asyncio.gather(
        *(store.append(f"doc{d}", seq + 1, u) for d in range(4) for seq, u in enumerate(batch))
    )
    await store.close()
    reopened = await started(make_store)
    for d in range(4):
        stored = await reopened.load(f"doc{d}")
        assert stored is not None
        assert [seq for seq, _ in stored.updates] == list(range(1, 51))
        assert text_of(stored.state()) == numbers(50)
    assert await reopened.load("never") is None


async def test_saves_and_compaction_keep_the_base_of_a_merge(make_store: MakeStore) -> None:
    store = await started(make_store)
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
    assert text_of(stored.state_at(4)) == numbers(4)
    assert text_of(stored.state()) == numbers(6)
    assert text_of(stored.file_state()) == numbers(4)
    # A change on disk merged but left unsaved: the file holds an explicit base until a save.
    await store.mark_merged("d", batch[0], "merged")
    stored = await store.load("d")
    assert stored is not None and text_of(stored.file_state()) == "0,"
    assert stored.file_hash == "merged"
    await store.mark_saved("d", 6, "hash6")
    stored = await store.load("d")
    assert stored is not None and stored.base is None
    assert text_of(stored.file_state()) == numbers(6)


async def test_history_points_and_compaction_by_retention(make_store: MakeStore) -> None:
    store = await started(make_store)
    before = time.time()
    for seq, update in enumerate(updates(20), start=1):
        await store.append("h", seq, update)
    points = await store.history("h")
    assert [p.seq for p in points] == list(range(1, 21))
    assert all(before - 1 <= p.time <= time.time() + 1 for p in points)
    await store.mark_saved("h", 12, "hash")
    # The step under way is left alone.
    assert await store.compact("h", Retention(history=3600, step=3600), now=time.time()) == 0
    # An hour on: the rows' step is over; they merge, but not across the save.
    later = time.time() + 3600
    assert await store.compact("h", Retention(history=7200, step=3600), now=later) == 18
    assert [p.seq for p in await store.history("h")] == [12, 20]
    stored = await store.load("h")
    assert stored is not None and text_of(stored.state()) == numbers(20)
    assert text_of(stored.file_state()) == numbers(12)
    # Compacting again changes nothing.
    assert await store.compact("h", Retention(history=7200, step=3600), now=later) == 0


async def test_merged_rows_are_compressed_and_load_back_the_same(make_store: MakeStore) -> None:
    store = await started(make_store)
    batch = updates(40, width=30)
    for seq, update in enumerate(batch, start=1):
        await store.append("big", seq, update)
    raw = sum(map(len, batch))
    await store.compact("big", Retention(history=0))
    [info] = [d for d in await store.documents() if d.name == "big"]
    assert info.rows == 1 and info.last_seq == 40
    assert info.size < raw / 3  # compressed: repetitive text
    stored = await store.load("big")
    assert stored is not None and text_of(stored.state()) == numbers(40, width=30)
    reopened = await started(make_store)
    stored = await reopened.load("big")
    assert stored is not None and text_of(stored.state()) == numbers(40, width=30)


async def test_a_compaction_racing_with_appends_loses_nothing(make_store: MakeStore) -> None:
    store = await started(make_store)
    batch = updates(400, width=5)
    for seq, update in enumerate(batch[:200], start=1):
        await store.append("race", seq, update)

    async def append_more() -> None:
        for seq, update in enumerate(batch[200:], start=201):
            await store.append("race", seq, update)

    await asyncio.gather(
        store.compact("race", Retention(history=0)),
        append_more(),
        store.compact("race", Retention(history=0)),
    )
    stored = await store.load("race")
    assert stored is not None and text_of(stored.state()) == numbers(400, width=5)
    assert stored.last_seq == 400


async def test_documents_counts_and_deletion(make_store: MakeStore) -> None:
    store = await started(make_store)
    for seq, update in enumerate(updates(3), start=1):
        await store.append("a", seq, update)
    await store.append("b", 1, updates(1)[0])
    await store.mark_saved("a", 2, "h")
    infos = {d.name: d for d in await store.documents()}
    assert (infos["a"].rows, infos["a"].last_seq, infos["a"].saved_seq) == (3, 3, 2)
    assert infos["b"].rows == 1 and infos["a"].size > 0
    await store.delete_document("a")
    assert [d.name for d in await store.documents()] == ["b"]
    assert await store.load("a") is None
    await store.append("a", 1, updates(1)[0])  # a new document of the same name starts over
    stored = await store.load("a")
    assert stored is not None and stored.last_seq == 1 and stored.saved_seq is None
    assert await store.check_integrity() == []
    counts = await store.counts()
    assert counts == {
        "events": 0,
        "executions": 0,
        "notifications": 0,
        "permissions": 0,
        "forks": 0,
    }
    assert (await store.size_on_disk() or 1) > 0


async def test_forks_are_kept(make_store: MakeStore) -> None:
    store = await started(make_store)
    info = {"root_roomid": "json:notebook:x", "synchronize": True, "title": "t", "description": ""}
    await store.put_fork("f1", "json:notebook:x", info)
    await store.put_fork("f2", "json:notebook:y", {**info, "root_roomid": "json:notebook:y"})
    reopened = await started(make_store)
    assert await reopened.forks("json:notebook:x") == {"f1": info}
    assert set(await reopened.forks()) == {"f1", "f2"}
    await reopened.delete_fork("f1")
    assert set(await reopened.forks()) == {"f2"}
    assert (await reopened.counts())["forks"] == 1


async def test_records_events_notifications_and_permissions(make_store: MakeStore) -> None:
    store = await started(make_store)
    record = {
        "id": "e1",
        "room_id": "r",
        "kernel_id": "k",
        "status": "ok",
        "created_at": "2026-01-01T00:00:01Z",
    }
    running = {**record, "id": "e2", "status": "running", "created_at": "2026-01-01T00:00:02Z"}
    await store.put_executions([record, running])
    assert await store.get_execution("e1") == record
    assert [r["id"] for r in await store.list_executions(room="r")] == ["e2", "e1"]
    assert [r["id"] for r in await store.list_executions(statuses=["running"])] == ["e2"]
    assert await store.prune_executions(0) == 1  # finished ones only
    assert await store.get_execution("e1") is None

    first = await store.append_event("s/v1", "1", "2026-01-01T00:00:00Z", {"n": 1})
    second = await store.append_event("t/v1", "1", "2026-01-01T00:00:01Z", {"n": 2})
    assert second.id > first.id
    assert [e.data for e in await store.read_events(0)] == [{"n": 1}, {"n": 2}]
    assert [e.data for e in await store.read_events(0, schema_ids=["t/v1"])] == [{"n": 2}]
    assert await store.last_event_id() == second.id
    assert await store.prune_events(1) == 1
    await store.put_event_schema({"$id": "s/v1", "version": "1"})
    assert await store.event_schemas() == [{"$id": "s/v1", "version": "1"}]
    await store.set_cursor("mailer", second.id)
    assert await store.get_cursor("mailer") == second.id and await store.get_cursor("x") == 0

    note = {"id": "n1", "recipient": "alice", "created_at": "2026-01-01T00:00:00Z", "read": False}
    await store.put_notifications([note, {**note, "id": "n2", "read": True}])
    assert [n["id"] for n in await store.list_notifications("alice", unread=True)] == ["n1"]
    assert await store.get_notification("bob", "n1") is None
    assert await store.delete_notification("alice", "n1")
    assert not await store.delete_notification("alice", "n1")

    await store.put_permission("", {"default": "viewer"})
    await store.put_permission("a", {"users": {"bob": "editor"}})
    await store.put_permission("a", None)
    assert await store.get_permissions() == {"": {"default": "viewer"}}


async def test_a_postgresql_server_that_is_not_there_is_a_clear_error() -> None:
    store = open_store("postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(StoreError, match="cannot use the PostgreSQL store at postgresql://"):
        await store.start()
