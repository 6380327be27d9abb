"""One document's rows deleted from a store that stays: a client holding the old rows is told
to reload (1003), never merged into the document made again from its file (which would
duplicate every cell). The session id of a document's room names its rows' epoch."""

from __future__ import annotations

import asyncio
from pathlib import Path

from notebooks import code_cell, notebook, read_notebook, write_notebook
from test_durability import expect_reload
from test_reconnect import append_cell, cells, open_and_leave, type_at_end
from yclient import YClient, request_session, until

from jupyter_datastore.client import Backoff, Client
from jupyter_datastore.store import open_store

QUICK = Backoff(initial=0.05, maximum=0.5)


def store_url(store_args: list[str], root: Path) -> str:
    """The store the server runs on: its `--store`, or the default file under the root."""
    return store_args[0].split("=", 1)[1] if store_args else str(root / ".jupyter/datastore.db")


async def delete_rows(url: str, room: str) -> None:
    """Delete one document from the store, as an admin or another server would."""
    store = open_store(url)
    await store.start()
    try:
        await store.delete_document(room)
    finally:
        await store.close()


async def test_a_client_of_rows_deleted_under_a_running_server_is_told_to_reload(
    store_args: list[str], make_server, tmp_path: Path
) -> None:
    srv = make_server([*store_args, "--DatastoreApp.room_idle_timeout=0.1"])
    path = tmp_path / "k.ipynb"
    write_notebook(path, notebook(code_cell("x", "c1"), code_cell("y", "c2")))
    room, old_session, doc = await open_and_leave(srv, "k.ipynb")
    await until(lambda: room not in str(srv.get("/api/datastore/status")), what="room freed")
    await delete_rows(store_url(store_args, tmp_path), room)
    append_cell(doc, "stale", "must not come back")

    payload = await expect_reload(srv, room, old_session, doc)  # the room is opened by it
    assert payload["reason"] == "unknown_session"
    new_session = payload["sessionId"]
    assert new_session != old_session
    assert (await request_session(srv.url, srv.token, "k.ipynb"))["sessionId"] == new_session
    fresh = await YClient.connect(srv.url, srv.token, room=room, session_id=new_session)
    try:
        want = [("c1", "x seen"), ("c2", "y")]  # the file's content, once; nothing stale
        assert cells(fresh.doc) == want
        again = await expect_reload(srv, room, old_session, doc)  # the room open meanwhile
        assert again["sessionId"] == new_session
        type_at_end(fresh.doc, 1, " edited")
        await fresh.save(2)
        assert [c["id"] for c in read_notebook(path)["cells"]] == ["c1", "c2"]
        assert cells(fresh.doc) == [("c1", "x seen"), ("c2", "y edited")]
    finally:
        await fresh.close()
    # The client with the current session id keeps it across a restart on the same store.
    srv.restart()
    same = await YClient.connect(srv.url, srv.token, room=room, session_id=new_session)
    try:
        assert cells(same.doc) == [("c1", "x seen"), ("c2", "y edited")]
    finally:
        await same.close()


async def test_the_python_client_reloads_when_its_document_was_deleted_while_away(
    make_server, tmp_path: Path
) -> None:
    """The server stops, the document's rows are deleted, the server starts on the same
    store: the client is told to reload and reopens from the file, without merging."""
    srv = make_server()
    path = tmp_path / "p.ipynb"
    write_notebook(path, notebook(code_cell("one", "c1"), code_cell("two", "c2")))
    async with Client(srv.url, srv.token, backoff=QUICK) as client:
        nb = await client.open_notebook("p.ipynb")
        nb.cell("c1").set_source("one, saved")
        await nb.save()
        room = nb.room.name
        await asyncio.to_thread(srv.stop)
        await nb.wait_for(lambda nb: not nb.connected)
        await delete_rows(store_url([], tmp_path), room)
        await asyncio.to_thread(srv.start)
        await nb.wait_for(lambda nb: nb.reloads == 1 and nb.connected, timeout=60)
        assert [(c.id, c.source) for c in nb.cells] == [("c1", "one, saved"), ("c2", "two")]
        other = await client.open_notebook("p.ipynb")
        assert [(c.id, c.source) for c in other.cells] == [("c1", "one, saved"), ("c2", "two")]
