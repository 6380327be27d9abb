"""The store's contract, run on every backend (see conftest.py: SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time

from pycrdt import Doc, Text, merge_updates

from jupyter_datastore.store import Store
from jupyter_datastore.store.base import HistoryPoint, Retention, StoredEvent

from .conftest import Clock, MakeStore

DAY = 24 * 3600.0


def updates(count: int, width: int = 1) -> list[bytes]:
    """`count` appends to one text, each of `width` copies of its number and a comma."""
    doc: Doc = Doc()
    text = doc.get("t", type=Text)
    out = []
    for i in range(count):
        before = doc.get_state()
        text.insert(len(str(text)), f"{i}" * width + ",")
        out.append(doc.get_update(before))
    return out


def text_of(update: bytes | None) -> str:
    doc: Doc = Doc()
    if update is not None:
        doc.apply_update(update)
    return str(doc.get("t", type=Text))


def numbers(count: int, width: int = 1) -> str:
    """The text of the first `count` updates."""
    return "".join(f"{i}" * width + "," for i in range(count))


async def started(make_store: MakeStore) -> Store:
    store = make_store()
    await store.start()
    return store


async def append_all(store: Store, name: str, batch: list[bytes], first: int = 1) -> None:
    for seq, update in enumerate(batch, start=first):
        await store.append(name, seq, update)


async def test_the_session_id_is_kept_across_reopens(make_store: MakeStore) -> None:
    first = await started(make_store)
    await first.close()
    again = await started(make_store)
    assert again.session_id == first.session_id and len(first.session_id) == 36


async def test_appends_from_many_rooms_at_once_are_all_durable(make_store: MakeStore) -> None:
    store = await started(make_store)
    batch = updates(25)
    await asyncio.gather(*(append_all(store, f"doc{d}", batch) for d in range(8)))
    await store.close()
    reopened = await started(make_store)
    for d in range(8):
        stored = await reopened.load(f"doc{d}")
        assert stored is not None
        assert [seq for seq, _ in stored.updates] == list(range(1, 26))
        assert text_of(stored.state()) == numbers(25)
    assert await reopened.load("never") is None
    assert await reopened.history("never") == []
    assert await reopened.compact("never", Retention(history=0)) == 0


async def test_saves_and_compaction_keep_the_base_of_a_merge(make_store: MakeStore) -> None:
    store = await started(make_store)
    batch = updates(6)
    await append_all(store, "d", batch)
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


async def test_a_save_before_any_update_makes_the_document(make_store: MakeStore) -> None:
    store = await started(make_store)
    await store.mark_saved("new", 0, "empty")
    stored = await store.load("new")
    assert stored is not None and stored.updates == [] and stored.file_hash == "empty"
    assert (stored.saved_seq, stored.state(), stored.file_state()) == (0, None, None)
    await append_all(store, "new", updates(2))
    stored = await store.load("new")
    assert stored is not None and text_of(stored.state()) == numbers(2)


async def test_history_points_are_the_rows_seqs_and_times(
    make_store: MakeStore, clock: Clock
) -> None:
    store = await started(make_store)
    times = [clock.now + offset for offset in (0.0, 0.25, 7.5, 3600.125)]
    for seq, (moment, update) in enumerate(zip(times, updates(4), strict=True), start=1):
        clock.now = moment
        await store.append("h", seq, update)
    expected = [HistoryPoint(seq, moment) for seq, moment in enumerate(times, start=1)]
    assert await store.history("h") == expected
    reopened = await started(make_store)
    assert await reopened.history("h") == expected


async def test_compaction_follows_the_retention(make_store: MakeStore, clock: Clock) -> None:
    """Beyond the history: one row; within it: one per step; the step under way: untouched;
    a save's boundary: kept; and every point left holds the same content as before."""
    store = await started(make_store)
    start = clock.now  # a step starts here
    offsets = [
        *(-2 * DAY + i for i in range(3)),  # 1-3: beyond the history
        -3600.0,  # 4-6: one step, an hour ago, with a save at 5
        -3590.0,
        -3580.0,
        -3540.0,  # 7-8: the next step
        -3530.0,
        -1800.0,  # 9: alone in its step
        5.0,  # 10-12: the step under way
        10.0,
        20.0,
    ]
    batch = updates(len(offsets))
    for seq, (offset, update) in enumerate(zip(offsets, batch, strict=True), start=1):
        clock.now = start + offset
        await store.append("d", seq, update)
    await store.mark_saved("d", 5, "saved")
    retention = Retention(history=DAY, step=60.0)

    now = start + 30.0
    assert await store.compact("d", retention, now=now) == 4
    assert await store.history("d") == [
        HistoryPoint(seq, start + offsets[seq - 1]) for seq in (3, 5, 6, 8, 9, 10, 11, 12)
    ]
    stored = await store.load("d")
    assert stored is not None
    for seq, _ in stored.updates:
        assert text_of(stored.state_at(seq)) == numbers(seq)
    assert text_of(stored.file_state()) == numbers(5)
    assert await store.compact("d", retention, now=now) == 0  # nothing more to do

    # A minute on, the step that was under way is over: its rows merge.
    assert await store.compact("d", retention, now=start + 90.0) == 2
    assert [p.seq for p in await store.history("d")] == [3, 5, 6, 8, 9, 12]
    # Two days on, everything is beyond the history: one row to the save, one after it.
    assert await store.compact("d", retention, now=start + 2 * DAY) == 4
    assert await store.history("d") == [
        HistoryPoint(5, start + offsets[4]),
        HistoryPoint(12, start + offsets[11]),
    ]
    reopened = await started(make_store)
    stored = await reopened.load("d")
    assert stored is not None and stored.saved_seq == 5
    assert text_of(stored.file_state()) == numbers(5)
    assert text_of(stored.state()) == numbers(12)


async def test_merged_rows_are_compressed_and_load_back_the_same(make_store: MakeStore) -> None:
    store = await started(make_store)
    batch = updates(40, width=30)
    await append_all(store, "big", batch)
    assert await store.compact("big", Retention(history=0)) == 39
    [info] = [d for d in await store.documents() if d.name == "big"]
    assert info.rows == 1 and info.last_seq == 40
    assert info.size < sum(map(len, batch)) / 3  # compressed: repetitive text
    expected = [(40, merge_updates(*batch))]
    stored = await store.load("big")
    assert stored is not None and stored.updates == expected
    reopened = await started(make_store)
    stored = await reopened.load("big")
    assert stored is not None and stored.updates == expected
    assert text_of(stored.state()) == numbers(40, width=30)


async def test_a_compaction_racing_with_appends_loses_nothing(make_store: MakeStore) -> None:
    store = await started(make_store)
    batch = updates(300, width=5)
    await append_all(store, "race", batch[:150])
    await asyncio.gather(
        store.compact("race", Retention(history=0)),
        append_all(store, "race", batch[150:], first=151),
        store.compact("race", Retention(history=0)),
    )
    stored = await store.load("race")
    assert stored is not None and stored.last_seq == 300
    assert text_of(stored.state()) == numbers(300, width=5)
    seqs = [seq for seq, _ in stored.updates]
    assert seqs == sorted(set(seqs))


async def test_two_servers_compacting_one_document_merge_it_once(make_store: MakeStore) -> None:
    first, second = await started(make_store), await started(make_store)
    await append_all(first, "d", updates(100))
    removed = await asyncio.gather(
        first.compact("d", Retention(history=0)), second.compact("d", Retention(history=0))
    )
    assert sorted(removed) == [0, 99]  # the other one finds its rows gone and changes nothing
    for store in (first, second):
        stored = await store.load("d")
        assert stored is not None and [seq for seq, _ in stored.updates] == [100]
        assert text_of(stored.state()) == numbers(100)


async def test_documents_counts_and_deletion(make_store: MakeStore) -> None:
    store = await started(make_store)
    batch = updates(3)
    await append_all(store, "b", batch)
    await append_all(store, "a", updates(1))
    await store.mark_saved("b", 2, "h")
    infos = await store.documents()
    assert [d.name for d in infos] == ["a", "b"]
    a, b = infos
    assert (b.rows, b.last_seq, b.saved_seq) == (3, 3, 2)
    assert (a.rows, a.last_seq, a.saved_seq) == (1, 1, None)
    assert b.size == sum(map(len, batch)) and abs(b.updated - time.time()) < 60
    await store.delete_document("b")
    await store.delete_document("never there")
    assert [d.name for d in await store.documents()] == ["a"]
    assert await store.load("b") is None and await store.history("b") == []
    await store.append("b", 1, updates(1)[0])  # a new document of the same name starts over
    stored = await store.load("b")
    assert stored is not None and stored.last_seq == 1 and stored.saved_seq is None
    assert await store.check_integrity() == []
    assert (await store.size_on_disk() or 0) > 0
    assert await store.counts() == {
        "events": 0,
        "executions": 0,
        "notifications": 0,
        "permissions": 0,
        "forks": 0,
    }
    reopened = await started(make_store)
    assert [d.name for d in await reopened.documents()] == ["a", "b"]


async def test_forks_are_kept(make_store: MakeStore) -> None:
    store = await started(make_store)
    info = {"root_roomid": "json:notebook:x", "synchronize": True, "title": "t", "description": ""}
    await store.put_fork("f1", "json:notebook:x", info)
    await store.put_fork("f2", "json:notebook:y", {**info, "root_roomid": "json:notebook:y"})
    await store.put_fork("f2", "json:notebook:y", {**info, "root_roomid": "json:notebook:y"})
    reopened = await started(make_store)
    assert await reopened.forks("json:notebook:x") == {"f1": info}
    assert await reopened.forks("json:notebook:z") == {}
    assert set(await reopened.forks()) == {"f1", "f2"}
    await reopened.delete_fork("f1")
    await reopened.delete_fork("f1")
    assert set(await reopened.forks()) == {"f2"}
    assert (await reopened.counts())["forks"] == 1


async def test_execution_records(make_store: MakeStore) -> None:
    store = await started(make_store)
    record = {
        "id": "e1",
        "room_id": "r",
        "kernel_id": "k",
        "status": "ok",
        "created_at": "2026-01-01T00:00:01Z",
    }
    running = {**record, "id": "e2", "status": "running", "created_at": "2026-01-01T00:00:02Z"}
    elsewhere = {**record, "id": "e3", "room_id": "s", "kernel_id": "j"}
    await store.put_executions([record, running, elsewhere])
    assert await store.get_execution("e1") == record
    assert await store.get_execution("nope") is None
    assert [r["id"] for r in await store.list_executions(room="r")] == ["e2", "e1"]
    assert [r["id"] for r in await store.list_executions(kernel_id="j")] == ["e3"]
    assert [r["id"] for r in await store.list_executions(statuses=["running"])] == ["e2"]
    assert [r["id"] for r in await store.list_executions(limit=1)] == ["e2"]
    # Replaced: the new content, and the newest of its time.
    await store.put_executions([{**record, "status": "error"}])
    assert [r["status"] for r in await store.list_executions(room="r")] == ["running", "error"]
    assert [r["id"] for r in await store.list_executions(room="r", statuses=["ok"])] == []
    assert [r["id"] for r in await store.list_executions()][1:] == ["e1", "e3"]
    assert await store.prune_executions(1) == 2  # finished ones only, beyond the newest one
    assert [r["id"] for r in await store.list_executions()] == ["e2"]
    reopened = await started(make_store)
    assert await reopened.get_execution("e2") == running
    assert (await reopened.counts())["executions"] == 1


async def test_the_event_log(make_store: MakeStore) -> None:
    store = await started(make_store)
    assert await store.last_event_id() == 0 and await store.read_events(0) == []
    first = await store.append_event("s/v1", "1", "2026-01-01T00:00:00Z", {"n": 1})
    second = await store.append_event("t/v1", "1", "2026-01-01T00:00:01Z", {"n": 2})
    third = await store.append_event("s/v1", "1", "2026-01-01T00:00:02Z", {"n": 3})
    assert first.id < second.id < third.id
    assert await store.read_events(0) == [first, second, third]
    assert await store.read_events(first.id, limit=1) == [second]
    assert [e.data for e in await store.read_events(0, schema_ids=["s/v1"])] == [{"n": 1}, {"n": 3}]
    assert await store.last_event_id() == third.id
    assert await store.prune_events(2) == 1
    assert await store.read_events(0) == [second, third]
    await store.put_event_schema({"$id": "s/v1", "version": "1"})
    await store.put_event_schema({"$id": "s/v1", "version": "1", "title": "again"})
    assert await store.event_schemas() == [{"$id": "s/v1", "version": "1", "title": "again"}]
    await store.set_cursor("mailer", first.id)
    await store.set_cursor("mailer", second.id)
    assert await store.get_cursor("mailer") == second.id and await store.get_cursor("x") == 0
    reopened = await started(make_store)
    assert await reopened.get_cursor("mailer") == second.id
    assert await reopened.last_event_id() == third.id
    fourth = await reopened.append_event("s/v1", "1", "2026-01-01T00:00:03Z", {"n": 4})
    assert fourth.id > third.id  # ids are never given twice
    assert (await reopened.counts())["events"] == 3


async def test_a_reader_resuming_from_the_last_id_misses_no_event(make_store: MakeStore) -> None:
    """Events appended at once are committed in the order of their ids: a subscriber that
    reads on from the last id it saw never skips one that became visible later."""
    store = await started(make_store)
    seen: list[StoredEvent] = []

    async def read_along(times: int) -> None:
        for _ in range(times):
            seen.extend(await store.read_events(seen[-1].id if seen else 0))

    async def append(n: int) -> None:
        await store.append_event("s/v1", "1", "2026-01-01T00:00:00Z", {"n": n})

    await asyncio.gather(read_along(50), *(append(n) for n in range(100)))
    await read_along(1)
    assert seen == await store.read_events(0)
    assert sorted(e.data["n"] for e in seen) == list(range(100))


async def test_notifications(make_store: MakeStore) -> None:
    store = await started(make_store)
    note = {"id": "n1", "recipient": "alice", "created_at": "2026-01-01T00:00:00Z", "read": False}
    second = {**note, "id": "n2", "created_at": "2026-01-02T00:00:00Z", "read": True}
    third = {**note, "id": "n3", "created_at": "2026-01-03T00:00:00Z"}
    await store.put_notifications([note, second, third, {**note, "id": "b1", "recipient": "bob"}])
    assert [n["id"] for n in await store.list_notifications("alice")] == ["n3", "n2", "n1"]
    assert [n["id"] for n in await store.list_notifications("alice", unread=True)] == ["n3", "n1"]
    assert [n["id"] for n in await store.list_notifications("alice", unread=False)] == ["n2"]
    window = await store.list_notifications(
        "alice", since="2026-01-01T12:00:00Z", until="2026-01-03T00:00:00Z"
    )
    assert [n["id"] for n in window] == ["n2"]
    assert [n["id"] for n in await store.list_notifications("alice", limit=1)] == ["n3"]
    await store.put_notifications([{**note, "read": True}])
    assert await store.get_notification("alice", "n1") == {**note, "read": True}
    assert await store.get_notification("bob", "n1") is None
    assert not await store.delete_notification("bob", "n1")
    assert await store.delete_notification("alice", "n1")
    assert not await store.delete_notification("alice", "n1")
    reopened = await started(make_store)
    assert [n["id"] for n in await reopened.list_notifications("alice")] == ["n3", "n2"]
    assert (await reopened.counts())["notifications"] == 3


async def test_permissions(make_store: MakeStore) -> None:
    store = await started(make_store)
    await store.put_permission("", {"default": "viewer"})
    await store.put_permission("a", {"users": {"bob": "editor"}})
    await store.put_permission("a", {"users": {"bob": "viewer"}})
    await store.put_permission("b/c", {"default": "none"})
    await store.put_permission("b/c", None)
    await store.put_permission("never", None)
    reopened = await started(make_store)
    assert await reopened.get_permissions() == {
        "": {"default": "viewer"},
        "a": {"users": {"bob": "viewer"}},
    }
    assert (await reopened.counts())["permissions"] == 2
