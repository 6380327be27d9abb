"""A store that cannot write (a full disk) and a store that is damaged, on a real server."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsapi import EventSocket
from execapi import ExecApi, cell_json, outputs_text
from notebooks import code_cell, notebook, read_notebook, sources, write_notebook
from pycrdt import Array
from yclient import YClient, until

from jupyter_datastore.events.catalog import STORE_FAULT


def cell_source(client: YClient, index: int = 0) -> str:
    return str(client.doc.get("cells", type=Array)[index]["source"])


def type_into(client: YClient, text: str) -> None:
    source = client.doc.get("cells", type=Array)[0]["source"]
    source.insert(len(str(source)), text)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (needs root, as CI has), unmounted at the end."""
    path.mkdir()
    if os.geteuid() != 0:
        message = "the full-disk test mounts a tmpfs, which needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


TAKEN = " taken " + "#" * 512 * 1024
"""An edit made while the disk is full."""


def fill(disk: Path) -> Path:
    """Take every free byte of the disk; returns the file to delete to free them."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


async def test_a_full_disk_stops_edits_loses_nothing_and_recovers(
    make_server, tmp_path: Path
) -> None:
    disk_dir = tmp_path / "disk"
    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / "full.ipynb", notebook(code_cell("start", "c1")))
    with small_disk(disk_dir) as disk:
        srv = make_server([f"--store={disk / 'store.db'}"], root=root)
        a = await YClient.connect(srv.url, srv.token, "full.ipynb")
        b = await YClient.connect(srv.url, srv.token, "full.ipynb")
        try:
            type_into(a, " acked")
            await until(lambda: cell_source(b) == "start acked", what="the first edit at b")

            filler = fill(disk)
            # Taken by the room, and too large to be stored: larger than any space SQLite's
            # write-ahead log may already hold and reuse after a checkpoint.
            type_into(a, TAKEN)
            await until(
                lambda: any(r.get("type") == "store_fault" for r in b.raw),
                what="the fault notice at b",
            )
            notice = next(r for r in b.raw if r.get("type") == "store_fault")
            assert "cannot save changes" in notice["reason"]
            assert cell_source(b) == "start acked"  # nothing unstored reached a peer
            type_into(a, " refused")
            await until(
                lambda: any(r.get("type") == "refused" for r in a.raw), what="a refusal to a"
            )
            assert cell_source(b) == "start acked"

            filler.unlink()  # the disk has room again
            await until(
                lambda: any(r.get("type") == "store_recovered" for r in b.raw),
                timeout=30,
                what="recovery",
            )
            want = f"start acked{TAKEN} refused"
            await until(lambda: cell_source(b) == want, timeout=15, what="a's edits at b")
            assert cell_source(a) == want
            await a.save(7)
            assert sources(read_notebook(root / "full.ipynb")) == [want]
        finally:
            await a.close()
            await b.close()
        srv.restart()  # and the store has it all
        c = await YClient.connect(srv.url, srv.token, "full.ipynb")
        try:
            assert cell_source(c) == f"start acked{TAKEN} refused"
        finally:
            await c.close()
        srv.stop()


@pytest.mark.timeout(180)
async def test_execution_records_through_a_full_disk(make_server, tmp_path: Path) -> None:
    """A run under way when the disk fills finishes and is read from memory; a new request
    is refused (503) with nothing queued; the outage is one event, its end another; and the
    record reaches the store once the disk has room."""
    root = tmp_path / "root"
    root.mkdir()
    slow = "import time; time.sleep(2); print('slept')"
    write_notebook(root / "run.ipynb", notebook(code_cell(slow, "c1"), code_cell("1 + 1", "c2")))
    with small_disk(tmp_path / "disk") as disk:
        srv = make_server([f"--store={disk / 'store.db'}"], root=root)
        api = ExecApi(srv.url, srv.token)
        events = await EventSocket.connect(srv.url, srv.token)
        reader = await YClient.connect(srv.url, srv.token, "run.ipynb")
        try:
            warm = await api.run("run.ipynb", "c2")  # the kernel and its session
            await api.wait(warm[0]["id"])
            (first,) = await api.run("run.ipynb", "c1")
            await api.wait(first["id"], {"running"})

            # A record is small: it could fit in the space of a write-ahead log that SQLite
            # reuses after a checkpoint. Truncated first, the log can only grow, which fails.
            with contextlib.closing(sqlite3.connect(disk / "store.db")) as db:
                db.execute("PRAGMA busy_timeout=5000")
                busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                assert busy == 0, "the write-ahead log was not truncated"
            filler = fill(disk)
            refused = await api.post({"path": "run.ipynb", "cell_ids": ["c2"]})
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "store_unavailable"
            listed = await api.http.get("/api/datastore/executions", params={"path": "run.ipynb"})
            assert [r["cell_id"] for r in listed.json()["executions"]] == ["c1", "c2"]

            done = await api.wait(first["id"])  # finished while the store fails: from memory
            assert done["status"] == "ok"

            filler.unlink()

            def faults() -> list[dict[str, Any]]:
                return [e for e in events.of(STORE_FAULT) if e.get("what") == "execution_records"]

            await until(lambda: len(faults()) == 2, timeout=30, what="the recovery event")
            # The event log waited for the store too: the fault's event, then its end.
            fault, recovered = faults()
            assert fault["recovered"] is False
            assert recovered["recovered"] is True
            assert recovered["operation"] == "put_executions"
            assert recovered["room_id"] is None  # the whole store: for owners
            assert recovered["attempts"] >= 2  # the request and the finished run at least
            logged = srv.log_path.read_text(errors="replace")
            assert logged.count("the store cannot take execution records") == 1
            await until(
                lambda: (
                    "slept" in outputs_text(reader.doc, "c1")
                    and cell_json(reader.doc, "c2").get("execution_state") == "idle"
                ),
                timeout=30,
                what="c1's output and c2 idle at the reader",
            )
        finally:
            await reader.close()
            await events.close()
            await api.close()
        srv.restart()  # what the store holds now
        api = ExecApi(srv.url, srv.token)
        try:
            stored = await api.get(first["id"])
            assert stored["status"] == "ok"
            assert "slept" in str(stored["outputs"])
        finally:
            await api.close()
        srv.stop()


def test_a_damaged_store_is_a_clear_error_at_start(tmp_path: Path) -> None:
    store = tmp_path / "broken.db"
    store.write_bytes(b"this is no database" * 512)
    command = [sys.executable, "-m", "jupyter_datastore.cli", "serve", f"--root={tmp_path}"]
    done = subprocess.run(
        [*command, f"--store={store}", "--port=0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "not a database" in done.stderr
    assert "jupyter-datastore store verify" in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_save_the_store_cannot_note_stands_and_is_noted_later(
    make_server, tmp_path: Path
) -> None:
    """The store refuses to note a save (a real SQLite trigger fails the update of the saved
    mark): the file is written all the same, owners are told once by a store_fault event,
    and the note is made once the store takes it again, which a restart then relies on."""
    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / "noted.ipynb", notebook(code_cell("start", "c1")))
    store = tmp_path / "store.db"
    srv = make_server([f"--store={store}", "--DatastoreApp.autosave=False"], root=root)
    events = await EventSocket.connect(srv.url, srv.token)
    a = await YClient.connect(srv.url, srv.token, "noted.ipynb")

    def saves_faults() -> list[dict[str, Any]]:
        return [e for e in events.of(STORE_FAULT) if e.get("what") == "document_saves"]

    try:
        with sqlite3.connect(store) as db:
            db.execute(
                "CREATE TRIGGER refuse_saved BEFORE UPDATE OF saved_seq ON documents"
                " BEGIN SELECT RAISE(ABORT, 'the store refuses'); END"
            )
        type_into(a, " one")
        assert (await a.save(1))["status"] == "success"  # the file holds it: the save stands
        assert sources(read_notebook(root / "noted.ipynb")) == ["start one"]
        await until(lambda: saves_faults(), what="the fault event")
        (fault,) = saves_faults()
        assert fault["recovered"] is False and fault["operation"] == "mark_saved"
        assert str(fault["room_id"]).startswith("json:notebook:")

        with sqlite3.connect(store) as db:
            db.execute("DROP TRIGGER refuse_saved")
        type_into(a, " two")
        assert (await a.save(2))["status"] == "success"
        await until(lambda: len(saves_faults()) == 2, what="the recovery event")
        assert [f["recovered"] for f in saves_faults()] == [False, True]
    finally:
        await a.close()
        await events.close()
    srv.restart()  # the store's mark and the file agree: nothing is merged or saved again
    b = await YClient.connect(srv.url, srv.token, "noted.ipynb")
    try:
        assert cell_source(b) == "start one two"
        assert sources(read_notebook(root / "noted.ipynb")) == ["start one two"]
    finally:
        await b.close()
    srv.stop()
