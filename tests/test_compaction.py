"""Compaction on a running server: the store stays small while peers keep editing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from notebooks import code_cell, notebook, write_notebook
from pycrdt import Array
from yclient import YClient, until


def store_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM updates").fetchone()[0])


def source(client: YClient) -> str:
    return str(client.doc.get("cells", type=Array)[0]["source"])


async def test_open_documents_are_compacted_in_the_background_without_pausing_edits(
    make_server, tmp_path: Path
) -> None:
    srv = make_server(
        [
            "--DatastoreApp.store_history_step=0.2",
            "--DatastoreApp.store_compact_interval=0.3",
            "--DatastoreApp.autosave=False",
        ]
    )
    write_notebook(tmp_path / "busy.ipynb", notebook(code_cell("", "c1")))
    store = tmp_path / ".jupyter" / "datastore.db"
    writer = await YClient.connect(srv.url, srv.token, "busy.ipynb")
    reader = await YClient.connect(srv.url, srv.token, "busy.ipynb")
    typed = ""
    most_rows = 0
    try:
        for burst in range(12):
            for i in range(25):  # each edit acknowledged (seen by the reader): one row each
                text = f"{burst}.{i};"
                writer.doc.get("cells", type=Array)[0]["source"].insert(len(typed), text)
                typed += text
                await until(lambda t=typed: source(reader) == t, what="the edit at the reader")
            most_rows = max(most_rows, store_rows(store))
        await until(lambda: store_rows(store) < 40, timeout=15, what="background compaction")
        assert most_rows > 40  # rows were written one per edit, then merged
        assert source(reader) == typed
        late = await YClient.connect(srv.url, srv.token, "busy.ipynb")
        try:
            assert source(late) == typed
        finally:
            await late.close()
    finally:
        await writer.close()
        await reader.close()
    srv.restart()
    again = await YClient.connect(srv.url, srv.token, "busy.ipynb")
    try:
        assert source(again) == typed  # autosave is off: the store alone had it
    finally:
        await again.close()


async def test_history_beyond_retention_is_merged_when_the_room_closes(
    make_server, tmp_path: Path
) -> None:
    srv = make_server(["--DatastoreApp.store_history=0", "--DatastoreApp.room_idle_timeout=0.2"])
    write_notebook(tmp_path / "old.ipynb", notebook(code_cell("", "c1")))
    store = tmp_path / ".jupyter" / "datastore.db"
    a = await YClient.connect(srv.url, srv.token, "old.ipynb")
    b = await YClient.connect(srv.url, srv.token, "old.ipynb")
    try:
        for i in range(30):
            a.doc.get("cells", type=Array)[0]["source"].insert(0, "x")
            await until(lambda n=i + 1: source(b) == "x" * n, what="the edit at b")
        await a.save(1)
        assert store_rows(store) > 2
    finally:
        await a.close()
        await b.close()
    # Freed after 0.2 s: saved and compacted, with no history kept, into one row.
    await until(lambda: store_rows(store) == 1, timeout=15, what="compaction at close")
    c = await YClient.connect(srv.url, srv.token, "old.ipynb")
    try:
        assert source(c) == "x" * 30
    finally:
        await c.close()
