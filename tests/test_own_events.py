"""The datastore's own events, read back from the durable event log (GET /api/events).

A real server with real kernels: documents opened, saved, changed on disk, renamed, missing
and closed; peers joining and leaving; executions queued, started and finished; kernels
starting, busy, idle and dead. Every event must validate against the schema the server
publishes at GET /api/events/schemas.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import psutil
import pytest
from execapi import ExecApi
from jupyter_events.schema import EventSchema
from notebooks import code_cell, notebook, write_notebook
from pycrdt import Array, Doc, Text
from yclient import YClient, until

from jupyter_datastore.events.catalog import (
    DOCUMENT,
    EXECUTION,
    KERNEL_ACTIONS,
    KERNEL_STATUS,
    OUR_SCHEMAS,
    PEER,
    STORE_FAULT,
    load_schemas,
)
from jupyter_datastore.rooms.room import Room

pytestmark = pytest.mark.timeout(180)

Event = dict[str, Any]


class EventLog:
    """The server's event log over REST, and its published schemas."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"token {token}"}, timeout=30
        )
        self._schemas: dict[str, EventSchema] = {}

    async def close(self) -> None:
        await self.http.aclose()

    async def last_id(self) -> int:
        since = 0
        while True:
            body = await self._get({"since": since, "limit": 10_000})
            if not body["events"]:
                return since
            since = body["last_id"]

    async def read(self, since: int, schema_id: str) -> list[Event]:
        events: list[Event] = []
        while True:
            body = await self._get({"since": since, "schema_id": schema_id, "limit": 10_000})
            events += body["events"]
            if not body["events"]:
                return events
            since = body["last_id"]

    async def wait(
        self,
        since: int,
        schema_id: str,
        found: Callable[[list[Event]], bool],
        what: str,
        timeout: float = 30,
    ) -> list[Event]:
        """Poll until the events of `schema_id` after `since` satisfy `found`; all of them."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            events = await self.read(since, schema_id)
            if found(events):
                return events
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; events: {events}")
            await asyncio.sleep(0.05)

    async def validate(self, event: Event) -> None:
        """The event's data against the schema the server publishes for it."""
        if not self._schemas:
            response = await self.http.get("/api/events/schemas")
            response.raise_for_status()
            for entry in response.json()["schemas"]:
                self._schemas[entry["$id"]] = EventSchema(entry["schema"])
        data = {k: v for k, v in event.items() if k != "schema_id" and not k.startswith("__")}
        self._schemas[event["schema_id"]].validate(data)

    async def _get(self, params: dict[str, Any]) -> Any:
        response = await self.http.get("/api/events", params=params)
        response.raise_for_status()
        return response.json()


@pytest.fixture
async def log(server) -> AsyncIterator[EventLog]:
    events = EventLog(server.url, server.token)
    yield events
    await events.close()


def actions(events: list[Event], **match: Any) -> list[str]:
    return [e["action"] for e in events if all(e.get(k) == v for k, v in match.items())]


def has(**match: Any) -> Callable[[list[Event]], bool]:
    return lambda events: any(all(e.get(k) == v for k, v in match.items()) for e in events)


async def test_our_schemas_are_published(log) -> None:
    response = await log.http.get("/api/events/schemas")
    published = {s["$id"]: s for s in response.json()["schemas"]}
    for schema in load_schemas():
        assert published[schema["$id"]]["schema"] == schema
        assert published[schema["$id"]]["version"] == "1"
    assert set(OUR_SCHEMAS) <= set(published)


async def test_a_document_opened_saved_changed_on_disk_and_closed(server, log) -> None:
    path = server.root / "events.ipynb"
    write_notebook(path, notebook(code_cell("a = 1", "c1")))
    since = await log.last_id()
    a = await YClient.connect(server.url, server.token, "events.ipynb")
    b: YClient | None = None
    try:
        room = a.room
        docs = await log.wait(since, DOCUMENT, has(action="opened", path="events.ipynb"), "opened")
        opened = next(e for e in docs if e["action"] == "opened")
        assert opened["room_id"] == room
        assert opened["file_id"] == room.split(":", 2)[2]
        assert opened["from_store"] is False
        peers = await log.wait(since, PEER, has(action="joined", room_id=room), "joined")
        assert peers[-1]["peers"] == 1
        assert isinstance(peers[-1]["user"], str) and peers[-1]["user"]

        b = await YClient.connect(server.url, server.token, "events.ipynb")
        await log.wait(since, PEER, has(action="joined", room_id=room, peers=2), "a second peer")

        # Ctrl-S: an explicit save.
        source = a.doc.get("cells", type=Array)[0]["source"]
        source.insert(len(str(source)), "\nb = 2")
        assert (await a.save(7))["status"] == "success"
        docs = await log.wait(since, DOCUMENT, has(action="saved", explicit=True), "saved")
        assert next(e for e in docs if e.get("explicit") is True)["path"] == "events.ipynb"

        # Someone else writes the file: the change is merged in and said so.
        await until(lambda: "b = 2" in path.read_text(), what="the save on disk")
        mark = await log.last_id()
        write_notebook(path, notebook(code_cell("a = 1\nb = 2\nc = 3  # from disk", "c1")))
        docs = await log.wait(mark, DOCUMENT, has(action="changed_on_disk"), "changed_on_disk")
        changed = next(e for e in docs if e["action"] == "changed_on_disk")
        assert changed["room_id"] == room and changed["kept_edits"] is False

        await b.close()
        b = None
        peers = await log.wait(since, PEER, has(action="left", room_id=room, peers=1), "left")
    finally:
        await a.close()
        if b is not None:
            await b.close()
    peers = await log.wait(since, PEER, has(action="left", room_id=room, peers=0), "last left")
    assert actions(peers, room_id=room) == ["joined", "joined", "left", "left"]
    # The room is freed once idle (1 s in the tests), and the document closed.
    docs = await log.wait(since, DOCUMENT, has(action="closed", room_id=room), "closed")
    assert actions(docs, room_id=room)[0] == "opened"
    assert actions(docs, room_id=room)[-1] == "closed"
    for event in docs + peers:
        await log.validate(event)


async def test_a_document_renamed_then_missing(server, log) -> None:
    write_notebook(server.root / "before.ipynb", notebook(code_cell("x = 1", "c1")))
    since = await log.last_id()
    client = await YClient.connect(server.url, server.token, "before.ipynb")
    try:
        response = await log.http.patch("/api/contents/before.ipynb", json={"path": "after.ipynb"})
        assert response.status_code == 200, response.text
        docs = await log.wait(since, DOCUMENT, has(action="renamed"), "renamed")
        renamed = next(e for e in docs if e["action"] == "renamed")
        assert (renamed["from_path"], renamed["path"]) == ("before.ipynb", "after.ipynb")
        assert renamed["room_id"] == client.room
        os.remove(server.root / "after.ipynb")
        docs = await log.wait(since, DOCUMENT, has(action="missing"), "missing")
        assert next(e for e in docs if e["action"] == "missing")["path"] == "after.ipynb"
        for event in docs:
            await log.validate(event)
    finally:
        await client.close()


async def test_executions_and_the_kernel_status_they_cause(server, log) -> None:
    write_notebook(
        server.root / "run.ipynb",
        notebook(code_cell("print('hello')", "ok"), code_cell("1/0", "bad")),
    )
    since = await log.last_id()
    api = ExecApi(server.url, server.token)
    try:
        (record,) = await api.run("run.ipynb", "ok")
        done = await api.wait(record["id"])
        assert done["status"] == "ok"
        (failing,) = await api.run("run.ipynb", "bad")
        assert (await api.wait(failing["id"]))["status"] == "error"
    finally:
        await api.close()

    runs = await log.wait(
        since, EXECUTION, has(execution_id=failing["id"], action="finished"), "finished"
    )
    mine = [e for e in runs if e["execution_id"] == record["id"]]
    assert [e["action"] for e in mine] == ["queued", "started", "finished"]
    assert [e["status"] for e in mine] == ["queued", "running", "ok"]
    queued, started, finished = mine
    assert finished["kernel_id"] == done["kernel_id"]
    assert finished["path"] == "run.ipynb" and finished["cell_id"] == "ok"
    assert finished["room_id"] == done["room_id"] and finished["user"] == done["user"]
    assert isinstance(finished["duration"], float) and 0 <= finished["duration"] < 30
    assert queued["duration"] is None and started["duration"] is None
    failed = [e for e in runs if e["execution_id"] == failing["id"]]
    assert [e["action"] for e in failed] == ["queued", "started", "finished"]
    assert failed[-1]["status"] == "error"
    assert failed[-1]["error"] == {"ename": "ZeroDivisionError", "evalue": "division by zero"}

    kernel = done["kernel_id"]
    statuses = await log.wait(
        since,
        KERNEL_STATUS,
        lambda events: (
            [e["execution_state"] for e in events if e["kernel_id"] == kernel][-1:] == ["idle"]
        ),
        "the kernel idle again",
    )
    states = [e["execution_state"] for e in statuses if e["kernel_id"] == kernel]
    assert states[0] == "starting"  # the notebook had no kernel: its session started one
    busy = states.index("busy")
    assert "idle" in states[busy:]
    assert all(a != b for a, b in itertools.pairwise(states))  # changes only
    previous = [e["previous"] for e in statuses if e["kernel_id"] == kernel]
    assert previous == [None, *states[:-1]]
    for event in runs + statuses:
        await log.validate(event)


async def test_a_kernel_started_and_shut_down_over_rest(server, log) -> None:
    since = await log.last_id()
    response = await log.http.post("/api/kernels", json={"name": "python3"})
    assert response.status_code == 201, response.text
    kernel = response.json()["id"]

    def states(events: list[Event]) -> list[str]:
        return [e["execution_state"] for e in events if e["kernel_id"] == kernel]

    statuses = await log.wait(
        since, KERNEL_STATUS, lambda e: "idle" in states(e), "the new kernel idle"
    )
    assert states(statuses)[:2] == ["starting", "idle"]
    assert statuses[0]["kernel_name"] == "python3"
    # The watcher's own kernel_info requests are not reported as activity.
    await asyncio.sleep(1.5)
    assert states(await log.read(since, KERNEL_STATUS)) == ["starting", "idle"]

    response = await log.http.delete(f"/api/kernels/{kernel}")
    assert response.status_code == 204
    statuses = await log.wait(since, KERNEL_STATUS, lambda e: "dead" in states(e), "dead")
    dead = [e for e in statuses if e["kernel_id"] == kernel][-1]
    assert (dead["execution_state"], dead["previous"], dead["reason"]) == (
        "dead",
        "idle",
        "shut down",
    )
    server_actions = await log.read(since, KERNEL_ACTIONS)
    assert actions(server_actions, kernel_id=kernel) == ["start", "shutdown"]
    for event in statuses:
        await log.validate(event)


async def test_a_kernel_restarted_on_request_and_after_dying(server, log) -> None:
    since = await log.last_id()
    response = await log.http.post("/api/kernels", json={"name": "python3"})
    kernel = response.json()["id"]

    def reasons(events: list[Event]) -> list[tuple[str, str | None]]:
        found = [e for e in events if e["kernel_id"] == kernel]
        return [(e["execution_state"], e["reason"]) for e in found]

    def after(state: str, reason: str | None) -> Callable[[list[Event]], bool]:
        def ready_again(events: list[Event]) -> bool:
            seen = reasons(events)
            return (state, reason) in seen and seen[-1][0] == "idle"

        return ready_again

    await log.wait(since, KERNEL_STATUS, after("starting", None), "the new kernel idle")
    response = await log.http.post(f"/api/kernels/{kernel}/restart")
    assert response.status_code == 200, response.text
    requested = ("restarting", "restarted on request")
    await log.wait(since, KERNEL_STATUS, after(*requested), "restarted on request")

    processes = psutil.Process(server.process.pid).children(recursive=True)
    (process,) = [p for p in processes if any(kernel in arg for arg in p.cmdline())]
    process.kill()
    died = ("restarting", "the kernel died: restarting it")
    statuses = await log.wait(since, KERNEL_STATUS, after(*died), "restarted after dying")
    states = [state for state, _ in reasons(statuses)]
    assert states[:3] == ["starting", "idle", "restarting"]
    # Ready again after dying: idle at the end (a busy/idle pair may come between, when the
    # kernel answers a request made on its restart), and never dead.
    after_death = states[len(states) - states[::-1].index("restarting") :]
    assert after_death[-1] == "idle" and "dead" not in after_death
    response = await log.http.delete(f"/api/kernels/{kernel}")
    assert response.status_code == 204
    await log.wait(since, KERNEL_STATUS, lambda e: reasons(e)[-1][0] == "dead", "dead")
    for event in statuses:
        await log.validate(event)


async def test_a_store_fault_and_its_recovery() -> None:
    """A room whose store fails once says so, retries, and says when it recovered."""
    emitted: list[tuple[str, dict[str, Any]]] = []
    failures = [OSError("disk I/O error")]

    async def persist(seq: int, update: bytes) -> None:
        if failures:
            raise failures.pop()

    room = Room("json:notebook:faulty", persist=persist, emit=lambda s, d: emitted.append((s, d)))
    doc: Doc[Any] = Doc()
    doc["text"] = Text("hello")
    room.push(doc.get_update())
    await asyncio.wait_for(room.flushed(), 10)
    await room.close()
    assert emitted == [
        (
            STORE_FAULT,
            {
                "operation": "append_update",
                "detail": "disk I/O error",
                "room_id": "json:notebook:faulty",
                "recovered": False,
                "attempts": 1,
            },
        ),
        (
            STORE_FAULT,
            {
                "operation": "append_update",
                "detail": "disk I/O error",
                "room_id": "json:notebook:faulty",
                "recovered": True,
                "attempts": 1,
            },
        ),
    ]
    schema = EventSchema(next(s for s in load_schemas() if s["$id"] == STORE_FAULT))
    for _, data in emitted:
        schema.validate(data)
