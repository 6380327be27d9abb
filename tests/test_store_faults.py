"""A store that cannot write (a full disk) and a store that is damaged, on a real server."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from notebooks import code_cell, notebook, read_notebook, sources, write_notebook
from pycrdt import Array
from yclient import YClient, until


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
            type_into(a, " taken")  # taken by the room, cannot be stored
            await until(
                lambda: any(r.get("type") == "store_fault" for r in a.raw + b.raw),
                what="the fault notice",
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
            want = "start acked taken refused"
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
            assert cell_source(c) == "start acked taken refused"
        finally:
            await c.close()
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
