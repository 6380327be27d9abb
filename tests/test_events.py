"""The event bus over REST and WebSocket: schemas, durable events, filters, resume, batches."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from eventsapi import EventSocket
from yclient import until

SCHEMA_ID = "https://example.org/tests/build/v1"
OTHER_ID = "https://example.org/tests/deploy/v1"


def schema(schema_id: str, version: str = "1", **extra: Any) -> dict[str, Any]:
    return {
        "$id": schema_id,
        "version": version,
        "title": "test",
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"enum": ["ok", "failed"]}, "target": {"type": "string"}},
        **extra,
    }


class Events:
    """REST and WebSocket access to one server's events."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.http = httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": f"token {server.token}"}, timeout=30
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def register(self, document: dict[str, Any]) -> httpx.Response:
        return await self.http.post("/api/events/schemas", json=document)

    async def post(
        self, schema_id: str, data: dict[str, Any], version: Any = "1"
    ) -> httpx.Response:
        body = {"schema_id": schema_id, "version": version, "data": data}
        return await self.http.post("/api/events", json=body)

    async def subscribe(self, **query: Any) -> EventSocket:
        return await EventSocket.connect(self.server.url, self.server.token, **query)


@pytest.fixture
async def events(server):
    client = Events(server)
    yield client
    await client.close()


async def registered(events: Events, *schema_ids: str) -> None:
    for schema_id in schema_ids:
        response = await events.register(schema(schema_id))
        assert response.status_code in (200, 201), response.text


async def test_schemas_are_registered_listed_and_checked(events) -> None:
    new_id = "https://example.org/tests/schemas/v1"
    first = await events.register(schema(new_id))
    assert first.status_code == 201
    assert first.json() == {"$id": new_id, "version": "1"}
    assert (await events.register(schema(new_id))).status_code == 200  # the same again: fine
    changed = await events.register(schema(new_id, title="another"))
    assert changed.status_code == 409
    listed = (await events.http.get("/api/events/schemas")).json()["schemas"]
    by_id = {s["$id"]: s for s in listed}
    assert by_id[new_id]["version"] == "1"
    assert by_id[new_id]["schema"]["properties"]["status"] == {"enum": ["ok", "failed"]}
    # jupyter_server's own and ours are published too.
    assert "https://events.jupyter.org/jupyter_server/contents_service/v1" in by_id
    assert "https://events.jupyter.org/jupyter_datastore/execution/v1" in by_id
    for bad in (
        {"version": "1", "properties": {}},  # no $id
        {"$id": "https://example.org/x/v1", "version": "1"},  # no properties
        {"$id": "https://example.org/y/v1", "version": "1", "properties": {"__x": {}}},
        [1, 2],
    ):
        response = await events.http.post("/api/events/schemas", json=bad)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["detail"]


async def test_posted_event_is_stored_with_an_id_and_replayed(events) -> None:
    await registered(events, SCHEMA_ID)
    response = await events.post(SCHEMA_ID, {"status": "ok", "target": "a"})
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["schema_id"] == SCHEMA_ID and stored["status"] == "ok"
    assert isinstance(stored["__id__"], int) and stored["__timestamp__"].endswith("Z")
    assert stored["__schema_version__"] == "1"
    second = (await events.post(SCHEMA_ID, {"status": "failed"})).json()
    assert second["__id__"] > stored["__id__"]
    since = stored["__id__"] - 1
    replay = await events.http.get("/api/events", params={"since": since, "schema_id": SCHEMA_ID})
    assert [e["__id__"] for e in replay.json()["events"]] == [stored["__id__"], second["__id__"]]
    assert replay.json()["last_id"] == second["__id__"]
    minimal = await events.http.post(
        "/api/events",
        json={"schema_id": SCHEMA_ID, "version": 1, "data": {"status": "ok"}},
        headers={"Prefer": "return=minimal"},
    )
    assert minimal.status_code == 204 and minimal.content == b""
    # A browser's fetch (JupyterLab's EventManager wants 204), unless it asks for the event.
    body = {"schema_id": SCHEMA_ID, "version": "1", "data": {"status": "ok"}}
    browser = {"Sec-Fetch-Mode": "cors"}
    assert (await events.http.post("/api/events", json=body, headers=browser)).status_code == 204
    asked = {**browser, "Prefer": "return=representation"}
    full = await events.http.post("/api/events", json=body, headers=asked)
    assert full.status_code == 201 and full.json()["__id__"] > second["__id__"]


async def test_bad_events_and_filters_get_clear_400s(events, server) -> None:
    await registered(events, SCHEMA_ID)
    before = (await events.http.get("/api/events", params={"since": 0, "limit": 10000})).json()
    cases = [
        (await events.post(SCHEMA_ID, {"status": "maybe"}), "does not match"),
        (await events.post(SCHEMA_ID, {"target": "no status"}), "does not match"),
        (await events.post(SCHEMA_ID, {"status": "ok"}, version="2"), "version"),
        (await events.post("https://example.org/unknown/v1", {"status": "ok"}), "register"),
        (await events.post(SCHEMA_ID, ["not", "an", "object"]), "object"),
        (await events.http.post("/api/events", json={"schema_id": SCHEMA_ID}), "missing"),
        (await events.http.get("/api/events", params={"since": "x"}), "since"),
        (await events.http.get("/api/events", params={"filter": "{nope"}), "filter"),
        (
            await events.http.get("/api/events", params={"filter": json.dumps({"colour": 1})}),
            "unknown filter",
        ),
        (
            await events.http.get(
                "/api/events", params={"filter": json.dumps({"match": {"a": {"b": 1}}})}
            ),
            "match",
        ),
    ]
    for response, words in cases:
        assert response.status_code == 400, response.text
        assert words in response.json()["detail"], response.json()
    after = (await events.http.get("/api/events", params={"since": 0, "limit": 10000})).json()
    mine = [e for e in after["events"] if e["schema_id"] == SCHEMA_ID]
    assert len(mine) == len([e for e in before["events"] if e["schema_id"] == SCHEMA_ID])
    # A bad subscription query is refused before the WebSocket upgrade.
    with pytest.raises(websockets.InvalidStatus) as refused:
        await events.subscribe(filter="{nope")
    assert refused.value.response.status_code == 400


async def test_filtered_subscribers_get_only_what_they_asked_for(events) -> None:
    await registered(events, SCHEMA_ID, OTHER_ID)
    builds = await events.subscribe(filter=json.dumps({"schema_ids": [SCHEMA_ID]}))
    failures = await events.subscribe(
        filter=json.dumps({"schema_ids": [SCHEMA_ID], "match": {"status": "failed"}})
    )
    deploys = await events.subscribe(filter=json.dumps({"schema_ids": [OTHER_ID]}))
    try:
        await events.post(SCHEMA_ID, {"status": "ok", "target": "t1"})
        await events.post(SCHEMA_ID, {"status": "failed", "target": "t2"})
        await events.post(OTHER_ID, {"status": "ok", "target": "prod"})
        await until(lambda: len(deploys.events) == 1, what="the deploy event")
        await until(lambda: len(builds.events) == 2, what="both build events")
        await until(lambda: len(failures.events) == 1, what="the failure")
        assert [e["target"] for e in builds.events] == ["t1", "t2"]
        assert [e["target"] for e in failures.events] == ["t2"]
        assert [e["schema_id"] for e in deploys.events] == [OTHER_ID]
    finally:
        for subscriber in (builds, failures, deploys):
            await subscriber.close()


async def test_a_subscriber_that_resumes_misses_nothing(events, server) -> None:
    await registered(events, SCHEMA_ID)
    first = await events.subscribe(filter=json.dumps({"schema_ids": [SCHEMA_ID]}))
    await events.post(SCHEMA_ID, {"status": "ok", "target": "seen"})
    await until(lambda: len(first.events) == 1)
    last_seen = first.events[-1]["__id__"]
    await first.close()
    missed = [
        (await events.post(SCHEMA_ID, {"status": "ok", "target": f"m{i}"})).json() for i in range(5)
    ]
    resumed = await events.subscribe(
        since=last_seen, filter=json.dumps({"schema_ids": [SCHEMA_ID]})
    )
    try:
        await events.post(SCHEMA_ID, {"status": "ok", "target": "live"})
        await until(lambda: len(resumed.events) == 6, what="the missed and the live events")
        assert [e["target"] for e in resumed.events] == [*[f"m{i}" for i in range(5)], "live"]
        assert [e["__id__"] for e in resumed.events][:5] == [m["__id__"] for m in missed]
    finally:
        await resumed.close()


async def test_late_schemas_reach_open_sockets_and_filters_change_live(events) -> None:
    everything = await events.subscribe()
    try:
        late_id = "https://example.org/tests/late/v1"
        assert (await events.register(schema(late_id))).status_code == 201
        await events.post(late_id, {"status": "ok"})
        await until(lambda: len(everything.of(late_id)) == 1, what="an event of a new schema")
        # Changing the filter on the open socket.
        await everything.send({"type": "subscribe", "filter": {"schema_ids": [SCHEMA_ID]}})
        await until(lambda: any(f.get("__control__") == "subscribed" for f in everything.frames))
        await registered(events, SCHEMA_ID)
        await events.post(late_id, {"status": "failed"})
        await events.post(SCHEMA_ID, {"status": "ok", "target": "after"})
        await until(lambda: len(everything.of(SCHEMA_ID)) == 1)
        assert len(everything.of(late_id)) == 1
        await everything.send({"type": "subscribe", "filter": {"colour": "blue"}})
        await until(lambda: any(f.get("__control__") == "error" for f in everything.frames))
        await events.post(SCHEMA_ID, {"status": "ok", "target": "still"})
        await until(lambda: len(everything.of(SCHEMA_ID)) == 2, what="the old filter to hold")
    finally:
        await everything.close()


async def test_batched_subscribers_get_arrays_at_most_once_per_interval(events) -> None:
    await registered(events, SCHEMA_ID)
    batched = await events.subscribe(batch="0.3", filter=json.dumps({"schema_ids": [SCHEMA_ID]}))
    try:
        for i in range(20):
            await events.post(SCHEMA_ID, {"status": "ok", "target": f"b{i}"})
        await until(lambda: len(batched.events) == 20, what="all 20 events")
        assert all(isinstance(frame, list) for frame in batched.frames)
        assert len(batched.frames) < 20
        assert [e["target"] for e in batched.events] == [f"b{i}" for i in range(20)]
    finally:
        await batched.close()


async def test_events_survive_a_restart_and_server_events_are_stored(make_server, tmp_path) -> None:
    server = make_server()
    events = Events(server)
    try:
        await registered(events, SCHEMA_ID)
        posted = (await events.post(SCHEMA_ID, {"status": "ok"})).json()
        # jupyter_server's own events are stored too: a contents save.
        saved = await events.http.put(
            "/api/contents/note.txt", json={"type": "file", "format": "text", "content": "x"}
        )
        assert saved.status_code in (200, 201)
        contents = "https://events.jupyter.org/jupyter_server/contents_service/v1"

        async def stored(schema_id: str) -> list[dict[str, Any]]:
            response = await events.http.get(
                "/api/events", params={"since": 0, "schema_id": schema_id}
            )
            return list(response.json()["events"])

        deadline = asyncio.get_running_loop().time() + 10
        while not [e for e in await stored(contents) if e.get("path") == "note.txt"]:
            assert asyncio.get_running_loop().time() < deadline, "no contents_service event"
            await asyncio.sleep(0.05)
        server.restart()
        after = await stored(SCHEMA_ID)
        assert [e["__id__"] for e in after] == [posted["__id__"]]
        # The schema registered over REST is registered again; ids go on growing.
        again = (await events.post(SCHEMA_ID, {"status": "failed"})).json()
        assert again["__id__"] > posted["__id__"]
    finally:
        await events.close()


async def test_a_subscriber_that_stops_reading_is_closed_and_resumes_losing_nothing(
    make_server,
) -> None:
    server = make_server(["--DatastoreApp.peer_send_limit=1000000"])
    events = Events(server)
    try:
        await registered(events, SCHEMA_ID)
        slow = await events.subscribe(filter=json.dumps({"schema_ids": [SCHEMA_ID]}))
        slow._reader.cancel()  # it stops reading: the server's buffer for it fills up
        big = "x" * 200_000
        posted = [
            (await events.post(SCHEMA_ID, {"status": "ok", "target": f"{i}{big}"})).json()
            for i in range(60)
        ]
        received, code = [], None
        try:
            async for message in slow.ws:
                received.append(json.loads(message))
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
        code = code or (slow.ws.close_rcvd.code if slow.ws.close_rcvd else None)
        assert code == 1013, code
        assert len(received) < len(posted)
        last = received[-1]["__id__"] if received else posted[0]["__id__"] - 1
        resumed = await events.subscribe(since=last, filter=json.dumps({"schema_ids": [SCHEMA_ID]}))
        try:
            await until(lambda: len(received) + len(resumed.events) == len(posted))
            ids = [e["__id__"] for e in received + resumed.events]
            assert ids == [p["__id__"] for p in posted]
        finally:
            await resumed.close()
    finally:
        await events.close()
