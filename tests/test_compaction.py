"""Compaction on a running server: the store stays small while peers keep editing."""

from __future__ import annotations

from pathlib import Path

from notebooks import code_cell, notebook, write_notebook
from pycrdt import Array
from yclient import YClient, eventually, until

from jupyter_datastore.store import open_store


async def store_rows(url: str) -> int:
    """Rows of every document in the store a server uses (read beside the server)."""
    store = open_store(url)
    await store.start()
    try:
        return sum(info.rows for info in await store.documents())
    finally:
        await store.close()


def store_url(args: list[str], root: Path) -> str:
    given = [a.split("=", 1)[1] for a in args if a.startswith("--store=")]
    return given[0] if given else str(root / ".jupyter" / "datastore.db")


def source(client: YClient) -> str:
    return str(client.doc.get("cells", type=Array)[0]["source"])


async def test_open_documents_are_compacted_in_the_background_without_pausing_edits(
    store_args: list[str], make_server, tmp_path: Path
) -> None:
    srv = make_server(
        [
            "--DatastoreApp.store_history_step=0.2",
            "--DatastoreApp.store_compact_interval=0.3",
            "--DatastoreApp.autosave=False",
            *store_args,
        ]
    )
    write_notebook(tmp_path / "busy.ipynb", notebook(code_cell("", "c1")))
    store = store_url(store_args, tmp_path)
    writer = await YClient.connect(srv.url, srv.token, "busy.ipynb")
    reader = await YClient.connect(srv.url, srv.token, "busy.ipynb")
    typed = ""
    try:
        # 300 edits, each acknowledged (seen by the reader) before the next: each was a
        # commit, a row, of its own; compaction runs all along and merges them.
        for i in range(300):
            text = f"{i};"
            writer.doc.get("cells", type=Array)[0]["source"].insert(len(typed), text)
            typed += text
            await until(lambda t=typed: source(reader) == t, what="the edit at the reader")

        async def compacted() -> bool:
            return await store_rows(store) < 40

        await eventually(compacted, timeout=15)
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
    store_args: list[str], make_server, tmp_path: Path
) -> None:
    options = ["--DatastoreApp.store_history=0", "--DatastoreApp.room_idle_timeout=0.2"]
    srv = make_server([*options, *store_args])
    write_notebook(tmp_path / "old.ipynb", notebook(code_cell("", "c1")))
    store = store_url(store_args, tmp_path)
    a = await YClient.connect(srv.url, srv.token, "old.ipynb")
    b = await YClient.connect(srv.url, srv.token, "old.ipynb")
    try:
        for i in range(30):
            a.doc.get("cells", type=Array)[0]["source"].insert(0, "x")
            await until(lambda n=i + 1: source(b) == "x" * n, what="the edit at b")
        await a.save(1)
        assert await store_rows(store) > 2
    finally:
        await a.close()
        await b.close()
    # Freed after 0.2 s: saved and compacted, with no history kept, into one row.

    async def one_row() -> bool:
        return await store_rows(store) == 1

    await eventually(one_row, timeout=15)
    c = await YClient.connect(srv.url, srv.token, "old.ipynb")
    try:
        assert source(c) == "x" * 30
    finally:
        await c.close()
