"""Documents over GraphQL on a real server with named people (see tests/roles.py): the
open documents and their peers, a notebook's cells, cell edits as the caller's own changes
(live in every client, in the caller's undo history), save, undo and redo, and a notebook's
changes as a subscription."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from gql import GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from graphqls import query, ws_client
from notebooks import code_cell, markdown_cell, notebook, read_notebook, sources, write_notebook
from pycrdt import Array, Map
from roles import TOKENS, http, share
from yclient import YClient, eventually, until

ALICE = TOKENS["alice"]

NOTEBOOK = """query ($path: String!) {
  notebook(path: $path) { path live cells { id cellType source outputs executionCount metadata } }
}"""
SET_SOURCE = """mutation ($path: String!, $cellId: String!, $source: String!) {
  setCellSource(path: $path, cellId: $cellId, source: $source) { id source }
}"""
INSERT = """mutation ($path: String!, $index: Int!, $type: CellType!, $source: String!) {
  insertCell(path: $path, index: $index, cellType: $type, source: $source)
}"""
MOVE = """mutation ($path: String!, $cellId: String!, $index: Int!) {
  moveCell(path: $path, cellId: $cellId, index: $index) { id source }
}"""
DELETE = """mutation ($path: String!, $cellId: String!) {
  deleteCell(path: $path, cellId: $cellId)
}"""
UNDO = """mutation ($path: String!, $steps: Int!) {
  undo(path: $path, steps: $steps) { steps canUndo canRedo }
}"""
REDO = """mutation ($path: String!) { redo(path: $path) { steps canUndo canRedo } }"""
SAVE = """mutation ($path: String!) { save(path: $path) }"""
DOCUMENTS = """{ documents { path fileId roomId peerCount
  peers { name displayName color connections } } }"""
CHANGES = """subscription ($path: String!) {
  documentChanges(path: $path) {
    kind cellId index cellType source outputs executionCount metadata
  }
}"""


def watch_request(path: str) -> GraphQLRequest:
    return GraphQLRequest(CHANGES, variable_values={"path": path})


def codes(answer: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in answer.get("errors") or []]


def y_sources(client: YClient) -> list[str]:
    return [str(cell["source"]) for cell in client.doc.get("cells", type=Array)]


def y_ids(client: YClient) -> list[str]:
    return [str(cell["id"]) for cell in client.doc.get("cells", type=Array)]


async def cells_of(server: Any, path: str, token: str = ALICE) -> list[dict[str, Any]]:
    answer = await query(server, NOTEBOOK, {"path": path}, token)
    assert "errors" not in answer, answer
    return list(answer["data"]["notebook"]["cells"])


async def source_list(server: Any, path: str) -> list[str]:
    return [cell["source"] for cell in await cells_of(server, path)]


@contextlib.asynccontextmanager
async def connected(server: Any, token: str, path: str) -> AsyncIterator[YClient]:
    client = await YClient.connect(server.url, token, path)
    try:
        yield client
    finally:
        await client.close()


async def test_a_cell_source_set_over_graphql_is_seen_live(roles_server: Any) -> None:
    server = roles_server
    write_notebook(server.root / "live.ipynb", notebook(code_cell("x = 1", "c1")))
    async with connected(server, ALICE, "live.ipynb") as alice:
        answer = await query(
            server, SET_SOURCE, {"path": "live.ipynb", "cellId": "c1", "source": "x = 2"}, ALICE
        )
        assert answer == {"data": {"setCellSource": {"id": "c1", "source": "x = 2"}}}
        await until(lambda: y_sources(alice) == ["x = 2"], what="the client sees the edit")
        [cell] = await cells_of(server, "live.ipynb")
        assert cell == {
            "id": "c1",
            "cellType": "code",
            "source": "x = 2",
            "outputs": [],
            "executionCount": None,
            "metadata": {},
        }
        answer = await query(server, NOTEBOOK, {"path": "live.ipynb"}, ALICE)
        assert answer["data"]["notebook"]["live"] is True
        await until(
            lambda: sources(read_notebook(server.root / "live.ipynb")) == ["x = 2"],
            what="the edit autosaved",
        )


async def test_a_closed_notebook_is_read_from_its_file(roles_server: Any) -> None:
    server = roles_server
    cells = [code_cell("a = 1", "c1"), markdown_cell("# title", "m1")]
    write_notebook(server.root / "closed.ipynb", notebook(*cells))
    answer = await query(server, NOTEBOOK, {"path": "./closed.ipynb"}, ALICE)
    found = answer["data"]["notebook"]
    assert found["path"] == "closed.ipynb" and found["live"] is False
    assert [(c["id"], c["cellType"], c["source"]) for c in found["cells"]] == [
        ("c1", "code", "a = 1"),
        ("m1", "markdown", "# title"),
    ]


async def test_undo_takes_back_only_the_callers_own_change(roles_server: Any) -> None:
    server = roles_server
    path = "undo.ipynb"
    write_notebook(server.root / path, notebook(code_cell("x = 1", "c1")))
    await share(server, path, {"users": {"bob": "editor"}})
    async with (
        connected(server, ALICE, path) as alice,
        connected(server, TOKENS["bob"], path) as bob,
    ):
        clients = [alice, bob]
        edit = {"path": path, "cellId": "c1", "source": "x = 1  # alice"}
        assert "errors" not in await query(server, SET_SOURCE, edit, ALICE)
        await until(lambda: all(y_sources(c) == ["x = 1  # alice"] for c in clients))
        bob.doc.get("cells", type=Array)[0]["source"].insert(0, "y = 2\n")
        both = ["y = 2\nx = 1  # alice"]
        await until(lambda: all(y_sources(c) == both for c in clients), what="bob's edit")

        answer = await query(server, UNDO, {"path": path, "steps": 1}, ALICE)
        assert answer == {"data": {"undo": {"steps": 1, "canUndo": False, "canRedo": True}}}
        kept = ["y = 2\nx = 1"]
        await until(lambda: all(y_sources(c) == kept for c in clients), what="alice's undone")
        assert await source_list(server, path) == kept

        answer = await query(server, REDO, {"path": path}, ALICE)
        assert answer["data"]["redo"] == {"steps": 1, "canUndo": True, "canRedo": False}
        await until(lambda: all(y_sources(c) == both for c in clients), what="alice's redone")

        # Her change over GraphQL is in the same history REST undoes.
        async with http(server, "alice") as rest:
            response = await rest.post(f"/api/datastore/rooms/{alice.room}/undo")
            assert response.status_code == 200 and response.json()["status"] == "undone"
        await until(lambda: all(y_sources(c) == kept for c in clients), what="REST undo")

        # Bob's own edit (from his client) is his to undo over GraphQL; alice has no more.
        answer = await query(server, UNDO, {"path": path, "steps": 1}, TOKENS["bob"])
        assert answer["data"]["undo"]["steps"] == 1
        await until(lambda: all(y_sources(c) == ["x = 1"] for c in clients), what="bob's undo")
        nothing = await query(server, UNDO, {"path": path, "steps": 1}, TOKENS["bob"])
        assert codes(nothing) == ["conflict"] and nothing["data"] is None


async def test_insert_move_and_delete_cells(roles_server: Any) -> None:
    server = roles_server
    path = "cells.ipynb"
    write_notebook(server.root / path, notebook(code_cell("a", "c1"), code_cell("b", "c2")))
    async with connected(server, ALICE, path) as alice:
        variables = {"path": path, "index": 1, "type": "MARKDOWN", "source": "# notes"}
        answer = await query(server, INSERT, variables, ALICE)
        new_id = answer["data"]["insertCell"]
        assert isinstance(new_id, str) and new_id not in ("c1", "c2")
        await until(lambda: y_ids(alice) == ["c1", new_id, "c2"], what="the inserted cell")
        found = await cells_of(server, path)
        assert [(c["id"], c["cellType"], c["source"]) for c in found] == [
            ("c1", "code", "a"),
            (new_id, "markdown", "# notes"),
            ("c2", "code", "b"),
        ]

        answer = await query(server, MOVE, {"path": path, "cellId": "c2", "index": 0}, ALICE)
        assert answer["data"]["moveCell"] == {"id": "c2", "source": "b"}
        await until(lambda: y_ids(alice) == ["c2", "c1", new_id], what="the moved cell")
        assert y_sources(alice) == ["b", "a", "# notes"]

        answer = await query(server, DELETE, {"path": path, "cellId": new_id}, ALICE)
        assert answer["data"]["deleteCell"] == new_id
        await until(lambda: y_ids(alice) == ["c2", "c1"], what="the deleted cell")
        assert [c["id"] for c in await cells_of(server, path)] == ["c2", "c1"]
        # A code cell inserted at the end is a code cell, with no outputs.
        variables = {"path": path, "index": 2, "type": "CODE", "source": "print(1)"}
        code_id = (await query(server, INSERT, variables, ALICE))["data"]["insertCell"]
        last = (await cells_of(server, path))[-1]
        assert last["id"] == code_id and last["cellType"] == "code" and last["outputs"] == []


async def test_save_writes_the_file_at_once(roles_server: Any) -> None:
    server = roles_server
    path = "save.ipynb"
    write_notebook(server.root / path, notebook(code_cell("old", "c1")))
    edit = {"path": path, "cellId": "c1", "source": "new"}
    assert "errors" not in await query(server, SET_SOURCE, edit, ALICE)
    answer = await query(server, SAVE, {"path": path}, ALICE)
    assert answer["data"]["save"] in ("success", "skipped")  # skipped: autosaved already
    assert sources(read_notebook(server.root / path)) == ["new"]  # on disk when it answers


async def test_document_changes_streams_a_clients_edits(roles_server: Any) -> None:
    server = roles_server
    path = "watched.ipynb"
    write_notebook(server.root / path, notebook(code_cell("", "c1")))
    seen: list[dict[str, Any]] = []

    async def watch() -> None:
        async with ws_client(server, ALICE) as session:
            async for result in session.subscribe(watch_request(path)):
                seen.append(result["documentChanges"])

    watcher = asyncio.ensure_future(watch())
    try:
        async with connected(server, TOKENS["alice"], path) as client:
            text = client.doc.get("cells", type=Array)[0]["source"]
            await type_until_seen(
                lambda: text.insert(len(str(text)), "x"),
                lambda: any(c["kind"] == "SOURCE" for c in seen),
            )
            change = next(c for c in seen if c["kind"] == "SOURCE")
            assert change["cellId"] == "c1" and change["index"] == 0
            assert change["source"] is not None and change["source"].startswith("x")
            assert change["outputs"] is None and change["cellType"] is None

            # Outputs written by a client arrive whole.
            stream = {"output_type": "stream", "name": "stdout", "text": "hi\n"}
            client.doc.get("cells", type=Array)[0]["outputs"].append(Map(stream))
            await until(lambda: any(c["kind"] == "OUTPUTS" for c in seen), what="the outputs")
            outputs = next(c for c in seen if c["kind"] == "OUTPUTS")
            assert (outputs["cellId"], outputs["outputs"]) == ("c1", [stream])
            assert outputs["source"] is None

            # A cell inserted over GraphQL arrives with its content.
            variables = {"path": path, "index": 0, "type": "RAW", "source": "raw text"}
            new_id = (await query(server, INSERT, variables, ALICE))["data"]["insertCell"]
            await until(lambda: any(c["kind"] == "INSERTED" for c in seen), what="the insert")
            inserted = next(c for c in seen if c["kind"] == "INSERTED")
            assert inserted["cellId"] == new_id and inserted["index"] == 0
            assert inserted["cellType"] == "raw" and inserted["source"] == "raw text"

            await query(server, MOVE, {"path": path, "cellId": "c1", "index": 0}, ALICE)
            await until(lambda: any(c["kind"] == "MOVED" for c in seen), what="the move")
            moved = next(c for c in seen if c["kind"] == "MOVED")
            assert (moved["cellId"], moved["index"]) == ("c1", 0)

            await query(server, DELETE, {"path": path, "cellId": new_id}, ALICE)
            await until(lambda: any(c["kind"] == "DELETED" for c in seen), what="the delete")
            deleted = next(c for c in seen if c["kind"] == "DELETED")
            assert (deleted["cellId"], deleted["index"]) == (new_id, 1)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


async def type_until_seen(edit: Callable[[], None], seen: Callable[[], bool]) -> None:
    """Edit until the subscriber reports it: its first edits may come before the
    subscription has started following the room (nothing tells a client when it has)."""
    for _ in range(60):
        edit()
        with contextlib.suppress(AssertionError):
            await until(seen, timeout=0.5, what="the change reported")
            return
    raise AssertionError("the subscription reported no change")


async def test_documents_lists_the_open_room_with_its_peer(roles_server: Any) -> None:
    server = roles_server
    path = "peers.ipynb"
    write_notebook(server.root / path, notebook(code_cell("", "c1")))
    async with connected(server, ALICE, path) as alice:
        shown = {"user": {"username": "alice", "display_name": "Alice A.", "color": "#ff0000"}}
        await alice.set_awareness(alice.doc.client_id, 1, shown)

        async def listed() -> dict[str, Any] | None:
            answer = await query(server, DOCUMENTS, None, ALICE)
            mine = [d for d in answer["data"]["documents"] if d["path"] == path]
            return mine[0] if mine and mine[0]["peers"][0]["displayName"] else None

        document = await eventually(listed)
        assert document["roomId"] == alice.room
        assert document["fileId"] == alice.room.split(":")[2]
        assert document["peerCount"] == 1
        assert document["peers"] == [
            {"name": "alice", "displayName": "Alice A.", "color": "#ff0000", "connections": 1}
        ]


# --- roles: decided as REST decides ---


async def test_a_viewers_edit_is_refused_and_changes_nothing(roles_server: Any) -> None:
    server = roles_server
    path = "viewed.ipynb"
    write_notebook(server.root / path, notebook(code_cell("x = 1", "c1")))
    await share(server, path, {"users": {"carol": "viewer"}})
    carol = TOKENS["carol"]
    async with connected(server, ALICE, path) as alice:
        edit = {"path": path, "cellId": "c1", "source": "hacked"}
        answer = await query(server, SET_SOURCE, edit, carol)
        assert codes(answer) == ["forbidden"] and answer["data"] is None
        for text, variables in [
            (INSERT, {"path": path, "index": 0, "type": "CODE", "source": "hacked"}),
            (MOVE, {"path": path, "cellId": "c1", "index": 0}),
            (DELETE, {"path": path, "cellId": "c1"}),
            (SAVE, {"path": path}),
            (UNDO, {"path": path, "steps": 1}),
        ]:
            refused = await query(server, text, variables, carol)
            assert codes(refused) == ["forbidden"] and refused["data"] is None, text
        # A viewer reads it.
        assert [c["source"] for c in await cells_of(server, path, carol)] == ["x = 1"]
        assert await source_list(server, path) == ["x = 1"]
        assert y_sources(alice) == ["x = 1"]


async def test_no_trace_of_a_private_notebook_for_someone_with_no_role(
    roles_server: Any,
) -> None:
    server = roles_server
    path = "private.ipynb"
    write_notebook(server.root / path, notebook(code_cell("secret = 42", "c1")))
    mallory = TOKENS["mallory"]
    async with connected(server, ALICE, path) as alice:
        answer = await query(server, DOCUMENTS, None, mallory)
        assert "errors" not in answer
        assert "private" not in str(answer["data"]) and alice.room not in str(answer["data"])
        alices = await query(server, DOCUMENTS, None, ALICE)
        assert path in [d["path"] for d in alices["data"]["documents"]]

        for text, variables in [
            (NOTEBOOK, {"path": path}),
            ("query ($path: String!) { forks(path: $path) { id } }", {"path": path}),
            ("query ($path: String!) { history(path: $path) { seq } }", {"path": path}),
            (SET_SOURCE, {"path": path, "cellId": "c1", "source": "mine"}),
        ]:
            refused = await query(server, text, variables, mallory)
            assert codes(refused) == ["forbidden"] and refused["data"] is None, text
            assert "secret" not in str(refused)
        # The same refusal for a notebook that does not exist: existence is not told.
        missing = await query(server, NOTEBOOK, {"path": "nothing-here.ipynb"}, mallory)
        assert codes(missing) == ["forbidden"]

        async with ws_client(server, mallory) as session:
            with pytest.raises(TransportQueryError) as refused_watch:
                async for _ in session.subscribe(watch_request(path)):
                    pass
        assert refused_watch.value.errors is not None
        assert refused_watch.value.errors[0]["extensions"]["code"] == "forbidden"
        assert y_sources(alice) == ["secret = 42"]


# --- bad input: a clear error, nothing changed ---


@pytest.mark.parametrize(
    ("text", "variables", "code"),
    [
        (SET_SOURCE, {"path": "bad.ipynb", "cellId": "nope", "source": "x"}, "not_found"),
        (MOVE, {"path": "bad.ipynb", "cellId": "nope", "index": 0}, "not_found"),
        (MOVE, {"path": "bad.ipynb", "cellId": "c1", "index": 2}, "bad_request"),
        (MOVE, {"path": "bad.ipynb", "cellId": "c1", "index": -1}, "bad_request"),
        (DELETE, {"path": "bad.ipynb", "cellId": "nope"}, "not_found"),
        (INSERT, {"path": "bad.ipynb", "index": 3, "type": "CODE", "source": "x"}, "bad_request"),
        (INSERT, {"path": "bad.ipynb", "index": -1, "type": "CODE", "source": "x"}, "bad_request"),
        (SET_SOURCE, {"path": "../bad.ipynb", "cellId": "c1", "source": "x"}, "not_found"),
        (SET_SOURCE, {"path": "notes.txt", "cellId": "c1", "source": "x"}, "bad_request"),
        (SET_SOURCE, {"path": "missing.ipynb", "cellId": "c1", "source": "x"}, "not_found"),
        (SET_SOURCE, {"path": "a\\b.ipynb", "cellId": "c1", "source": "x"}, "bad_request"),
        (NOTEBOOK, {"path": "notes.txt"}, "bad_request"),
        (NOTEBOOK, {"path": "missing.ipynb"}, "not_found"),
        (UNDO, {"path": "bad.ipynb", "steps": 0}, "bad_request"),
        (UNDO, {"path": "bad.ipynb", "steps": 101}, "bad_request"),
        (UNDO, {"path": "never-opened.ipynb", "steps": 1}, "not_found"),
        (SAVE, {"path": "missing.ipynb"}, "not_found"),
        (
            'mutation { insertCell(path: "bad.ipynb", index: 0, cellType: SHELL, source: "x") }',
            None,
            "invalid_query",
        ),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    roles_server: Any, text: str, variables: dict[str, Any] | None, code: str
) -> None:
    server = roles_server
    if not (server.root / "bad.ipynb").exists():  # written once: its room may be open
        write_notebook(
            server.root / "bad.ipynb", notebook(code_cell("a", "c1"), code_cell("b", "c2"))
        )
    (server.root / "notes.txt").write_text("plain text\n")
    write_notebook(server.root / "never-opened.ipynb", notebook(code_cell("z", "c1")))
    answer = await query(server, text, variables, ALICE)
    assert codes(answer) == [code] and answer["data"] is None, answer
    assert answer["errors"][0]["message"]
    assert await source_list(server, "bad.ipynb") == ["a", "b"]
    assert (server.root / "notes.txt").read_text() == "plain text\n"
    assert not (server.root / "missing.ipynb").exists()


async def test_forks_and_history_of_a_notebook(roles_server: Any) -> None:
    server = roles_server
    path = "forked.ipynb"
    write_notebook(server.root / path, notebook(code_cell("v1", "c1")))
    async with connected(server, ALICE, path) as alice:
        edit = {"path": path, "cellId": "c1", "source": "v2"}
        assert "errors" not in await query(server, SET_SOURCE, edit, ALICE)
        async with http(server, "alice") as rest:
            response = await rest.put(
                f"/api/collaboration/fork/{alice.room}", json={"title": "try", "description": "d"}
            )
            assert response.status_code == 201
            fork_id = response.json()["fork_roomid"]
        answer = await query(
            server,
            "query ($path: String!) "
            "{ forks(path: $path) { id roomId title description synchronize } }",
            {"path": path},
            ALICE,
        )
        assert answer["data"]["forks"] == [
            {
                "id": fork_id,
                "roomId": alice.room,
                "title": "try",
                "description": "d",
                "synchronize": False,
            }
        ]
        answer = await query(
            server,
            "query ($path: String!) { history(path: $path) { seq time } }",
            {"path": path},
            ALICE,
        )
        points = answer["data"]["history"]
        assert len(points) >= 2  # the load, and the edit
        assert [p["seq"] for p in points] == sorted(p["seq"] for p in points)


async def test_a_viewer_watches_until_the_notebook_is_no_longer_shared(
    roles_server: Any,
) -> None:
    server = roles_server
    path = "watched-by-carol.ipynb"
    write_notebook(server.root / path, notebook(code_cell("", "c1")))
    await share(server, path, {"users": {"carol": "viewer"}})
    seen: list[dict[str, Any]] = []
    ended: list[BaseException] = []

    async def watch() -> None:
        async with ws_client(server, TOKENS["carol"]) as session:
            try:
                async for result in session.subscribe(watch_request(path)):
                    seen.append(result["documentChanges"])
            except TransportQueryError as exc:
                ended.append(exc)

    watcher = asyncio.ensure_future(watch())
    try:
        async with connected(server, ALICE, path) as alice:
            text = alice.doc.get("cells", type=Array)[0]["source"]
            await type_until_seen(lambda: text.insert(0, "a"), lambda: bool(seen))
            assert seen[0]["kind"] == "SOURCE" and seen[0]["cellId"] == "c1"

            await share(server, path, {"users": {}})  # carol no longer sees it
            text.insert(0, "secret")
            await until(lambda: bool(ended), what="the subscription refused")
            error = ended[0]
            assert isinstance(error, TransportQueryError) and error.errors is not None
            assert error.errors[0]["extensions"]["code"] == "forbidden"
            assert all("secret" not in str(change) for change in seen)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
