"""A client with stale state reconnects: it merges cleanly or is told to reload, never
silently duplicates (the failure jupyter-collaboration users report most)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
import websockets
from notebooks import code_cell, markdown_cell, notebook, read_notebook, write_notebook
from pycrdt import Array, Doc, Map, Text
from yclient import YClient, request_session, until

from jupyter_datastore.protocol.messages import sync_step1


def cells(doc: Doc) -> list[tuple[str, str]]:
    return [(str(c["id"]), str(c["source"])) for c in doc.get("cells", type=Array)]


def append_cell(doc: Doc, cell_id: str, source: str) -> None:
    cell = Map({"id": cell_id, "cell_type": "markdown", "source": Text(source), "metadata": Map()})
    doc.get("cells", type=Array).append(cell)


def type_at_end(doc: Doc, index: int, text: str) -> None:
    source = doc.get("cells", type=Array)[index]["source"]
    source.insert(len(str(source)), text)


async def open_and_leave(srv, path: str) -> tuple[str, str, Doc]:
    """Open a document, make sure the server holds it, and drop the connection: the room id,
    the session id, and the client's document (as a suspended browser tab keeps it)."""
    session = await request_session(srv.url, srv.token, path)
    room, session_id = f"json:notebook:{session['fileId']}", session["sessionId"]
    client = await YClient.connect(srv.url, srv.token, room=room, session_id=session_id)
    type_at_end(client.doc, 0, " seen")
    await client.save(1)  # sent after the edit: the server has it
    await client.close()
    return room, session_id, client.doc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
async def test_after_a_restart_on_the_same_store_offline_edits_merge_once(
    store_args: list[str], make_server, tmp_path: Path, sig: int
) -> None:
    srv = make_server(store_args)
    write_notebook(tmp_path / "r.ipynb", notebook(code_cell("a", "c1"), code_cell("b", "c2")))
    room, session_id, doc = await open_and_leave(srv, "r.ipynb")
    srv.stop(sig)
    type_at_end(doc, 1, " offline")  # made while the server was down
    append_cell(doc, "new", "added offline")
    srv.start()
    stale = await YClient.connect(srv.url, srv.token, room=room, session_id=session_id, doc=doc)
    fresh = await YClient.connect(srv.url, srv.token, "r.ipynb")
    try:
        want = [("c1", "a seen"), ("c2", "b offline"), ("new", "added offline")]
        await until(lambda: cells(fresh.doc) == want, what="the offline edits, once")
        assert cells(stale.doc) == want
        await fresh.save(2)
        assert [c["id"] for c in read_notebook(tmp_path / "r.ipynb")["cells"]] == [
            "c1",
            "c2",
            "new",
        ]
    finally:
        await stale.close()
        await fresh.close()


async def test_a_file_changed_on_disk_while_clients_were_away_merges_with_their_edits(
    store_args: list[str], make_server, tmp_path: Path
) -> None:
    srv = make_server(store_args)
    path = tmp_path / "d.ipynb"
    write_notebook(path, notebook(code_cell("one", "c1"), code_cell("two", "c2")))
    room, session_id, doc = await open_and_leave(srv, "d.ipynb")
    srv.stop()
    on_disk = read_notebook(path)  # another program edits the file meanwhile
    on_disk["cells"][1]["source"] = "two, edited on disk"
    on_disk["cells"].append(markdown_cell("from disk", "m1"))
    path.write_text(json.dumps(on_disk))
    type_at_end(doc, 0, " + offline")  # and the client edits its copy
    srv.start()
    stale = await YClient.connect(srv.url, srv.token, room=room, session_id=session_id, doc=doc)
    fresh = await YClient.connect(srv.url, srv.token, "d.ipynb")
    try:
        want = [("c1", "one seen + offline"), ("c2", "two, edited on disk"), ("m1", "from disk")]
        await until(lambda: cells(fresh.doc) == want, what="the disk change and the offline edit")
        await until(lambda: cells(stale.doc) == want, what="the same at the stale client")
    finally:
        await stale.close()
        await fresh.close()


async def test_a_file_changed_on_disk_while_its_room_was_freed_merges_too(
    make_server, tmp_path: Path
) -> None:
    srv = make_server(["--DatastoreApp.room_idle_timeout=0.1"])
    path = tmp_path / "e.ipynb"
    write_notebook(path, notebook(code_cell("one", "c1")))
    room, session_id, doc = await open_and_leave(srv, "e.ipynb")
    await until(lambda: room not in str(srv.get("/api/datastore/status")), what="room freed")
    on_disk = read_notebook(path)
    on_disk["cells"].append(markdown_cell("from disk", "m1"))
    path.write_text(json.dumps(on_disk))
    append_cell(doc, "mine", "offline")
    stale = await YClient.connect(srv.url, srv.token, room=room, session_id=session_id, doc=doc)
    try:
        ids = [("c1", "one seen"), ("m1", "from disk"), ("mine", "offline")]
        await until(lambda: sorted(cells(stale.doc)) == ids, what="both additions, once each")
    finally:
        await stale.close()


@pytest.mark.parametrize("how", ["memory store", "store deleted"])
async def test_a_client_of_a_store_that_is_gone_is_told_to_reload(
    make_server, tmp_path: Path, how: str
) -> None:
    args = ["--store=sqlite://:memory:"] if how == "memory store" else []
    srv = make_server(args)
    write_notebook(tmp_path / "g.ipynb", notebook(code_cell("x", "c1")))
    room, old_session, doc = await open_and_leave(srv, "g.ipynb")
    srv.stop()
    if how == "store deleted":
        for file in (tmp_path / ".jupyter").glob("datastore.db*"):
            file.unlink()
    append_cell(doc, "stale", "must not come back")
    srv.start()
    url = f"{srv.url.replace('http', 'ws', 1)}/api/collaboration/room/{room}"
    query = f"?sessionId={old_session}&token={srv.token}"
    async with websockets.connect(url + query) as stale:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await stale.send(sync_step1(doc.get_state()))  # y-websocket's first message
            await asyncio.wait_for(stale.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    payload = json.loads(closed.value.rcvd.reason)
    assert payload["reason"] == "unknown_session" and payload["reloadable"] is True
    new_session = payload["sessionId"]
    assert new_session != old_session
    fresh = await YClient.connect(srv.url, srv.token, room=room, session_id=new_session)
    try:
        assert cells(fresh.doc) == [("c1", "x seen")]  # the file's content, once; nothing stale
    finally:
        await fresh.close()
