"""Notifications on a real server with two users (alice and bob, see `two_users.py`)."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets
from conftest import Server
from execapi import ExecApi
from notebooks import code_cell, notebook, write_notebook
from two_users import ARGS, two_users_env
from yclient import eventually

pytestmark = pytest.mark.timeout(180)

FEED = "/api/events/subscribe/notification"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("root")
    instance = Server(root, [*ARGS, "--DatastoreApp.notify_after=1"], env=two_users_env()).start()
    yield instance
    instance.stop()
    instance.check_log()  # no traceback, not even for the sockets that went away
    instance.remove_home()


class Client:
    """One user's REST calls."""

    def __init__(self, server: Server, token: str) -> None:
        self.server = server
        self.token = token
        self.http = httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": f"token {token}"}, timeout=30
        )

    async def notify(self, recipients: list[str], message: str, **extra: Any) -> int:
        """POST a notification; the id of its event."""
        body = {"recipients": recipients, "message": message, **extra}
        response = await self.http.post("/api/notifications", json=body)
        assert response.status_code == 201, response.text
        return int(response.json()["event_id"])

    async def list(self, **query: str) -> list[dict[str, Any]]:
        response = await self.http.get("/api/notifications", params=query)
        assert response.status_code == 200, response.text
        return list(response.json()["notifications"])

    async def row_of(self, event_id: int) -> dict[str, Any]:
        """This user's row made from an event, once it is there."""

        async def find() -> list[dict[str, Any]]:
            return [row for row in await self.list() if row["event_id"] == event_id]

        [row] = await eventually(find)
        return row

    async def feed(self, since: str | None = None) -> Any:
        query = {"token": self.token, **({"since": since} if since else {})}
        url = self.server.url.replace("http", "ws", 1) + FEED + "?" + urllib.parse.urlencode(query)
        return await websockets.connect(url)


async def frame(ws: Any) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), 30)))


def shifted(timestamp: str, **delta: float) -> str:
    moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ") + timedelta(**delta)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
async def alice(server: Server) -> AsyncIterator[Client]:
    client = Client(server, "alice-token")
    yield client
    await client.http.aclose()


@pytest.fixture
async def bob(server: Server) -> AsyncIterator[Client]:
    client = Client(server, "bob-token")
    yield client
    await client.http.aclose()


async def test_a_notification_to_alice_is_invisible_to_bob(alice, bob) -> None:
    event_id = await bob.notify(["alice"], "for alice only", type="warning", link="a.ipynb")
    row = await alice.row_of(event_id)
    assert row["message"] == "for alice only" and row["type"] == "warning"
    assert row["recipient"] == "alice" and row["link"] == "a.ipynb" and row["read"] is False
    one = f"/api/notifications/{row['id']}"
    assert (await alice.http.get(one)).json() == row

    # Bob: not in his list; by id it is missing, for reading, changing and deleting alike.
    assert event_id not in [r["event_id"] for r in await bob.list()]
    for response in (
        await bob.http.get(one),
        await bob.http.patch(one, json={"read": True}),
        await bob.http.delete(one),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "not_found"
    assert (await alice.http.get(one)).json() == row  # untouched by bob's attempts

    # Time filters: `since` is inclusive, `until` exclusive.
    created = row["created_at"]
    assert row in await alice.list(since=created)
    assert row not in await alice.list(since=shifted(created, microseconds=1))
    assert row not in await alice.list(until=created)
    assert row in await alice.list(until=shifted(created, milliseconds=1), unread="true")

    # Read, then unread again.
    response = await alice.http.patch(one, json={"read": True})
    assert response.status_code == 200, response.text
    read = response.json()
    assert read["read"] is True and read["read_at"]
    assert read["id"] not in [r["id"] for r in await alice.list(unread="true")]
    assert read in await alice.list(unread="false")
    unread = (await alice.http.patch(one, json={"read": False})).json()
    assert unread["read"] is False and unread["read_at"] is None
    assert unread in await alice.list(unread="true")

    response = await alice.http.delete(one)
    assert response.status_code == 204 and response.content == b""
    assert (await alice.http.get(one)).status_code == 404
    assert event_id not in [r["event_id"] for r in await alice.list()]


async def test_bad_queries_and_bodies_are_400_with_a_reason(alice) -> None:
    for query, word in (
        ("unread=maybe", "unread"),
        ("since=not-a-date", "since"),
        ("until=2024-02-30", "until"),
        ("limit=-1", "limit"),
        ("limit=many", "limit"),
    ):
        response = await alice.http.get(f"/api/notifications?{query}")
        assert response.status_code == 400, query
        assert word in response.json()["message"]
    row = await alice.row_of(await alice.notify(["alice"], "patch me"))
    one = f"/api/notifications/{row['id']}"
    for body in ({}, {"read": "yes"}, {"read": True, "message": "x"}, []):
        response = await alice.http.patch(one, json=body)
        assert response.status_code == 400, body
        assert response.json()["error"] == "bad_request"
    assert (await alice.http.patch(one, content=b"{")).status_code == 400
    assert (await alice.list(limit="1"))[0]["id"] == row["id"]  # the newest


async def test_the_feed_pushes_each_user_their_own_and_resumes(alice, bob) -> None:
    alice_ws, bob_ws = await alice.feed(), await bob.feed()
    try:
        await bob.notify(["alice"], "live 1")
        got = await frame(alice_ws)
        assert got["type"] == "notification"
        first = got["notification"]
        assert first["message"] == "live 1" and first["recipient"] == "alice"
        await alice.notify(["bob"], "for bob")
        got = await frame(bob_ws)  # bob's first frame is his own: he never got alice's
        assert got["notification"]["message"] == "for bob"
        assert got["notification"]["recipient"] == "bob"
    finally:
        await alice_ws.close()
        await bob_ws.close()

    # Missed while away: a reconnect with ?since= gets them first, then live ones.
    await bob.notify(["alice"], "missed 1")
    await bob.notify(["alice", "bob"], "missed 2")
    alice_ws = await alice.feed(since=first["created_at"])
    try:
        missed = [(await frame(alice_ws))["notification"]["message"] for _ in range(2)]
        assert missed == ["missed 1", "missed 2"]
        assert await frame(alice_ws) == {
            "__control__": "resumed",
            "since": first["created_at"],
            "count": 2,
        }
        await bob.notify(["alice"], "live 2")
        assert (await frame(alice_ws))["notification"]["message"] == "live 2"
    finally:
        await alice_ws.close()

    # Or as the first message; a second resume is refused.
    alice_ws = await alice.feed()
    try:
        await alice_ws.send(json.dumps({"since": first["created_at"]}))
        messages = [(await frame(alice_ws))["notification"]["message"] for _ in range(3)]
        assert messages == ["missed 1", "missed 2", "live 2"]
        assert (await frame(alice_ws))["count"] == 3
        await alice_ws.send(json.dumps({"since": first["created_at"]}))
        assert (await frame(alice_ws))["__control__"] == "error"
        await alice_ws.send("not json")
        assert (await frame(alice_ws))["__control__"] == "error"
    finally:
        await alice_ws.close()

    with pytest.raises(websockets.InvalidStatus) as failed:
        await alice.feed(since="last tuesday")
    assert failed.value.response.status_code == 400
    url = alice.server.url.replace("http", "ws", 1) + FEED
    with pytest.raises(websockets.InvalidStatus) as failed:
        await websockets.connect(url)  # no token
    assert failed.value.response.status_code == 403


async def test_a_failed_run_notifies_who_started_it(server, alice, bob) -> None:
    write_notebook(
        server.root / "fails.ipynb",
        notebook(code_cell("1/0", "boom"), code_cell("import time; time.sleep(1.2)", "slow", [])),
    )
    runs = ExecApi(server.url, "alice-token")
    try:
        [failed] = await runs.run("fails.ipynb", "boom")
        [slow] = await runs.run("fails.ipynb", "slow")
        assert (await runs.wait(failed["id"]))["status"] == "error"
        assert (await runs.wait(slow["id"]))["status"] == "ok"
    finally:
        await runs.close()

    async def alices(source: str) -> list[dict[str, Any]]:
        return [row for row in await alice.list() if row["source"] == source]

    [error] = await eventually(lambda: alices(failed["id"]))
    assert error["type"] == "error" and error["link"] == "fails.ipynb"
    assert (
        error["message"] == "Cell boom in fails.ipynb failed: ZeroDivisionError: division by zero"
    )
    assert error["data"]["execution_id"] == failed["id"]
    # The slow one took longer than notify_after (1 s here): its end is a success notice.
    [done] = await eventually(lambda: alices(slow["id"]))
    assert done["type"] == "success" and "finished after" in done["message"]
    sources = {row["source"] for row in await bob.list()}
    assert failed["id"] not in sources and slow["id"] not in sources


async def test_rows_survive_restarts_and_events_before_a_crash_become_rows_once(
    make_server,
) -> None:
    server = make_server(ARGS, env=two_users_env())
    alice, bob = Client(server, "alice-token"), Client(server, "bob-token")
    try:
        kept = await alice.row_of(await alice.notify(["alice"], "kept"))
        await alice.http.patch(f"/api/notifications/{kept['id']}", json={"read": True})

        # Stored in the log (201), then the server is killed at once.
        before_crash = await alice.notify(["alice", "bob"], "just before the crash")
        server.restart(signal.SIGKILL)
        before_stop = await alice.notify(["alice"], "just before the stop")
        server.restart()

        for event_id in (before_crash, before_stop):
            await alice.row_of(event_id)  # exactly one (row_of unpacks one)
        await bob.row_of(before_crash)
        [again] = [row for row in await alice.list() if row["id"] == kept["id"]]
        assert again["read"] is True and again["message"] == "kept"
        rows = await alice.list()
        assert len(rows) == len({row["id"] for row in rows}) == 3
    finally:
        await alice.http.aclose()
        await bob.http.aclose()


async def test_a_read_or_deleted_row_is_told_to_each_of_the_users_windows(alice, bob) -> None:
    """What one of alice's windows does to a row (read, unread, delete), her other windows
    hear on their feeds; bob hears nothing of it."""
    row = await alice.row_of(await bob.notify(["alice"], "read me"))
    windows = [await alice.feed(), await alice.feed()]
    bob_ws = await bob.feed()
    one = f"/api/notifications/{row['id']}"
    try:
        marked = (await alice.http.patch(one, json={"read": True})).json()
        assert marked["read"] is True
        for ws in windows:
            assert await frame(ws) == {"type": "notification_updated", "notification": marked}
        assert (await alice.http.delete(one)).status_code == 204
        for ws in windows:
            assert await frame(ws) == {"type": "notification_deleted", "id": row["id"]}
        # bob's feed got none of it: his next frame is his own new row.
        await alice.notify(["bob"], "for bob after")
        assert (await frame(bob_ws))["notification"]["message"] == "for bob after"
    finally:
        for ws in (*windows, bob_ws):
            await ws.close()
