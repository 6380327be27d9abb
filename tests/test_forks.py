"""Forks, timelines and restore through jupyter-collaboration's endpoints, on a real server."""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx
from notebooks import code_cell, notebook, read_notebook, sources, write_notebook
from pycrdt import Array
from yclient import YClient, eventually, request_session, until


def source_of(client: YClient, index: int = 0) -> str:
    return str(client.doc.get("cells", type=Array)[index]["source"])


def cells(client: YClient) -> list[str]:
    return [str(cell["source"]) for cell in client.doc.get("cells", type=Array)]


def type_into(client: YClient, text: str, index: int = 0) -> None:
    source = client.doc.get("cells", type=Array)[index]["source"]
    source.insert(len(str(source)), text)


async def call(server: Any, method: str, path: str, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.request(
            method, path, json=body, headers={"Authorization": f"token {server.token}"}
        )


async def room_of(server: Any, path: str) -> tuple[str, str]:
    session = await request_session(server.url, server.token, path)
    return f"json:notebook:{session['fileId']}", session["sessionId"]


async def test_a_fork_is_edited_apart_kept_across_a_restart_and_merged_back(
    store_args, make_server, tmp_path
) -> None:
    srv = make_server(store_args)
    write_notebook(tmp_path / "f.ipynb", notebook(code_cell("base", "c1")))
    root, session_id = await room_of(srv, "f.ipynb")
    a = await YClient.connect(srv.url, srv.token, "f.ipynb")
    made = await call(srv, "PUT", f"/api/collaboration/fork/{root}", {"title": "try"})
    assert made.status_code == 201
    fork = made.json()["fork_roomid"]
    assert made.json()["fork_info"] == {
        "root_roomid": root,
        "synchronize": False,
        "title": "try",
        "description": "",
    }
    b = await YClient.connect(srv.url, srv.token, room=fork, session_id=session_id)
    try:
        assert cells(b) == ["base"]
        type_into(b, " + fork")
        type_into(a, " + root")
        c = await YClient.connect(srv.url, srv.token, room=fork, session_id=session_id)
        await until(lambda: cells(c) == ["base + fork"], what="the fork's edit in the fork")
        await c.close()
        assert cells(a) == ["base + root"]  # the root does not see the fork
    finally:
        await b.close()
        await a.close()

    srv.restart()  # forks live in the store
    listed = await call(srv, "GET", f"/api/collaboration/fork/{root}")
    assert list(listed.json()) == [fork]
    a = await YClient.connect(srv.url, srv.token, "f.ipynb")
    b = await YClient.connect(srv.url, srv.token, room=fork, session_id=session_id)
    try:
        assert cells(b) == ["base + fork"]
        merged = await call(srv, "DELETE", f"/api/collaboration/fork/{fork}?merge=true")
        assert merged.status_code == 200
        # Both were typed after "base": Yjs orders the two by client id.
        both = {"base + root + fork", "base + fork + root"}
        await until(lambda: cells(a)[0] in both, what="the merge at the root")
        code, _ = await b.wait_closed()
        assert code == 4404
        assert (await call(srv, "GET", f"/api/collaboration/fork/{root}")).json() == {}
        assert (await call(srv, "DELETE", f"/api/collaboration/fork/{fork}")).status_code == 404
        await a.save(3)
        assert sources(read_notebook(tmp_path / "f.ipynb")) == cells(a)
    finally:
        await a.close()
        await b.close()


async def test_a_synchronized_fork_follows_its_root(server) -> None:
    write_notebook(server.root / "s.ipynb", notebook(code_cell("x", "c1")))
    root, session_id = await room_of(server, "s.ipynb")
    a = await YClient.connect(server.url, server.token, "s.ipynb")
    made = await call(server, "PUT", f"/api/collaboration/fork/{root}", {"synchronize": True})
    fork = made.json()["fork_roomid"]
    b = await YClient.connect(server.url, server.token, room=fork, session_id=session_id)
    try:
        type_into(a, "1")
        await until(lambda: cells(b) == ["x1"], what="the root's edit in the fork")
        type_into(b, "!")
        await until(lambda: cells(b) == ["x1!"], what="b's own edit")
        type_into(a, "2")
        # Both were typed after "1": Yjs orders the two by client id.
        await until(lambda: sorted(cells(b)[0]) == sorted("x12!"), what="the root's next edit")
        assert cells(a) == ["x12"]  # one way only
        done = await call(server, "DELETE", f"/api/collaboration/fork/{fork}?merge=false")
        assert done.status_code == 200
        assert cells(a) == ["x12"]
        # jupyter-collaboration's fork events, which JupyterLab's fork manager listens for
        schema = urllib.parse.quote("https://schema.jupyter.org/jupyter_collaboration/fork/v1")
        events = (await call(server, "GET", f"/api/events?schema_id={schema}")).json()
        ours = [e for e in events["events"] if e["fork_roomid"] == fork]
        assert [e["action"] for e in ours] == ["create", "delete"]
        assert ours[0]["fork_info"]["synchronize"] is True
    finally:
        await a.close()
        await b.close()


async def test_the_timeline_shows_the_past_and_restore_makes_it_current(
    store_args, make_server
) -> None:
    """As JupyterLab's time slider does: the same Y document moves to the timeline's room,
    undo and redo move through the history, and restore reconnects it to the root."""
    server = make_server(store_args)
    path = server.root / "t.ipynb"
    write_notebook(path, notebook(code_cell("v0", "c1")))
    root, session_id = await room_of(server, "t.ipynb")
    lab = await YClient.connect(server.url, server.token, "t.ipynb")
    other = await YClient.connect(server.url, server.token, "t.ipynb")
    try:
        for version in ("v1", "v2", "v3"):
            source = lab.doc.get("cells", type=Array)[0]["source"]
            with lab.doc.transaction():
                source.clear()
                source.insert(0, version)
            await until(lambda v=version: cells(other) == [v], what=f"{version} at the other")
        quoted = urllib.parse.quote("t.ipynb")
        answer = await call(
            server, "GET", f"/api/collaboration/timeline/{quoted}?format=json&&type=notebook"
        )
        assert answer.status_code == 200
        timeline = answer.json()
        assert timeline["roomId"] == root and session_id.startswith(timeline["sessionId"])
        assert len(timeline["timestamps"]) == 4  # the load and three edits
        assert timeline["timestamps"] == sorted(timeline["timestamps"])
        fork = timeline["forkRoom"]

        doc = lab.doc
        await lab.close()
        lab = await YClient.connect(
            server.url, server.token, room=fork, session_id=session_id, doc=doc
        )
        undo = f"/api/collaboration/undo_redo/{root}?action=undo&&steps=2&&forkRoom={fork}"
        moved = await call(server, "PUT", undo)
        assert moved.json() == {"status": "undone"}
        await until(lambda: cells(lab) == ["v1"], what="the slider two steps back")
        redo = f"/api/collaboration/undo_redo/{root}?action=redo&steps=1&forkRoom={fork}"
        assert (await call(server, "PUT", redo)).json() == {"status": "redone"}
        await until(lambda: cells(lab) == ["v2"], what="one step forward")
        assert cells(other) == ["v3"]  # the root is untouched meanwhile
        far = f"/api/collaboration/undo_redo/{root}?action=redo&steps=5&forkRoom={fork}"
        assert (await call(server, "PUT", far)).status_code == 200
        assert (await call(server, "PUT", far)).status_code == 409  # at the end already
        back = f"/api/collaboration/undo_redo/{root}?action=undo&steps=3&forkRoom={fork}"
        await call(server, "PUT", back)
        await until(lambda: cells(lab) == ["v0"], what="the first point")

        restore = f"/api/collaboration/undo_redo/{root}?action=restore&steps=0&forkRoom={fork}"
        restored = await call(server, "PUT", restore)
        assert restored.json()["code"] == 200
        await until(lambda: cells(other) == ["v0"], what="the restore at the root")
        await lab.close()
        lab = await YClient.connect(
            server.url, server.token, room=root, session_id=session_id, doc=doc
        )
        await lab.save(9)
        assert cells(lab) == ["v0"] and cells(other) == ["v0"]  # nothing duplicated
        assert sources(read_notebook(path)) == ["v0"]
        gone = await call(server, "PUT", undo)
        assert gone.status_code == 404  # the timeline ended with the restore
    finally:
        await lab.close()
        await other.close()


async def test_bad_fork_and_timeline_requests_change_nothing(server) -> None:
    write_notebook(server.root / "bad.ipynb", notebook(code_cell("x", "c1")))
    root, _ = await room_of(server, "bad.ipynb")
    missing = "0" * 32
    cases = [
        ("PUT", f"/api/collaboration/fork/{root}", {"synchronize": "yes"}, 400),
        ("PUT", f"/api/collaboration/fork/{root}", {"title": 5}, 400),
        ("PUT", "/api/collaboration/fork/not-a-room", {}, 400),
        ("PUT", "/api/collaboration/fork/json:notebook:nosuchid", {}, 404),
        ("DELETE", f"/api/collaboration/fork/{missing}", None, 404),
        ("DELETE", f"/api/collaboration/fork/{missing}?merge=maybe", None, 400),
        ("GET", "/api/collaboration/timeline/nope.ipynb?format=json&type=notebook", None, 404),
        ("GET", "/api/collaboration/timeline/bad.ipynb?format=json&type=spreadsheet", None, 400),
        (
            "PUT",
            f"/api/collaboration/undo_redo/{root}?action=undo&steps=1&forkRoom={missing}",
            None,
            404,
        ),
        (
            "PUT",
            f"/api/collaboration/undo_redo/{root}?action=jump&steps=1&forkRoom={missing}",
            None,
            400,
        ),
        (
            "PUT",
            f"/api/collaboration/undo_redo/{root}?action=undo&steps=0&forkRoom={missing}",
            None,
            400,
        ),
    ]
    for method, url, body, status in cases:
        answer = await call(server, method, url, body)
        assert answer.status_code == status, (method, url, answer.text)
        assert "error" in answer.json()
    assert (await call(server, "GET", f"/api/collaboration/fork/{root}")).json() == {}


async def test_timeline_and_fork_rooms_are_freed_when_idle(server) -> None:
    write_notebook(server.root / "idle.ipynb", notebook(code_cell("x", "c1")))
    root, session_id = await room_of(server, "idle.ipynb")
    a = await YClient.connect(server.url, server.token, "idle.ipynb")
    type_into(a, "y")
    await a.save(1)  # sent after the edit: the edit is in
    await a.close()
    quoted = "/api/collaboration/timeline/idle.ipynb?format=json&type=notebook"
    fork = (await call(server, "GET", quoted)).json()["forkRoom"]
    move = f"/api/collaboration/undo_redo/{root}?action=undo&steps=1&forkRoom={fork}"

    async def freed() -> bool:
        return (await call(server, "PUT", move)).status_code == 404

    # Nobody joined it: freed after the idle timeout (1 s here), like any room.
    await eventually(freed, timeout=15)
    made = await call(server, "PUT", f"/api/collaboration/fork/{root}", {})
    kept = made.json()["fork_roomid"]
    b = await YClient.connect(server.url, server.token, room=kept, session_id=session_id)
    await b.close()
    # A fork's room is freed too, but the fork is kept in the store and opens again.
    b = await YClient.connect(server.url, server.token, room=kept, session_id=session_id)
    try:
        assert cells(b) == ["xy"]
    finally:
        await b.close()
