"""The event bus in-process: a real jupyter_events EventLogger over a real SQLite store."""

from __future__ import annotations

import asyncio

import pytest
from jupyter_events import EventLogger
from yclient import eventually, until

from jupyter_datastore.errors import BadRequest, Conflict, Forbidden
from jupyter_datastore.events.bus import EventBus, EventFilter, Subscription
from jupyter_datastore.store import SQLiteStore
from jupyter_datastore.store.base import StoredEvent

SCHEMA = {
    "$id": "https://example.org/unit/v1",
    "version": "1",
    "type": "object",
    "properties": {"n": {"type": "integer"}, "flag": {"type": "boolean"}, "a": {"type": "object"}},
}


def event(data: dict, schema_id: str = "s", version: str = "1", id: int = 1) -> StoredEvent:
    return StoredEvent(id, schema_id, version, "t", data)


@pytest.fixture
async def bus(tmp_path):
    store = SQLiteStore(str(tmp_path / "store.db"))
    await store.start()
    instance = EventBus(EventLogger(), store, keep=1000)
    await instance.start()
    yield instance
    await instance.stop()
    await store.close()


def test_filters_match_schema_version_and_fields() -> None:
    f = EventFilter.parse(
        {"schema_ids": ["s"], "versions": ["1"], "match": {"a.b": [1, "x"], "flag": True}}
    )
    assert f.accepts(event({"a": {"b": 1}, "flag": True}))
    assert f.accepts(event({"a": {"b": "x"}, "flag": True}))
    assert not f.accepts(event({"a": {"b": 2}, "flag": True}))
    assert not f.accepts(event({"a": {"b": 1}, "flag": 1}))  # JSON: true is not 1
    assert not f.accepts(event({"a": {"b": 1}, "flag": True}, schema_id="other"))
    assert not f.accepts(event({"a": {"b": 1}, "flag": True}, version="2"))
    assert EventFilter.parse(None).accepts(event({}))
    for bad in ([], {"schema_ids": "s"}, {"match": []}, {"match": {"a": {"b": 1}}}, {"x": 1}):
        with pytest.raises(BadRequest):
            EventFilter.parse(bad)


def test_a_subscriber_too_far_behind_is_closed_not_silently_trimmed() -> None:
    subscription = Subscription(EventFilter(), limit=3)
    for i in range(3):
        subscription.offer(event({}, id=i + 1))
    assert subscription.closed is None and len(subscription.queue) == 3
    subscription.offer(event({}, id=4))
    assert subscription.closed == "overflow" and not subscription.queue


async def test_every_emitted_event_is_stored_once_and_late_schemas_are_followed(bus) -> None:
    live = bus.subscribe(EventFilter())
    bus.logger.register_event_schema(SCHEMA)  # as another extension would, after start
    bus.emit(SCHEMA["$id"], {"n": 1})
    with pytest.raises(Forbidden):  # a schema of server code: no client posts under it
        await bus.post(SCHEMA["$id"], 1, {"n": 3})
    posted = await bus.post_for(SCHEMA["$id"], 1, {"n": 2}, "someone")  # the server, for one
    await bus.logger.gather_listeners()  # the EventLogger hands events to listeners in tasks
    stored = await bus.replay(0, EventFilter.parse({"schema_ids": [SCHEMA["$id"]]}))
    assert sorted(e.data["n"] for e in stored) == [1, 2]  # the posted one is not stored twice
    assert posted.id in [e.id for e in stored]
    got = await asyncio.wait_for(live.next(), 5)
    assert {e.data["n"] for e in got} <= {1, 2}


async def test_registering_over_rest_is_idempotent_and_checked(bus) -> None:
    assert await bus.register(SCHEMA) == ({"$id": SCHEMA["$id"], "version": "1"}, True)
    assert (await bus.register(SCHEMA))[1] is False
    with pytest.raises(Conflict):
        await bus.register({**SCHEMA, "title": "changed"})
    with pytest.raises(BadRequest):
        await bus.register({"$id": "https://example.org/bad/v1", "version": "1"})
    assert SCHEMA["$id"] in await _stored_schema_ids(bus)


async def _stored_schema_ids(bus: EventBus) -> set[str]:
    return {s["$id"] for s in await bus.store.event_schemas()}


async def test_catch_up_then_live_delivers_each_event_once(bus) -> None:
    await bus.register(SCHEMA)
    first = await bus.post(SCHEMA["$id"], "1", {"n": 0})
    for n in range(1, 4):
        await bus.post(SCHEMA["$id"], "1", {"n": n})
    subscription = bus.subscribe(EventFilter.parse({"schema_ids": [SCHEMA["$id"]]}))
    await bus.post(SCHEMA["$id"], "1", {"n": 4})  # arrives live, and is in the log too
    replayed = list(await bus.catch_up(subscription, first.id))
    live = await asyncio.wait_for(subscription.next(), 5) if subscription.queue else []
    assert [e.data["n"] for e in replayed + live] == [1, 2, 3, 4]


async def test_a_burst_of_events_is_stored_in_a_few_commits_in_order(bus) -> None:
    bus.logger.register_event_schema(SCHEMA)
    subscription = bus.subscribe(EventFilter.parse({"schema_ids": [SCHEMA["$id"]]}))
    commits_before = bus.store._writes  # type: ignore[attr-defined]  # SQLite's commit count
    for n in range(500):  # as 500 cells submitted at once each emit one event
        bus.emit(SCHEMA["$id"], {"n": n})

    async def all_stored() -> bool:
        return len(await bus.replay(0, EventFilter())) >= 500

    await eventually(all_stored)
    commits = bus.store._writes - commits_before  # type: ignore[attr-defined]
    assert commits <= 50, f"{commits} commits for 500 events"
    delivered = [e.data["n"] for e in subscription.queue]
    assert delivered == list(range(500))  # each once, in the order emitted (and of their ids)
    ids = [e.id for e in subscription.queue]
    assert ids == sorted(ids)


async def test_events_emitted_while_the_store_fails_are_kept_and_stored_in_order(
    tmp_path,
) -> None:
    """A full disk (a real tmpfs): the server's events wait in memory and reach subscribers,
    in order, once the disk has room; a posted event is refused at once; the outage is told
    once, and its end once, by store_fault events that are stored too."""
    from test_store_faults import fill, small_disk

    from jupyter_datastore.errors import StoreError
    from jupyter_datastore.events.catalog import STORE_FAULT

    big = "x" * 200_000  # more than the slack the write-ahead log may have left
    with small_disk(tmp_path / "disk") as disk:
        store = SQLiteStore(str(disk / "store.db"))
        await store.start()
        bus = EventBus(EventLogger(), store, keep=1000, retry_delay=0.05)
        await bus.start()
        try:
            bus.logger.register_event_schema({**SCHEMA, "properties": {"n": {}, "pad": {}}})
            await bus.register({**SCHEMA, "$id": "https://example.org/posted/v1"})
            subscription = bus.subscribe(EventFilter())
            filler = fill(disk)
            for n in range(5):
                bus.emit(SCHEMA["$id"], {"n": n, "pad": big})
            await until(lambda: bus.faults.fault is not None, what="the outage seen")
            with pytest.raises(StoreError):  # its caller waits: refused, not kept
                await bus.post("https://example.org/posted/v1", "1", {"n": 99})
            assert not [e for e in subscription.queue if e.schema_id == SCHEMA["$id"]]

            filler.unlink()
            await until(lambda: bus.faults.fault is None, what="the outage over")
            await bus.logger.gather_listeners()

            async def recovered_stored() -> bool:
                stored = await bus.replay(0, EventFilter.parse({"schema_ids": [STORE_FAULT]}))
                return [e.data["recovered"] for e in stored] == [False, True]

            await eventually(recovered_stored)
            ours = [e.data["n"] for e in subscription.queue if e.schema_id == SCHEMA["$id"]]
            assert ours == [0, 1, 2, 3, 4]  # each once, in the order emitted
            faults = [e.data for e in subscription.queue if e.schema_id == STORE_FAULT]
            assert [(f["what"], f["recovered"]) for f in faults] == [
                ("event_log", False),
                ("event_log", True),
            ]
            assert 99 not in [e.data.get("n") for e in subscription.queue]
        finally:
            await bus.stop()
            await store.close()
