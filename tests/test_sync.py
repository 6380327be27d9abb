"""Real peers over real WebSockets against `jupyter-datastore serve`."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from jupyter_ydoc import YNotebook
from notebooks import code_cell, markdown_cell, notebook, read_notebook, sources, write_notebook
from pycrdt import Array, Map, Text
from yclient import YClient, request_session, until


def cell_source(client: YClient, index: int) -> str:
    return str(client.doc.get("cells", type=Array)[index]["source"])


def type_into(client: YClient, index: int, text: str) -> None:
    """Append to a cell's source, as an editor does (never re-assign the Y.Text)."""
    source = client.doc.get("cells", type=Array)[index]["source"]
    source.insert(len(str(source).encode()), text)


async def test_two_clients_edit_one_notebook_and_ctrl_s_writes_it(server) -> None:
    path = server.root / "two.ipynb"
    write_notebook(path, notebook(code_cell("a = 1", "c1"), markdown_cell("# Title", "m1")))
    a = await YClient.connect(server.url, server.token, "two.ipynb")
    b = await YClient.connect(server.url, server.token, "two.ipynb")
    try:
        assert YNotebook(a.doc).get()["cells"][0]["source"] == "a = 1"
        type_into(a, 0, "\nb = 2")
        await until(lambda: cell_source(b, 0) == "a = 1\nb = 2", what="a's edit at b")
        b.doc.get("cells", type=Array)[1]["source"].insert(0, "Big ")
        await until(lambda: cell_source(a, 1) == "Big # Title", what="b's edit at a")
        reply = await b.save(41)
        assert reply == {"type": "save", "responseTo": 41, "status": "success"}
        saved = read_notebook(path)
        assert sources(saved) == ["a = 1\nb = 2", "Big # Title"]
        assert [c["id"] for c in saved["cells"]] == ["c1", "m1"]
        assert saved["metadata"]["kernelspec"]["name"] == "python3"
        # The file is written as nbformat writes it: one-space indent, lines split.
        assert saved["cells"][0]["source"] == ["a = 1\n", "b = 2"]
        assert path.read_text().startswith('{\n "cells": [\n  {\n')
    finally:
        await a.close()
        await b.close()


async def test_server_state_records_path_and_hash_after_save(server) -> None:
    write_notebook(server.root / "state.ipynb", notebook(code_cell("x", "c1")))
    a = await YClient.connect(server.url, server.token, "state.ipynb")
    try:
        state = a.doc.get("state", type=Map)
        assert state.get("path") == "state.ipynb"
        type_into(a, 0, "y")
        await a.save(1)
        await until(lambda: bool(state.get("hash")), what="state.hash")
        assert state.get("dirty") is False
    finally:
        await a.close()


async def test_autosave_keeps_saving_under_continuous_typing(server) -> None:
    """Debounce 0.2 s, but at most 1 s: typing every 0.1 s for 3 s still reaches the disk."""
    path = server.root / "typing.ipynb"
    write_notebook(path, notebook(code_cell("", "c1")))
    a = await YClient.connect(server.url, server.token, "typing.ipynb")
    try:
        seen_on_disk = set()
        start = time.monotonic()
        typed = 0
        while time.monotonic() - start < 3.0:
            type_into(a, 0, "x")
            typed += 1
            seen_on_disk.add(len(sources(read_notebook(path))[0]))
            await asyncio.sleep(0.1)
        # Saves happened while typing went on, not only after it stopped.
        assert len(seen_on_disk - {0, typed}) >= 1, seen_on_disk
        await until(lambda: sources(read_notebook(path))[0] == "x" * typed, what="final save")
    finally:
        await a.close()


async def test_late_joiner_sees_presence_at_once_and_it_goes_when_socket_closes(server) -> None:
    write_notebook(server.root / "presence.ipynb", notebook(code_cell("", "c1")))
    a = await YClient.connect(server.url, server.token, "presence.ipynb")
    b = None
    try:
        await a.set_awareness(1111, 1, {"user": {"name": "Ada"}})
        b = await YClient.connect(server.url, server.token, "presence.ipynb")
        await until(lambda: 1111 in b.awareness, timeout=2, what="awareness snapshot on join")
        assert b.awareness[1111]["user"]["name"] == "Ada"
        await a.close()
        await until(lambda: 1111 not in b.awareness, timeout=2, what="awareness removal on close")
    finally:
        await a.close()
        if b is not None:
            await b.close()


async def test_global_awareness_room_carries_presence_only(server) -> None:
    # JupyterLab's presence provider connects with no sessionId.
    a = await YClient.connect(server.url, server.token, room="JupyterLab:globalAwareness")
    b = await YClient.connect(server.url, server.token, room="JupyterLab:globalAwareness")
    try:
        await a.set_awareness(7, 1, {"user": {"name": "Grace"}, "documents": ["x.ipynb"]})
        await until(lambda: 7 in b.awareness, what="global presence")
        # Its document is not for content: a write is refused and not forwarded.
        a.doc.get("junk", type=Text).insert(0, "should not spread")
        await until(lambda: any(r.get("type") == "refused" for r in a.raw), what="refusal")
        assert str(b.doc.get("junk", type=Text)) == ""
    finally:
        await a.close()
        await b.close()


async def test_trusted_flag_is_never_read_from_the_file_nor_stored(server) -> None:
    path = server.root / "trusted.ipynb"
    html = {"output_type": "display_data", "data": {"text/html": "<b>1</b>"}, "metadata": {}}
    cell = code_cell("1 + 1", "c1", [html])
    cell["metadata"] = {"trusted": True, "tags": ["keep"]}
    write_notebook(path, notebook(cell))
    a = await YClient.connect(server.url, server.token, "trusted.ipynb")
    try:
        # Trust comes from the notebook's signature (it has none), not from the file's flag.
        metadata = a.doc.get("cells", type=Array)[0]["metadata"]
        assert json.loads(str(metadata)) == {"tags": ["keep"], "trusted": False}
        type_into(a, 0, " + 1")
        await a.save(1)
        saved = read_notebook(path)
        assert saved["cells"][0]["metadata"] == {"tags": ["keep"]}
    finally:
        await a.close()


async def test_text_and_binary_documents(server) -> None:
    (server.root / "notes.txt").write_text("line 1\n")
    (server.root / "blob.bin").write_bytes(b"\x00\x01\xff")
    t = await YClient.connect(
        server.url, server.token, "notes.txt", file_format="text", file_type="file"
    )
    u = await YClient.connect(
        server.url, server.token, "notes.txt", file_format="text", file_type="file"
    )
    blob = await YClient.connect(
        server.url, server.token, "blob.bin", file_format="base64", file_type="file"
    )
    try:
        assert str(t.doc.get("source", type=Text)) == "line 1\n"
        t.doc.get("source", type=Text).insert(7, "line 2\n")
        await until(
            lambda: str(u.doc.get("source", type=Text)) == "line 1\nline 2\n", what="text sync"
        )
        assert (await u.save(3))["status"] == "success"
        assert (server.root / "notes.txt").read_text() == "line 1\nline 2\n"
        assert blob.doc.get("source", type=Map)["bytes"] == b"\x00\x01\xff"
        blob.doc.get("source", type=Map)["bytes"] = b"new"
        assert (await blob.save(4))["status"] == "success"
        assert (server.root / "blob.bin").read_bytes() == b"new"
    finally:
        for client in (t, u, blob):
            await client.close()


async def test_session_request_reports_new_and_known_files(server) -> None:
    write_notebook(server.root / "ids.ipynb", notebook())
    first = await request_session(server.url, server.token, "ids.ipynb")
    again = await request_session(server.url, server.token, "ids.ipynb")
    assert first["fileId"] == again["fileId"]
    assert first["sessionId"] == again["sessionId"]
    assert first["sessionId"].startswith(server.get("/api/datastore/status")["sessionId"])
    assert first["format"] == "json" and first["type"] == "notebook"


async def test_out_of_band_change_merges_without_losing_room_edits(
    make_server, tmp_path: Path
) -> None:
    srv = make_server(["--DatastoreApp.save_delay=60", "--DatastoreApp.save_max_wait=120"])
    path = tmp_path / "oob.ipynb"
    write_notebook(path, notebook(code_cell("room cell", "c1"), code_cell("disk cell", "c2")))
    a = await YClient.connect(srv.url, srv.token, "oob.ipynb")
    try:
        type_into(a, 0, " edited in the room")  # not saved yet
        await asyncio.sleep(0.3)
        changed = read_notebook(path)
        changed["cells"][1]["source"] = "disk cell edited on disk"
        changed["cells"].append(markdown_cell("new on disk", "m3"))
        write_notebook(path, changed)
        await until(lambda: len(a.doc.get("cells", type=Array)) == 3, what="merge into the room")
        assert cell_source(a, 0) == "room cell edited in the room"
        assert cell_source(a, 1) == "disk cell edited on disk"
        assert cell_source(a, 2) == "new on disk"
        # The merge is written back, with both sides' changes.
        await until(
            lambda: (
                sources(read_notebook(path))
                == ["room cell edited in the room", "disk cell edited on disk", "new on disk"]
            ),
            what="merged file",
        )
    finally:
        await a.close()


async def test_touch_without_change_does_not_reload(server) -> None:
    path = server.root / "touch.ipynb"
    write_notebook(path, notebook(code_cell("same", "c1"), code_cell("other", "c2")))
    a = await YClient.connect(server.url, server.token, "touch.ipynb")
    try:
        changes: list[object] = []
        first = a.doc.get("cells", type=Array)[0]  # the subscription lives with this object
        subscription = first.observe_deep(changes.append)
        future = time.time() + 5
        os.utime(path, (future, future))  # a new modification time, the same content
        # A real change after the touch: once it has arrived, the touch was looked at too.
        changed = read_notebook(path)
        changed["cells"][1]["source"] = "other, changed"
        write_notebook(path, changed)
        await until(lambda: cell_source(a, 1) == "other, changed", what="the real change")
        assert changes == []
        assert cell_source(a, 0) == "same"
        first.unobserve(subscription)
    finally:
        await a.close()


async def test_restart_resumes_rooms_from_the_store(make_server, tmp_path: Path) -> None:
    srv = make_server(["--DatastoreApp.autosave=False"])
    path = tmp_path / "resume.ipynb"
    write_notebook(path, notebook(code_cell("start", "c1")))
    a = await YClient.connect(srv.url, srv.token, "resume.ipynb")
    type_into(a, 0, " + unsaved")
    b = await YClient.connect(srv.url, srv.token, "resume.ipynb")
    # Seen by another peer, so durable (a reply is sent only once what it holds is stored).
    await until(lambda: cell_source(b, 0) == "start + unsaved", what="the edit at b")
    await a.close()
    await b.close()
    srv.restart()
    assert sources(read_notebook(path)) == ["start"]  # autosave is off: only the store has it
    c = await YClient.connect(srv.url, srv.token, "resume.ipynb")
    try:
        assert cell_source(c, 0) == "start + unsaved"
        assert len(c.doc.get("cells", type=Array)) == 1
    finally:
        await c.close()


async def test_reconnecting_client_does_not_duplicate_after_restart(
    make_server, tmp_path: Path
) -> None:
    srv = make_server()
    write_notebook(tmp_path / "dup.ipynb", notebook(code_cell("one", "c1"), code_cell("two", "c2")))
    a = await YClient.connect(srv.url, srv.token, "dup.ipynb")
    room, doc = a.room, a.doc
    session_id = (await request_session(srv.url, srv.token, "dup.ipynb"))["sessionId"]
    await a.close()
    srv.restart()
    again = await YClient.connect(srv.url, srv.token, room=room, session_id=session_id, doc=doc)
    fresh = await YClient.connect(srv.url, srv.token, "dup.ipynb")
    try:
        await asyncio.sleep(0.3)
        assert [str(c["source"]) for c in fresh.doc.get("cells", type=Array)] == ["one", "two"]
        assert len(again.doc.get("cells", type=Array)) == 2
    finally:
        await again.close()
        await fresh.close()


async def test_idle_room_is_freed_after_the_delay(server) -> None:
    write_notebook(server.root / "idle.ipynb", notebook(code_cell("", "c1")))
    a = await YClient.connect(server.url, server.token, "idle.ipynb")
    room = a.room
    assert room in [r["name"] for r in server.get("/api/datastore/status")["rooms"]]
    await a.close()

    def freed() -> bool:
        return room not in [r["name"] for r in server.get("/api/datastore/status")["rooms"]]

    await until(freed, timeout=10, what="room eviction")


async def test_rename_keeps_the_room_and_saves_to_the_new_path(server) -> None:
    import httpx

    write_notebook(server.root / "before.ipynb", notebook(code_cell("keep", "c1")))
    a = await YClient.connect(server.url, server.token, "before.ipynb")
    try:
        async with httpx.AsyncClient() as http:
            response = await http.patch(
                f"{server.url}/api/contents/before.ipynb",
                json={"path": "after.ipynb"},
                headers={"Authorization": f"token {server.token}"},
            )
            response.raise_for_status()
        state = a.doc.get("state", type=Map)
        await until(lambda: state.get("path") == "after.ipynb", what="path update")
        type_into(a, 0, " renamed")
        await a.save(2)
        assert sources(read_notebook(server.root / "after.ipynb")) == ["keep renamed"]
        assert not (server.root / "before.ipynb").exists()
    finally:
        await a.close()


async def test_autosave_follows_the_clients_autosave_setting(make_server, tmp_path: Path) -> None:
    srv = make_server()
    path = tmp_path / "manual.ipynb"
    write_notebook(path, notebook(code_cell("v1", "c1"), code_cell("other", "c2")))
    a = await YClient.connect(srv.url, srv.token, "manual.ipynb")
    try:
        await a.set_awareness(a.doc.client_id, 1, {"user": {"name": "A"}, "autosave": False})
        type_into(a, 0, " unsaved")
        # Another change that does reach the disk shows the room was looked at meanwhile.
        changed = read_notebook(path)
        changed["cells"][1]["source"] = "other, from disk"
        write_notebook(path, changed)
        await until(lambda: cell_source(a, 1) == "other, from disk", what="the disk change")
        await asyncio.sleep(1.5)  # past max_wait (1 s): an autosave would have happened
        assert sources(read_notebook(path)) == ["v1", "other, from disk"]
        # A second change on disk merges against what the file holds now: nothing doubles.
        changed = read_notebook(path)
        changed["cells"][1]["source"] = "other, from disk, again"
        write_notebook(path, changed)
        await until(lambda: cell_source(a, 1) == "other, from disk, again", what="2nd change")
        assert cell_source(a, 0) == "v1 unsaved"
        assert (await a.save(5))["status"] == "success"
        assert sources(read_notebook(path)) == ["v1 unsaved", "other, from disk, again"]
    finally:
        await a.close()


async def test_a_file_deleted_while_open_is_not_recreated_by_autosave(server) -> None:
    path = server.root / "deleted.ipynb"
    write_notebook(path, notebook(code_cell("keep me", "c1")))
    a = await YClient.connect(server.url, server.token, "deleted.ipynb")
    try:
        path.unlink()
        type_into(a, 0, "!")
        await asyncio.sleep(1.5)  # past max_wait: no autosave may bring the file back
        assert not path.exists()
        assert (await a.save(9))["status"] == "success"  # Ctrl-S does
        assert sources(read_notebook(path)) == ["keep me!"]
    finally:
        await a.close()


async def test_many_peers_editing_at_random_converge_with_the_file(
    make_server, tmp_path: Path
) -> None:
    """Four peers make random edits (type, delete, add cells) while saves and a change on
    disk happen; every peer, a newcomer and the file end up with the same notebook."""
    import random

    srv = make_server(["--DatastoreApp.save_delay=0.05", "--DatastoreApp.save_max_wait=0.3"])
    path = tmp_path / "random.ipynb"
    write_notebook(path, notebook(*(code_cell(f"cell {i}\n", f"c{i}") for i in range(4))))
    peers = [await YClient.connect(srv.url, srv.token, "random.ipynb") for _ in range(4)]
    rng = random.Random(7)

    def edit(client: YClient) -> None:
        cells = client.doc.get("cells", type=Array)
        source = cells[rng.randrange(len(cells))]["source"]
        text = str(source).encode()
        if text and rng.random() < 0.3:
            start = rng.randrange(len(text))
            while start and (text[start] & 0xC0) == 0x80:  # a character boundary
                start -= 1
            end = min(len(text), start + 1)
            while end < len(text) and (text[end] & 0xC0) == 0x80:
                end += 1
            del source[start:end]
        elif rng.random() < 0.03:
            with client.doc.transaction():
                cells.append(Map({"cell_type": "markdown", "id": f"m{rng.randrange(10**9)}",
                                  "source": Text("new"), "metadata": Map()}))  # fmt: skip
        else:
            position = len(text) if rng.random() < 0.7 else 0
            source.insert(position, rng.choice(["a", "b", "é", "😀", "\n"]))

    try:
        for step in range(400):
            edit(peers[step % 4])
            if step == 200:  # someone changes the file meanwhile
                changed = read_notebook(path)
                changed["cells"].append(markdown_cell("written on disk", "disk"))
                write_notebook(path, changed)
            if step % 50 == 0:
                await peers[0].save(step + 1)
            await asyncio.sleep(0.002)

        def contents() -> list[object]:
            return [YNotebook(p.doc).get()["cells"] for p in peers]

        await until(lambda: all(c == contents()[0] for c in contents()), timeout=20, what="peers")
        await until(
            lambda: any(c["id"] == "disk" for c in contents()[0]), what="the change on disk"
        )
        newcomer = await YClient.connect(srv.url, srv.token, "random.ipynb")
        assert YNotebook(newcomer.doc).get()["cells"] == contents()[0]
        await newcomer.close()
        assert (await peers[1].save(9999))["status"] == "success"
        on_disk = [c["source"] for c in read_notebook(path)["cells"]]
        expected = [c["source"] for c in contents()[0]]
        assert ["".join(s) if isinstance(s, list) else s for s in on_disk] == expected
    finally:
        for peer in peers:
            await peer.close()
