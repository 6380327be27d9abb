"""`jupyter-datastore store stats|compact|verify|export` on stores a real server filled."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from notebooks import code_cell, notebook, read_notebook, sources, write_notebook
from pycrdt import Array
from yclient import YClient, until


def store_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "jupyter_datastore.cli", "store", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


async def fill(srv, path: str, edits: int) -> str:
    """Type `edits` acknowledged edits into a notebook; the text typed."""
    a = await YClient.connect(srv.url, srv.token, path)
    b = await YClient.connect(srv.url, srv.token, path)
    typed = ""
    try:
        for i in range(edits):
            a.doc.get("cells", type=Array)[0]["source"].insert(len(typed), f"{i},")
            typed += f"{i},"
            await until(
                lambda t=typed: str(b.doc.get("cells", type=Array)[0]["source"]) == t,
                what="the edit at b",
            )
    finally:
        await a.close()
        await b.close()
    return typed


async def test_stats_compact_verify_and_export_a_real_store(make_server, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    # Every row kept as a point in time (step 0), so the command has something to compact.
    srv = make_server(
        ["--DatastoreApp.autosave=False", "--DatastoreApp.store_history_step=0"], root=root
    )
    write_notebook(root / "nb.ipynb", notebook(code_cell("", "c1")))
    typed = await fill(srv, "nb.ipynb", 60)
    srv.stop()
    store = str(root / ".jupyter" / "datastore.db")
    fileids = str(srv.home / "fileid.db")

    stats = store_cli("stats", f"--root={root}", "--json")
    assert stats.returncode == 0, stats.stderr
    figures = json.loads(stats.stdout)
    assert figures["documents"] == 1 and figures["rows"] > 60
    [largest] = figures["largest"]
    assert largest["name"].startswith("json:notebook:")
    assert "documents:   1" in store_cli("stats", f"--store={store}").stdout

    before = tmp_path / "before"
    ids = (f"--fileid-db={fileids}", f"--root={root}")
    exported = store_cli("export", str(before), f"--store={store}", *ids)
    assert exported.returncode == 0, exported.stderr
    # autosave was off: only the store had the edits, and the export has them, at the path
    assert sources(read_notebook(before / "nb.ipynb")) == [typed]

    compacted = store_cli("compact", f"--store={store}", "--history=0")
    assert compacted.returncode == 0, compacted.stderr
    assert f"[1/1] {largest['name']}: " in compacted.stderr  # a line per document in a log
    assert json.loads(store_cli("stats", f"--store={store}", "--json").stdout)["rows"] <= 2

    after = tmp_path / "after"
    store_cli("export", str(after), f"--store={store}", *ids)
    assert (after / "nb.ipynb").read_bytes() == (before / "nb.ipynb").read_bytes()
    again = store_cli("export", str(after), f"--store={store}", *ids)
    assert "exists; --force overwrites" in again.stderr  # nothing overwritten by default

    verified = store_cli("verify", f"--store={store}")
    assert verified.returncode == 0 and "the store is sound" in verified.stdout

    assert "size on disk" in compacted.stdout

    # Damage one row: verify names the document and what is wrong with it.
    with sqlite3.connect(store) as db:
        last = "(SELECT MAX(rowid) FROM updates)"
        db.execute(f"UPDATE updates SET data = X'0102030405', codec = 0 WHERE rowid = {last}")
    damaged = store_cli("verify", f"--store={store}")
    assert damaged.returncode == 1
    assert f"problem: {largest['name']}: update" in damaged.stdout
    assert "is not a valid Yjs update" in damaged.stdout


async def test_verify_finds_a_lost_row_whose_successors_still_apply(
    make_server, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    # Every row kept (step 0): one per edit, as a server stores them between compactions.
    srv = make_server(
        ["--DatastoreApp.autosave=False", "--DatastoreApp.store_history_step=0"], root=root
    )
    write_notebook(root / "nb.ipynb", notebook(code_cell("", "c1")))
    await fill(srv, "nb.ipynb", 30)
    srv.stop()
    store = str(root / ".jupyter" / "datastore.db")
    sound = store_cli("verify", f"--store={store}")
    assert sound.returncode == 0 and "the store is sound" in sound.stdout, sound.stdout
    [name] = [
        d["name"]
        for d in json.loads(store_cli("stats", f"--store={store}", "--json").stdout)["largest"]
    ]

    with sqlite3.connect(store) as db:
        seqs = [seq for (seq,) in db.execute("SELECT seq FROM updates ORDER BY seq")]
        at = len(seqs) // 2
        middle, older, after = seqs[at], seqs[at - 1], seqs[at + 1]
        (kept,) = db.execute("SELECT data FROM updates WHERE seq = ?", (middle,)).fetchone()
        # A row overwritten by an older one (a restore gone wrong): its successors still apply.
        db.execute(
            "UPDATE updates SET data = (SELECT data FROM updates WHERE seq = ?) WHERE seq = ?",
            (older, middle),
        )
    overwritten = store_cli("verify", f"--store={store}")
    assert overwritten.returncode == 1, overwritten.stdout
    assert f"problem: {name}: " in overwritten.stdout
    assert "are waiting for clock" in overwritten.stdout
    assert f"a row before seq {after} " in overwritten.stdout

    with sqlite3.connect(store) as db:
        db.execute("UPDATE updates SET data = ? WHERE seq = ?", (kept, middle))
    assert store_cli("verify", f"--store={store}").returncode == 0  # as it was: sound again
    with sqlite3.connect(store) as db:
        db.execute("DELETE FROM updates WHERE seq = ?", (middle,))
    lost = store_cli("verify", f"--store={store}")
    assert lost.returncode == 1 and "1 problems found" in lost.stdout, lost.stdout
    assert f"problem: {name}: " in lost.stdout and "which no row holds" in lost.stdout
    assert f"a row before seq {after} " in lost.stdout


def test_a_file_that_is_not_a_store_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database at all" * 300)
    for action in ("stats", "verify"):
        done = store_cli(action, f"--store={broken}")
        assert done.returncode == 1
        assert "not a database" in done.stderr and "Traceback" not in done.stderr
    missing = store_cli("stats", f"--root={tmp_path / 'nowhere'}")
    assert missing.returncode == 1 and "no store at" in missing.stderr
    assert store_cli("export", f"--store={broken}").returncode == 2  # export needs a folder


async def test_compacting_beside_a_running_server_keeps_its_documents(
    make_server, tmp_path: Path
) -> None:
    srv = make_server()
    write_notebook(tmp_path / "live.ipynb", notebook(code_cell("", "c1")))
    typed = await fill(srv, "live.ipynb", 40)
    store = str(tmp_path / ".jupyter" / "datastore.db")
    done = store_cli("compact", f"--store={store}", "--history=0")
    assert done.returncode == 0, done.stderr
    c = await YClient.connect(srv.url, srv.token, "live.ipynb")
    try:
        assert str(c.doc.get("cells", type=Array)[0]["source"]) == typed
        c.doc.get("cells", type=Array)[0]["source"].insert(0, "more ")
        await c.save(1)
    finally:
        await c.close()
    srv.restart()
    d = await YClient.connect(srv.url, srv.token, "live.ipynb")
    try:
        assert str(d.doc.get("cells", type=Array)[0]["source"]) == "more " + typed
    finally:
        await d.close()
