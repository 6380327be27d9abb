"""The notification service in-process: a real EventBus over a real SQLite store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from jupyter_events import EventLogger
from yclient import eventually

from jupyter_datastore.errors import BadRequest, NotFound
from jupyter_datastore.events.bus import EventBus
from jupyter_datastore.events.catalog import EXECUTION, NOTIFICATION
from jupyter_datastore.notifications import (
    Change,
    Feed,
    NotificationPolicy,
    Notifications,
    parse_time,
)
from jupyter_datastore.notifications.service import CURSOR
from jupyter_datastore.store import SQLiteStore


class Stack:
    """A store, a bus and the service, restartable over the same database file."""

    def __init__(self, path: str, policy: NotificationPolicy) -> None:
        self.path = path
        self.policy = policy

    async def start(self) -> Stack:
        self.store = SQLiteStore(self.path)
        await self.store.start()
        self.bus = EventBus(EventLogger(), self.store, keep=1000)
        await self.bus.start()
        self.service = Notifications(self.bus, self.store, self.policy)
        await self.service.start()
        return self

    async def stop(self) -> None:
        await self.service.stop()
        await self.bus.stop()
        await self.store.close()

    async def notify(self, recipients: list[str], message: str, **extra: Any) -> int:
        data = {"recipients": recipients, "message": message, **extra}
        return (await self.bus.post_for(NOTIFICATION, "1", data, "bob")).id

    async def rows(self, user: str, count: int) -> list[dict[str, Any]]:
        """The user's rows, once there are `count` of them."""

        async def check() -> list[dict[str, Any]]:
            rows = await self.service.find(user)
            assert len(rows) <= count, rows
            return rows if len(rows) == count else []

        return list(await eventually(check)) if count else await self.service.find(user)


@pytest.fixture
async def stack(tmp_path):
    instance = await Stack(str(tmp_path / "store.db"), NotificationPolicy(notify_after=5)).start()
    yield instance
    await instance.stop()


def finished(**data: Any) -> dict[str, Any]:
    return {
        "action": "finished",
        "execution_id": "e1",
        "kernel_id": "k1",
        "status": "ok",
        "path": "work/analysis.ipynb",
        "cell_id": "c1",
        "user": "alice",
        "duration": 0.5,
        "error": None,
        "reason": None,
        **data,
    }


async def test_one_row_per_recipient_pushed_only_to_their_feeds(stack) -> None:
    alice, bob = stack.service.open_feed("alice"), stack.service.open_feed("bob")
    event_id = await stack.notify(
        ["alice", "carol", "alice"], "hello", type="warning", link="x.ipynb", data={"n": 1}
    )
    [row] = await stack.rows("alice", 1)
    assert row["message"] == "hello" and row["type"] == "warning" and row["link"] == "x.ipynb"
    assert row["data"] == {"n": 1} and row["event_id"] == event_id
    assert row["read"] is False and row["read_at"] is None and row["recipient"] == "alice"
    assert row["created_at"].endswith("Z")
    [carols] = await stack.rows("carol", 1)
    assert carols["id"] != row["id"]
    assert await stack.service.find("bob") == []
    assert await asyncio.wait_for(alice.next(), 5) == [row]
    assert not bob.queue
    await stack.notify(["bob"], "yours")
    [pushed] = await asyncio.wait_for(bob.next(), 5)
    assert pushed["message"] == "yours" and pushed["type"] == "info"  # the default type


async def test_a_recipient_sees_changes_and_deletes_only_their_own(stack) -> None:
    await stack.notify(["alice"], "one")
    [row] = await stack.rows("alice", 1)
    for attempt in (
        stack.service.get("bob", row["id"]),
        stack.service.mark("bob", row["id"], True),
        stack.service.delete("bob", row["id"]),
    ):
        with pytest.raises(NotFound):
            await attempt
    marked = await stack.service.mark("alice", row["id"], True)
    assert marked["read"] is True and marked["read_at"]
    assert await stack.service.find("alice", unread=True) == []
    assert await stack.service.find("alice", unread=False) == [marked]
    unmarked = await stack.service.mark("alice", row["id"], False)
    assert unmarked["read"] is False and unmarked["read_at"] is None
    await stack.service.delete("alice", row["id"])
    with pytest.raises(NotFound):
        await stack.service.get("alice", row["id"])


async def test_failed_and_long_runs_notify_who_started_them(stack) -> None:
    error = {"ename": "ZeroDivisionError", "evalue": "division by zero"}
    stack.bus.emit(EXECUTION, finished(action="started", status="running"))
    stack.bus.emit(EXECUTION, finished(status="error", error=error))
    stack.bus.emit(EXECUTION, finished(execution_id="e2", duration=4.9))  # short: nothing
    stack.bus.emit(EXECUTION, finished(execution_id="e3", duration=75))
    stack.bus.emit(EXECUTION, finished(execution_id="e4", status="error", user=None))
    stack.bus.emit(EXECUTION, finished(execution_id="e5", status="interrupted", duration=9))
    newest_first = await stack.rows("alice", 3)
    failed, long, interrupted = reversed(newest_first)
    assert failed["type"] == "error" and failed["source"] == "e1"
    assert failed["message"] == (
        "Cell c1 in work/analysis.ipynb failed: ZeroDivisionError: division by zero"
    )
    assert failed["link"] == "work/analysis.ipynb"
    assert failed["data"]["error"] == error and failed["data"]["kernel_id"] == "k1"
    assert long["type"] == "success" and long["source"] == "e3"
    assert long["message"] == "Cell c1 in work/analysis.ipynb finished after 1 min 15 s"
    assert (
        interrupted["type"] == "warning" and "ended interrupted after 9 s" in interrupted["message"]
    )


async def test_long_run_notices_can_be_turned_off(tmp_path) -> None:
    stack = await Stack(str(tmp_path / "s.db"), NotificationPolicy(notify_after=0)).start()
    try:
        stack.bus.emit(EXECUTION, finished(duration=3600))
        stack.bus.emit(EXECUTION, finished(execution_id="e2", status="error"))
        [row] = await stack.rows("alice", 1)
        assert row["source"] == "e2" and row["message"].endswith("failed: an error")
    finally:
        await stack.stop()


async def test_events_of_a_stopped_service_become_rows_once_at_the_next_start(stack) -> None:
    await stack.notify(["alice"], "before")
    [before] = await stack.rows("alice", 1)
    await stack.service.stop()
    # While it is down, events still go into the log.
    await stack.notify(["alice"], "while down")
    stack.bus.emit(EXECUTION, finished(status="error"))
    await eventually(lambda: stack.store.read_events(before["event_id"] + 1))
    await stack.stop()
    await stack.start()
    rows = await stack.rows("alice", 3)
    assert [r["message"] for r in rows][1:] == ["while down", "before"]
    # Rows that were made before a crash cut the cursor's commit are made again once.
    await stack.service.mark("alice", before["id"], True)
    await stack.service.stop()
    await stack.store.set_cursor(CURSOR, 0)
    await stack.stop()
    await stack.start()
    again = await stack.service.find("alice")
    assert [r["id"] for r in again] == [r["id"] for r in rows]
    assert [r["read"] for r in again] == [False, False, True]  # still read
    assert await stack.store.get_cursor(CURSOR) == rows[0]["event_id"]


async def test_resume_gives_the_rows_after_a_time_oldest_first(stack) -> None:
    for message in ("a", "b", "c"):
        await stack.notify(["alice"], message)
    rows = await stack.rows("alice", 3)
    after = await stack.service.after("alice", rows[2]["created_at"], 10)
    assert after is not None and [r["message"] for r in after] == ["b", "c"]
    assert await stack.service.after("alice", rows[2]["created_at"], 1) is None
    assert await stack.service.after("bob", "2000-01-01T00:00:00Z", 10) == []


async def test_each_feed_of_the_recipient_is_told_of_reads_and_deletes(stack) -> None:
    await stack.notify(["alice"], "one")
    [row] = await stack.rows("alice", 1)
    windows = [stack.service.open_feed("alice"), stack.service.open_feed("alice")]
    bob = stack.service.open_feed("bob")
    marked = await stack.service.mark("alice", row["id"], True)
    for feed in windows:
        assert await asyncio.wait_for(feed.next(), 5) == [Change("updated", marked)]
    await stack.service.mark("alice", row["id"], True)  # no change: nothing told
    unmarked = await stack.service.mark("alice", row["id"], False)
    await stack.service.delete("alice", row["id"])
    for feed in windows:
        assert await asyncio.wait_for(feed.next(), 5) == [
            Change("updated", unmarked),
            Change("deleted", {"id": row["id"]}),
        ]
    assert not bob.queue
    for feed in (*windows, bob):
        stack.service.close_feed(feed)


def test_a_feed_too_far_behind_is_closed() -> None:
    feed = Feed("alice", limit=2)
    feed.offer({"id": "1"})
    feed.offer({"id": "2"})
    assert feed.closed is None
    feed.offer({"id": "3"})
    assert feed.closed == "overflow" and not feed.queue


def test_times_are_read_as_iso_8601_and_compared_in_utc() -> None:
    assert parse_time("2024-05-01T12:00:00Z", "since") == "2024-05-01T12:00:00.000000Z"
    assert parse_time("2024-05-01T14:00:00+02:00", "since") == "2024-05-01T12:00:00.000000Z"
    assert parse_time("2024-05-01", "until") == "2024-05-01T00:00:00.000000Z"
    for bad in ("yesterday", "", 5, None, "2024-13-01"):
        with pytest.raises(BadRequest):
            parse_time(bad, "since")
