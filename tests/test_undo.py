"""Per-user undo and redo on a real server, with real users (alice, bob, carol: see
`two_users.py`) editing one notebook over real sockets."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from conftest import Server
from execapi import ExecApi, outputs_text
from notebooks import code_cell, notebook, read_notebook, sources, write_notebook
from pycrdt import Array
from two_users import ARGS, two_users_env
from yclient import YClient, eventually, until

NAMED = {"alice": "alice-token", "bob": "bob-token", "carol": "carol-token"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = Server(tmp_path_factory.mktemp("root"), ARGS, env=two_users_env()).start()
    yield instance
    instance.stop()
    instance.check_log()
    instance.remove_home()


@pytest.fixture
async def http(served: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        yield client


async def change(
    http: httpx.AsyncClient, token: str, room: str, verb: str = "undo", **query: Any
) -> httpx.Response:
    return await http.post(
        f"/api/datastore/rooms/{room}/{verb}",
        params=query,
        headers={"Authorization": f"token {token}"},
    )


def source(client: YClient, index: int = 0) -> str:
    return str(client.doc.get("cells", type=Array)[index]["source"])


def insert(client: YClient, at: int, text: str, index: int = 0) -> None:
    client.doc.get("cells", type=Array)[index]["source"].insert(at, text)


async def everyone_sees(clients: list[YClient], text: str, what: str) -> None:
    await until(lambda: all(source(c) == text for c in clients), what=what)


async def test_alices_undo_leaves_bobs_edits(served: Server, http: httpx.AsyncClient) -> None:
    path = served.root / "shared.ipynb"
    write_notebook(path, notebook(code_cell("x = 1", "c1")))
    alice, bob, carol = [
        await YClient.connect(served.url, token, "shared.ipynb") for token in NAMED.values()
    ]
    clients = [alice, bob, carol]
    room = alice.room
    try:
        insert(alice, 5, "  # alice")
        await everyone_sees(clients, "x = 1  # alice", "alice's edit")
        insert(bob, 0, "y = 2\n")
        await everyone_sees(clients, "y = 2\nx = 1  # alice", "bob's edit")

        response = await change(http, NAMED["alice"], room)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "room_id": room,
            "user": "alice",
            "status": "undone",
            "steps": 1,
            "can_undo": False,
            "can_redo": True,
        }
        await everyone_sees(clients, "y = 2\nx = 1", "alice's edit undone, bob's kept")
        await until(
            lambda: sources(read_notebook(path)) == ["y = 2\nx = 1"], what="the undo autosaved"
        )

        response = await change(http, NAMED["alice"], room, "redo")
        assert response.json()["status"] == "redone" and response.json()["can_undo"]
        await everyone_sees(clients, "y = 2\nx = 1  # alice", "alice's edit redone")

        # Bob's history is his own: his undo takes back his edit and leaves alice's.
        response = await change(http, NAMED["bob"], room)
        assert response.json()["user"] == "bob" and not response.json()["can_undo"]
        await everyone_sees(clients, "x = 1  # alice", "bob's edit undone")
        await until(
            lambda: sources(read_notebook(path)) == ["x = 1  # alice"], what="bob's undo saved"
        )

        nothing = await change(http, NAMED["bob"], room)
        assert nothing.status_code == 409
        assert nothing.json()["error"] == "conflict"
        assert "bob has nothing to undo" in nothing.json()["detail"]
        # Carol only watched: nothing of hers to undo or redo.
        assert (await change(http, NAMED["carol"], room)).status_code == 409
        assert (await change(http, NAMED["carol"], room, "redo")).status_code == 409
        assert source(carol) == "x = 1  # alice"
    finally:
        for client in clients:
            await client.close()


async def test_one_undo_takes_back_a_burst_of_typing(
    served: Server, http: httpx.AsyncClient
) -> None:
    write_notebook(served.root / "typing.ipynb", notebook(code_cell("", "c1")))
    alice = await YClient.connect(served.url, NAMED["alice"], "typing.ipynb")
    bob = await YClient.connect(served.url, NAMED["bob"], "typing.ipynb")
    try:
        for char in "print(1)":  # keystroke by keystroke, each its own update
            insert(alice, len(source(alice)), char)
        await everyone_sees([alice, bob], "print(1)", "alice's typing")
        response = await change(http, NAMED["alice"], alice.room, steps="5")
        assert response.json()["steps"] == 1  # one burst: one step
        await everyone_sees([alice, bob], "", "the burst undone")
    finally:
        await alice.close()
        await bob.close()


async def test_outputs_the_server_writes_are_no_ones_steps(served: Server) -> None:
    write_notebook(served.root / "run.ipynb", notebook(code_cell("", "c1")))
    alice = await YClient.connect(served.url, NAMED["alice"], "run.ipynb")
    api = ExecApi(served.url, NAMED["alice"])
    http = api.http
    try:
        insert(alice, 0, "print('hi')")
        path = served.root / "run.ipynb"
        await until(lambda: sources(read_notebook(path)) == ["print('hi')"], what="typed, saved")
        [record] = await api.run("run.ipynb", "c1")
        await api.wait(record["id"])
        await until(lambda: outputs_text(alice.doc, "c1") == "hi\n", what="the output")
        response = await change(http, NAMED["alice"], alice.room)
        assert response.status_code == 200 and not response.json()["can_undo"]
        await until(lambda: source(alice) == "", what="the typing undone")
        assert outputs_text(alice.doc, "c1") == "hi\n"  # the executor's output stays
    finally:
        await alice.close()
        await api.close()


async def test_a_shared_token_names_no_one(served: Server, http: httpx.AsyncClient) -> None:
    write_notebook(served.root / "anon.ipynb", notebook(code_cell("a", "c1")))
    anonymous = await YClient.connect(served.url, served.token, "anon.ipynb")
    alice = await YClient.connect(served.url, NAMED["alice"], "anon.ipynb")
    try:
        insert(anonymous, 1, "b")
        await everyone_sees([anonymous, alice], "ab", "the anonymous edit")
        refused = await change(http, served.token, anonymous.room)
        assert refused.status_code == 403
        assert "names none" in refused.json()["detail"]
        # ...and the anonymous edit is no one's step: not alice's either.
        assert (await change(http, NAMED["alice"], alice.room)).status_code == 409
        assert source(alice) == "ab"
    finally:
        await anonymous.close()
        await alice.close()


async def test_rooms_not_open_and_bad_requests(served: Server, http: httpx.AsyncClient) -> None:
    alice = NAMED["alice"]
    never_opened = f"json:notebook:{uuid.uuid4()}"
    missing = await change(http, alice, never_opened)
    assert missing.status_code == 404 and "not open" in missing.json()["detail"]
    for room in ("nonsense", "json:notebook:not-an-id!", f"csv:table:{uuid.uuid4()}"):
        response = await change(http, alice, room)
        assert response.status_code == 400, (room, response.text)
    for steps in ("0", "101", "two", "-1", "1" * 5000):
        response = await change(http, alice, never_opened, steps=steps)
        assert response.status_code == 400, (steps, response.text)
        assert "steps" in response.json()["detail"]
    unauthenticated = await http.post(f"/api/datastore/rooms/{never_opened}/undo")
    assert unauthenticated.status_code == 403


async def test_history_ends_with_the_room(served: Server, http: httpx.AsyncClient) -> None:
    write_notebook(served.root / "closed.ipynb", notebook(code_cell("", "c1")))
    alice = await YClient.connect(served.url, NAMED["alice"], "closed.ipynb")
    room = alice.room
    insert(alice, 0, "soon gone")
    path = served.root / "closed.ipynb"
    await until(lambda: sources(read_notebook(path)) == ["soon gone"], what="typed, saved")
    await alice.close()

    async def closed() -> bool:
        response = await http.get(
            "/api/datastore/status", headers={"Authorization": f"token {served.token}"}
        )
        return room not in [r["name"] for r in response.json()["rooms"]]

    await eventually(closed)  # evicted once idle (room_idle_timeout=1 s)
    assert (await change(http, NAMED["alice"], room)).status_code == 404
    reopened = await YClient.connect(served.url, NAMED["alice"], "closed.ipynb")
    try:
        assert source(reopened) == "soon gone"
        assert (await change(http, NAMED["alice"], room)).status_code == 409
    finally:
        await reopened.close()
