"""`WS /api/datastore/state/subscribe`: each user's view of the server's state, live, as JSON.

Real servers: the shared token's (who sees everything) and the one with named people and roles
(`tests/roles.py`: alice owns all, nobody else has a role until she shares).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.parse
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import pytest
import websockets
from jupyter_server.auth.authorizer import Authorizer
from notebooks import code_cell, notebook, write_notebook
from roles import ROLE_ARGS, TOKENS, http, share
from two_users import two_users_env
from yclient import eventually, until

from jupyter_datastore.rooms.room import Room
from jupyter_datastore.state.feed import StateFeeds
from jupyter_datastore.state.model import STATE_ROOM, StateModel

pytestmark = pytest.mark.timeout(180)

SUBSCRIBE = "/api/datastore/state/subscribe"


class FeedSocket:
    """A subscriber: every frame as it comes, and the view they add up to."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, base_url: str, token: str) -> FeedSocket:
        url = base_url.replace("http", "ws", 1) + SUBSCRIBE + "?token=" + urllib.parse.quote(token)
        feed = cls(await websockets.connect(url))
        await until(lambda: bool(feed.frames), 10, "the first frame")
        return feed

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                assert isinstance(message, str)  # text frames only
                self.frames.append(json.loads(message))
        except websockets.ConnectionClosed:
            pass

    @property
    def changes(self) -> list[list[Any]]:
        return [c for f in self.frames if f.get("type") == "changes" for c in f["changes"]]

    def view(self) -> dict[str, Any]:
        """The first frame's state with every change since applied."""
        first = self.frames[0]
        assert first["type"] == "state"
        state = json.loads(json.dumps(first["state"]))
        for name, key, value in self.changes:
            if value is None:
                state[name].pop(key, None)
            else:
                state[name][key] = value
        return dict(state)

    def saw(self, predicate: Callable[[str, str, Any], bool]) -> bool:
        return any(predicate(name, key, value) for name, key, value in self.changes)

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)


def close_code(ws: Any) -> int | None:
    return ws.close_code  # type: ignore[no-any-return]


async def test_one_frame_per_write_following_the_rights_without_a_server() -> None:
    model = StateModel(Room(STATE_ROOM, read_only="read-only"))
    feeds = StateFeeds(
        model, lambda: {"session_id": "s", "room_id": STATE_ROOM, **model.snapshot()}
    )
    everything = [True]
    frames: list[dict[str, Any]] = []
    closed: list[int] = []
    feed = feeds.open(
        lambda: everything[0],
        lambda path: path == "a.txt",
        frames.append,
        lambda code, reason: closed.append(code),
    )
    assert frames == [
        {"type": "state", "state": {"session_id": "s", "room_id": STATE_ROOM, **model.snapshot()}}
    ]
    a, b = {"path": "a.txt"}, {"path": "b.txt"}
    model.write([("contents", "a.txt", a), ("contents", "b.txt", b)])
    assert frames[1] == {
        "type": "changes",
        "changes": [["contents", "a.txt", a], ["contents", "b.txt", b]],
    }
    # No longer sees everything (a rule changed): the next write's frame also takes b away.
    everything[0] = False
    a1 = {"path": "a.txt", "size": 1}
    model.write([("contents", "a.txt", a1)])
    assert frames[2] == {
        "type": "changes",
        "changes": [["contents", "a.txt", a1], ["contents", "b.txt", None]],
    }
    model.write([("contents", "b.txt", {"path": "b.txt", "size": 2})])  # not in the view
    assert len(frames) == 3
    everything[0] = True
    feed.refresh()  # the live re-check
    assert frames[3] == {
        "type": "changes",
        "changes": [["contents", "b.txt", {"path": "b.txt", "size": 2}]],
    }
    feeds.stop()
    assert closed == [1001] and not model.listeners


@pytest.fixture
async def rest(server: Any) -> Any:
    headers = {"Authorization": f"token {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as client:
        yield client


async def cleanup(client: httpx.AsyncClient) -> None:
    for session in (await client.get("/api/sessions")).json():
        await client.delete(f"/api/sessions/{session['id']}")
    for kernel in (await client.get("/api/kernels")).json():
        await client.delete(f"/api/kernels/{kernel['id']}")


async def test_first_frame_is_the_snapshot_and_kernels_come_and_go(server: Any, rest: Any) -> None:
    feed = await FeedSocket.connect(server.url, server.token)
    try:
        assert feed.frames[0] == {"type": "state", "state": server.get("/api/datastore/state")}
        kernel = (await rest.post("/api/kernels", json={"name": "python3"})).json()
        kernel_id = kernel["id"]
        await until(
            lambda: feed.saw(lambda m, k, v: m == "kernels" and k == kernel_id and v is not None),
            30,
            "the kernel started",
        )
        # Stopped once ready: a kernel stopped while it imports prints a traceback.
        await until(
            lambda: feed.view()["kernels"].get(kernel_id, {}).get("execution_state") == "idle",
            120,
            "the kernel idle",
        )
        assert (await rest.delete(f"/api/kernels/{kernel_id}")).status_code == 204
        await until(
            lambda: feed.saw(lambda m, k, v: m == "kernels" and k == kernel_id and v is None),
            30,
            "the kernel gone",
        )
        # Every frame is a whole write's changes; what they add up to is what GET says.
        assert all(f["type"] == "changes" and f["changes"] for f in feed.frames[1:])
        await eventually(
            lambda: _async(lambda: feed.view() == server.get("/api/datastore/state")), 30
        )
    finally:
        await feed.close()
        await cleanup(rest)


async def _async(check: Callable[[], Any]) -> Any:
    return check()


async def test_an_execution_started_over_rest_shows(server: Any, rest: Any) -> None:
    write_notebook(server.root / "feed-run.ipynb", notebook(code_cell("6 * 7", "c1")))
    feed = await FeedSocket.connect(server.url, server.token)
    try:
        response = await rest.post(
            "/api/datastore/executions", json={"path": "feed-run.ipynb", "cell_ids": ["c1"]}
        )
        assert response.status_code == 202, response.text
        execution_id = response.json()["executions"][0]["id"]
        await until(
            lambda: feed.saw(lambda m, k, v: m == "executions" and k == execution_id),
            30,
            "the execution",
        )
        await until(
            lambda: feed.view()["executions"][execution_id]["status"] == "ok",
            120,
            "the execution finished",
        )
        assert feed.view()["executions"][execution_id]["path"] == "feed-run.ipynb"
    finally:
        await feed.close()
        await cleanup(rest)


async def test_a_client_message_is_an_error_and_the_socket_stays(server: Any, rest: Any) -> None:
    feed = await FeedSocket.connect(server.url, server.token)
    try:
        await feed.ws.send(json.dumps({"type": "subscribe"}))
        await until(lambda: any("__control__" in f for f in feed.frames), 10, "the error")
        error = next(f for f in feed.frames if "__control__" in f)
        assert error["__control__"] == "error" and error["detail"]
        await feed.ws.send("not even JSON")
        await until(lambda: sum("__control__" in f for f in feed.frames) == 2, 10, "two errors")
        # Still open, still fed.
        response = await rest.put("/api/contents/feed-note.txt", json=_text("still here"))
        assert response.status_code in (200, 201), response.text
        await until(
            lambda: feed.saw(lambda m, k, v: m == "contents" and k == "feed-note.txt"),
            30,
            "a change after the messages",
        )
        assert close_code(feed.ws) is None
    finally:
        await feed.close()


async def test_without_login_the_socket_is_refused(server: Any) -> None:
    url = server.url.replace("http", "ws", 1) + SUBSCRIBE + "?token=wrong"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url)
    assert refused.value.response.status_code == 403


def _text(content: str) -> dict[str, Any]:
    return {"type": "file", "format": "text", "content": content}


async def test_the_server_stopping_closes_feeds_with_1001(make_server: Any) -> None:
    instance = make_server()
    feed = await FeedSocket.connect(instance.url, instance.token)
    try:
        await asyncio.get_running_loop().run_in_executor(None, instance.stop, signal.SIGTERM)
        await asyncio.wait_for(feed.ws.wait_closed(), 30)
        assert close_code(feed.ws) == 1001
    finally:
        await feed.close()


# --- per-user views: the roles server ---


def changed(path: str) -> Callable[[str, str, Any], bool]:
    """A change that brings or updates the entry of `path` in `contents`."""
    return lambda name, key, value: name == "contents" and key == path and value is not None


async def put_text(user: str, server: Any, path: str, content: str) -> None:
    async with http(server, user) as client:
        response = await client.put(f"/api/contents/{path}", json=_text(content))
        assert response.status_code in (200, 201), response.text


async def get_state(user: str, server: Any) -> httpx.Response:
    async with http(server, user) as client:
        return await client.get("/api/datastore/state")


async def test_a_restricted_viewer_sees_only_their_entries_live(roles_server: Any) -> None:
    server = roles_server
    (server.root / "feed").mkdir(exist_ok=True)
    await put_text("alice", server, "feed/shared.txt", "1")
    await put_text("alice", server, "feed/secret.txt", "1")
    await share(server, "feed/shared.txt", {"users": {"bob": "viewer"}})
    alice = await FeedSocket.connect(server.url, TOKENS["alice"])
    bob = await FeedSocket.connect(server.url, TOKENS["bob"])
    try:
        # The first frame is each one's GET.
        assert bob.frames[0]["state"] == (await get_state("bob", server)).json()
        assert alice.frames[0]["state"] == (await get_state("alice", server)).json()
        assert "feed/shared.txt" in bob.view()["contents"]
        assert "feed/secret.txt" not in bob.view()["contents"]
        assert "feed/secret.txt" in alice.view()["contents"]

        # Live: the secret's change reaches alice only; the shared file's, both.
        await put_text("alice", server, "feed/secret.txt", "2")
        await put_text("alice", server, "feed/shared.txt", "2")
        for feed in (alice, bob):
            await until(partial(feed.saw, changed("feed/shared.txt")), 30, "the shared change")
        await until(
            lambda: alice.saw(lambda m, k, v: k == "feed/secret.txt"), 30, "alice: the secret"
        )
        assert "secret" not in json.dumps(bob.frames)

        # A rule given while connected adds the secret to bob's view, taking it back removes it.
        await share(server, "feed/secret.txt", {"users": {"bob": "viewer"}})
        await until(
            lambda: "feed/secret.txt" in bob.view()["contents"], 10, "the secret shown to bob"
        )
        assert bob.view() == (await get_state("bob", server)).json()
        await share(server, "feed/secret.txt", {"users": {"bob": "none"}})
        await until(
            lambda: "feed/secret.txt" not in bob.view()["contents"], 10, "the secret taken back"
        )
        assert bob.saw(lambda m, k, v: m == "contents" and k == "feed/secret.txt" and v is None)
        assert bob.view() == (await get_state("bob", server)).json()

        # Each rule change is also said as such: roles may differ (a panel asks again).
        def told() -> int:
            return sum(f.get("__control__") == "rules_changed" for f in bob.frames)

        await until(lambda: told() == 2, 10, "two rules_changed frames")
        assert close_code(bob.ws) is None
    finally:
        await alice.close()
        await bob.close()


async def test_a_user_with_no_role_gets_what_get_gives_them(roles_server: Any) -> None:
    """mallory has no role anywhere: GET /api/datastore/state answers her (200) with nothing
    of any document, and so does the feed, live."""
    server = roles_server
    (server.root / "feed").mkdir(exist_ok=True)
    await put_text("alice", server, "feed/mallory-not.txt", "1")
    got = await get_state("mallory", server)
    assert got.status_code == 200
    mallory = await FeedSocket.connect(server.url, TOKENS["mallory"])
    alice = await FeedSocket.connect(server.url, TOKENS["alice"])
    try:
        assert mallory.frames[0] == {"type": "state", "state": got.json()}
        state = mallory.frames[0]["state"]
        for name in ("sessions", "executions", "documents", "contents", "terminals"):
            assert state[name] == {}, name
        await put_text("alice", server, "feed/mallory-not.txt", "2")
        await until(
            lambda: alice.saw(lambda m, k, v: k == "feed/mallory-not.txt"), 30, "alice's write"
        )
        assert not mallory.saw(lambda m, k, v: m == "contents")
        assert mallory.view() == (await get_state("mallory", server)).json()
    finally:
        await mallory.close()
        await alice.close()


# --- losing read on kernels: a base authorizer that refuses it ---

FLAG = "STATE_FEED_TEST_FLAG"


class NoKernelsWhenFlagged(Authorizer):  # type: ignore[misc]
    """jupyter_server's authorizer (the base ours wraps), refusing `kernels` to mallory
    always, and to bob while the file named by $STATE_FEED_TEST_FLAG exists."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        name = getattr(user, "username", None)
        if resource != "kernels":
            return True
        if name == "mallory":
            return False
        return not (name == "bob" and os.path.exists(os.environ[FLAG]))


async def test_without_read_on_kernels_refused_and_closed_with_4403(
    make_server: Any, tmp_path: Any
) -> None:
    flag = tmp_path / "no-kernels-for-bob"
    authorizer = f"--ServerApp.authorizer_class={__name__}.NoKernelsWhenFlagged"
    root = tmp_path / "root"
    root.mkdir()
    server = make_server([*ROLE_ARGS, authorizer], root, env={**two_users_env(), FLAG: str(flag)})
    # Refused as GET /api/datastore/state refuses: 403.
    assert (await get_state("mallory", server)).status_code == 403
    url = server.url.replace("http", "ws", 1) + SUBSCRIBE + "?token=" + TOKENS["mallory"]
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url)
    assert refused.value.response.status_code == 403
    # bob may, until he may not: the live re-check closes his feed with 4403.
    bob = await FeedSocket.connect(server.url, TOKENS["bob"])
    try:
        assert bob.frames[0]["state"] == (await get_state("bob", server)).json()
        flag.write_text("")
        await share(server, "", {"users": {"carol": "viewer"}})  # a rule change: a re-check
        await asyncio.wait_for(bob.ws.wait_closed(), 10)
        assert close_code(bob.ws) == 4403
        assert json.loads(bob.ws.close_reason)["error"] == "forbidden"
    finally:
        await bob.close()
