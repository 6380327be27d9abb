"""The Python client against real servers and kernels: open, edit, execute, watch, reconnect."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from notebooks import code_cell, markdown_cell, notebook, read_notebook, write_notebook

from jupyter_datastore.client import (
    Backoff,
    Client,
    EditsDiscarded,
    ExecutionFailed,
    Forbidden,
    NotFound,
    StateChange,
    StateChanges,
)

QUICK = Backoff(initial=0.05, maximum=0.5)  # reconnects soon after a restart


async def first(changes: StateChanges, predicate: Callable[[StateChange], bool]) -> StateChange:
    async for change in changes:
        if predicate(change):
            return change
    raise AssertionError("the changes ended")


def sources(path: Path) -> list[str]:
    cells = read_notebook(path)["cells"]
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells]


async def test_round_trip_from_a_plain_script(server, tmp_path: Path) -> None:
    """Open, edit, execute and read outputs from a script run by the venv's python."""
    write_notebook(
        server.root / "script.ipynb",
        notebook(code_cell("x = 1", "first"), markdown_cell("# notes", "notes")),
    )
    script = tmp_path / "round_trip.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json
            from jupyter_datastore.client.sync import connect

            with connect({server.url!r}, {server.token!r}) as client:
                nb = client.open_notebook("script.ipynb")
                nb.cells[0].set_source("x = 21")
                nb.append("print(x * 2)")
                runs = nb.execute()
                nb.save()
                print(json.dumps({{
                    "statuses": [run.status for run in runs],
                    "record_outputs": [run.outputs for run in runs],
                    "cell_outputs": nb.cells[-1].outputs,
                    "count": nb.cells[-1].execution_count,
                    "types": [cell.cell_type for cell in nb.cells],
                }}))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["statuses"] == ["ok", "ok"]
    assert result["record_outputs"][1][0]["text"] == "42\n"
    assert result["cell_outputs"] == [{"output_type": "stream", "name": "stdout", "text": "42\n"}]
    assert result["count"] == 2
    assert result["types"] == ["code", "markdown", "code"]
    saved = read_notebook(server.root / "script.ipynb")
    assert sources(server.root / "script.ipynb") == ["x = 21", "# notes", "print(x * 2)"]
    assert "".join(saved["cells"][2]["outputs"][0]["text"]) == "42\n"


async def test_two_clients_see_each_others_edits(server) -> None:
    write_notebook(server.root / "pair.ipynb", notebook(code_cell("a = 1", "c1")))
    async with Client(server.url, server.token) as one, Client(server.url, server.token) as two:
        left = await one.open_notebook("pair.ipynb")
        right = await two.open_notebook("pair.ipynb")
        left.cell("c1").set_source("a = 2")
        await right.wait_for(lambda nb: nb.cell("c1").source == "a = 2")
        added = right.insert(0, "## title", "markdown")
        await left.wait_for(lambda nb: len(nb.cells) == 2)
        assert left.cells[0].id == added.id
        assert left.cells[0].cell_type == "markdown" and left.cells[0].source == "## title"


async def test_insert_move_delete_reach_the_file(server) -> None:
    path = server.root / "shape.ipynb"
    write_notebook(path, notebook(code_cell("one", "c1"), code_cell("two", "c2")))
    async with Client(server.url, server.token) as client:
        nb = await client.open_notebook("shape.ipynb")
        nb.insert(1, "inserted", "markdown", cell_id="m1")
        nb.append("three", cell_id="c3")
        nb.move("c3", 0)
        nb.delete("c2")
        nb.move(-1, 1)  # m1 back behind c3
        assert [c.id for c in nb.cells] == ["c3", "m1", "c1"]
        assert await nb.save() in ("success", "skipped")
        assert sources(path) == ["three", "inserted", "one"]
        saved = read_notebook(path)["cells"]
        assert [c["id"] for c in saved] == ["c3", "m1", "c1"]
        assert saved[0]["outputs"] == [] and saved[0]["execution_count"] is None
        assert "outputs" not in saved[1]
        with pytest.raises(KeyError):
            nb.delete("c2")


async def test_execute_awaits_the_outputs(server) -> None:
    write_notebook(
        server.root / "exec.ipynb",
        notebook(code_cell("import sys\nprint('out')", "p"), code_cell("6 * 7", "r")),
    )
    async with Client(server.url, server.token) as client:
        nb = await client.open_notebook("exec.ipynb")
        printed, result = await nb.execute([nb.cells[0], "r"], timeout=60)
        assert printed.ok and result.ok
        assert printed.outputs == [{"output_type": "stream", "name": "stdout", "text": "out\n"}]
        assert result.outputs[0]["data"]["text/plain"] == "42"
        # The document holds them too, as JupyterLab shows them.
        assert nb.cell("r").outputs[0]["data"]["text/plain"] == "42"
        assert nb.cell("r").execution_count == result.execution_count == 2
        assert nb.cell("r").execution_state == "idle"


async def test_a_failing_cell_is_reported_and_stops_the_run(server) -> None:
    write_notebook(
        server.root / "fail.ipynb",
        notebook(
            code_cell("a = 1", "ok"),
            code_cell("raise ValueError('boom')", "bad"),
            code_cell("print('never')", "after"),
        ),
    )
    async with Client(server.url, server.token) as client:
        nb = await client.open_notebook("fail.ipynb")
        runs = await nb.execute()
        assert [r.status for r in runs] == ["ok", "error", "cancelled"]
        assert runs[1].error == {"ename": "ValueError", "evalue": "boom"}
        assert any("ValueError" in line for line in runs[1].traceback)
        assert nb.cell("after").outputs == []
        with pytest.raises(ExecutionFailed) as failed:
            await nb.execute(["bad"], check=True)
        assert "ValueError: boom" in str(failed.value)
        assert failed.value.executions[0].cell_id == "bad"


async def test_a_text_file_is_live_too(server) -> None:
    path = server.root / "notes.txt"
    path.write_text("héllo world\n")
    async with Client(server.url, server.token) as client:
        text = await client.open_file("notes.txt")
        assert text.text == "héllo world\n"
        text.replace(6, 11, "wörld")
        text.insert(0, "« ")
        assert text.text == "« héllo wörld\n"
        await text.save()
        assert path.read_text() == "« héllo wörld\n"


async def test_bad_input_gets_clear_errors(server) -> None:
    async with Client(server.url, server.token) as client:
        with pytest.raises(NotFound) as missing:
            await client.open_notebook("no/such.ipynb")
        assert missing.value.status == 404 and "no/such.ipynb" in missing.value.detail
        with pytest.raises(NotFound):
            await client.execution("0" * 32)
        write_notebook(server.root / "cells.ipynb", notebook(code_cell("", "c1")))
        nb = await client.open_notebook("cells.ipynb")
        with pytest.raises(KeyError):
            await nb.execute(["nope"])
    async with Client(server.url, "wrong-token") as stranger:
        with pytest.raises(Forbidden):
            await stranger.open_notebook("cells.ipynb")


async def test_reconnects_after_a_restart_and_keeps_editing(make_server, tmp_path: Path) -> None:
    """Same store across the restart: the doc is kept and resynced, nothing is duplicated."""
    srv = make_server()
    write_notebook(tmp_path / "again.ipynb", notebook(code_cell("one", "c1"), code_cell("", "c2")))
    async with Client(srv.url, srv.token, backoff=QUICK) as client:
        nb = await client.open_notebook("again.ipynb")
        nb.cell("c2").set_source("two")
        await nb.synced()
        await asyncio.to_thread(srv.stop)
        await nb.wait_for(lambda nb: not nb.connected)
        nb.cell("c1").set_source("one, again")  # made while disconnected, sent on resync
        await asyncio.to_thread(srv.start)
        await nb.synced(timeout=60)
        assert nb.reloads == 0
        other = await client.open_notebook("again.ipynb")
        assert [c.source for c in other.cells] == ["one, again", "two"]
        await other.save()
    assert sources(tmp_path / "again.ipynb") == ["one, again", "two"]


async def test_a_new_store_session_reopens_the_document_fresh(make_server, tmp_path: Path) -> None:
    """An in-memory store is new at every start: the client gets 1003 and reopens from the
    file, without merging its old doc (which would duplicate every cell)."""
    srv = make_server(["--store=sqlite://:memory:"])
    path = tmp_path / "fresh.ipynb"
    write_notebook(path, notebook(code_cell("one", "c1"), code_cell("two", "c2")))
    reloaded: list[int] = []
    async with Client(srv.url, srv.token, backoff=QUICK) as client:
        nb = await client.open_notebook("fresh.ipynb")
        nb.on_reload(lambda: reloaded.append(nb.reloads))
        nb.cell("c1").set_source("one, saved")
        await nb.save()
        await asyncio.to_thread(srv.restart)  # the client retries while the server is down
        await nb.wait_for(lambda nb: nb.reloads == 1 and nb.connected, timeout=60)
        assert reloaded == [1]
        assert [(c.id, c.source) for c in nb.cells] == [("c1", "one, saved"), ("c2", "two")]
        # Edits made while the server is down cannot be merged into its new history.
        await asyncio.to_thread(srv.stop)
        await nb.wait_for(lambda nb: not nb.connected)
        nb.cell("c2").set_source("lost")
        await asyncio.to_thread(srv.start)
        with pytest.raises(EditsDiscarded):
            await nb.synced(timeout=60)
        assert nb.reloads == 2
        assert [c.source for c in nb.cells] == ["one, saved", "two"]
        nb.cell("c2").set_source("kept")
        await nb.synced()
        await nb.save()
    assert sources(path) == ["one, saved", "kept"]


async def test_watch_state_sees_kernels_come_and_go(server) -> None:
    async with Client(server.url, server.token) as client:
        state = await client.watch_state()
        changes = state.changes()
        kernel = await client.request("POST", "/api/kernels", {"name": "python3"})
        kid = kernel["id"]
        await state.wait_for(lambda s: kid in s.kernels, timeout=30)
        assert state.kernels[kid]["name"] == "python3"
        # The server is shared with other tests, whose kernels may still come and go.
        mine = first(changes, lambda c: c.map == "kernels" and c.key == kid)
        seen = await asyncio.wait_for(mine, 30)
        assert seen == StateChange("kernels", kid, seen.value) and seen.value["id"] == kid
        await state.wait_for(lambda s: s.kernels[kid]["execution_state"] == "idle", timeout=60)
        await client.request("DELETE", f"/api/kernels/{kid}")
        await state.wait_for(lambda s: kid not in s.kernels, timeout=30)
        changes.close()


async def test_watch_state_reopens_after_a_restart(make_server) -> None:
    srv = make_server()
    async with Client(srv.url, srv.token, backoff=QUICK) as client:
        state = await client.watch_state()
        before = srv.get("/api/datastore/state")["session_id"]
        await asyncio.to_thread(srv.restart)
        await state.wait_for(lambda s: s.reloads == 1 and s.connected, timeout=60)
        assert srv.get("/api/datastore/state")["session_id"] != before
        assert "python3" in state.kernelspecs


async def test_the_server_lacks_nothing_after_synced(server) -> None:
    """`synced()` is a barrier: another client sees every edit made before it."""
    write_notebook(server.root / "barrier.ipynb", notebook(code_cell("", "c1")))
    async with Client(server.url, server.token) as client:
        nb = await client.open_notebook("barrier.ipynb")
        for n in range(20):
            nb.cell("c1").set_source(f"step {n}")
        await nb.synced()
        other = await client.open_notebook("barrier.ipynb")
        assert other.cell("c1").source == "step 19"
