"""The state room `datastore:state` follows the Jupyter server, whoever changes it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from notebooks import code_cell, notebook, write_notebook
from pycrdt import Map
from test_store_faults import small_disk
from yclient import YClient, eventually, until

from jupyter_datastore.execution.kernel import ExecutionPolicy
from jupyter_datastore.execution.records import ExecutionRecord
from jupyter_datastore.execution.service import Executor
from jupyter_datastore.rooms.room import RoomSettings
from jupyter_datastore.state.service import ServerState, StatePolicy
from jupyter_datastore.store.sqlite import SQLiteStore

pytestmark = pytest.mark.timeout(180)

STATE = "datastore:state"


async def state_client(server: Any) -> YClient:
    snapshot = server.get("/api/datastore/state")
    return await YClient.connect(
        server.url, server.token, room=STATE, session_id=snapshot["session_id"]
    )


def live(client: YClient, name: str) -> dict[str, Any]:
    return dict(client.doc.get(name, type=Map).to_py() or {})


def alive(kernels: dict[str, Any]) -> set[str]:
    return {k for k, v in kernels.items() if v["execution_state"] != "dead"}


@pytest.fixture
async def http(server):
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"token {server.token}"}, timeout=60
    ) as client:
        yield client


async def test_concurrent_clients_starting_and_stopping_kernels_and_sessions_converge(
    server, http
) -> None:
    watcher = await state_client(server)
    try:

        def state_of(kernel_id: str) -> str | None:
            return live(watcher, "kernels").get(kernel_id, {}).get("execution_state")

        async def churn(n: int) -> None:
            kernel = (await http.post("/api/kernels", json={"name": "python3"})).json()
            session = await http.post(
                "/api/sessions",
                json={
                    "path": f"churn-{n}.ipynb",
                    "type": "notebook",
                    "kernel": {"name": "python3"},
                },
            )
            assert session.status_code == 201, session.text
            # Stopped once ready: a kernel stopped while it imports prints a traceback.
            for kernel_id in (kernel["id"], session.json()["kernel"]["id"]):
                await until(lambda k=kernel_id: state_of(k) == "idle", 120, "a started kernel")
            if n % 2:
                assert (await http.delete(f"/api/kernels/{kernel['id']}")).status_code == 204
            if n % 3 == 0:
                deleted = await http.delete(f"/api/sessions/{session.json()['id']}")
                assert deleted.status_code == 204

        await asyncio.gather(*(churn(n) for n in range(6)))

        async def converged() -> bool:
            kernels = (await http.get("/api/kernels")).json()
            sessions = (await http.get("/api/sessions")).json()
            return alive(live(watcher, "kernels")) == {k["id"] for k in kernels} and set(
                live(watcher, "sessions")
            ) == {s["id"] for s in sessions}

        await eventually(converged)
        sessions = live(watcher, "sessions")
        assert len(sessions) == 4  # six made, two deleted (0 and 3)
        assert {s["path"] for s in sessions.values()} == {f"churn-{n}.ipynb" for n in (1, 2, 4, 5)}
        # Started kernels settle as idle, and the server status counts the live ones.
        await until(
            lambda: all(v["execution_state"] == "idle" for v in live(watcher, "kernels").values()),
            30,
            "idle kernels",
        )
        assert live(watcher, "status")["kernels"] == len(alive(live(watcher, "kernels")))
        # The JSON snapshot says the same.
        snapshot = server.get("/api/datastore/state")
        assert snapshot["kernels"].keys() == live(watcher, "kernels").keys()
        assert snapshot["sessions"] == live(watcher, "sessions")
    finally:
        await watcher.close()
        for session in (await http.get("/api/sessions")).json():
            await http.delete(f"/api/sessions/{session['id']}")
        for kernel in (await http.get("/api/kernels")).json():
            await http.delete(f"/api/kernels/{kernel['id']}")


async def test_busy_and_idle_and_executions_show_as_cells_run(server, http) -> None:
    write_notebook(
        server.root / "busy.ipynb",
        notebook(code_cell("import time; time.sleep(0.5); 6 * 7", "slow"), code_cell("1/0", "bad")),
    )
    watcher = await state_client(server)
    reader = await YClient.connect(server.url, server.token, "busy.ipynb")
    try:
        response = await http.post(
            "/api/datastore/executions", json={"path": "busy.ipynb", "cell_ids": ["slow", "bad"]}
        )
        assert response.status_code == 202, response.text
        slow, bad = (r["id"] for r in response.json()["executions"])

        def execution(execution_id: str) -> dict[str, Any]:
            return live(watcher, "executions").get(execution_id) or {}

        await until(lambda: execution(slow).get("status") == "running", 30, "running")
        kernel_id = execution(slow)["kernel_id"]
        await until(
            lambda: live(watcher, "kernels").get(kernel_id, {}).get("execution_state") == "busy",
            10,
            "busy kernel",
        )
        await until(lambda: execution(bad).get("status") == "error", 30, "the failing cell")
        assert execution(slow)["status"] == "ok"
        assert execution(slow)["execution_count"] == 1
        assert execution(bad)["error"]["ename"] == "ZeroDivisionError"
        assert "outputs" not in execution(bad)  # a summary: outputs are in the document
        await until(
            lambda: live(watcher, "kernels")[kernel_id]["execution_state"] == "idle", 10, "idle"
        )
        # The open document and who is in it.
        documents = live(watcher, "documents")
        (entry,) = [d for d in documents.values() if d["path"] == "busy.ipynb"]
        assert entry["peers"] == 1 and entry["type"] == "notebook"
        # The session the run started is there, on that kernel.
        sessions = live(watcher, "sessions").values()
        assert any(s["path"] == "busy.ipynb" and s["kernel"]["id"] == kernel_id for s in sessions)
    finally:
        await reader.close()
        await watcher.close()
    await until(
        lambda: (
            not any(
                d["path"] == "busy.ipynb"
                for d in server.get("/api/datastore/state")["documents"].values()
            )
        ),
        10,
        "the closed document to go",
    )


async def test_terminals_and_contents_actions_show(server, http) -> None:
    watcher = await state_client(server)
    try:
        terminal = (await http.post("/api/terminals")).json()
        await until(lambda: terminal["name"] in live(watcher, "terminals"), 10, "the terminal")
        assert live(watcher, "status")["terminals"] >= 1
        assert (await http.delete(f"/api/terminals/{terminal['name']}")).status_code == 204
        await until(lambda: terminal["name"] not in live(watcher, "terminals"), 10, "it gone")

        made = (await http.post("/api/contents", json={"type": "directory"})).json()
        folder = made["path"]
        await until(lambda: folder in live(watcher, "contents"), 10, "the new folder")
        assert live(watcher, "contents")[folder]["type"] == "directory"
        put = await http.put(
            f"/api/contents/{folder}/a.txt",
            json={"type": "file", "format": "text", "content": "hi"},
        )
        assert put.status_code == 201, put.text
        await until(lambda: f"{folder}/a.txt" in live(watcher, "contents"), 10, "the file")
        copied = await http.post(f"/api/contents/{folder}", json={"copy_from": f"{folder}/a.txt"})
        assert copied.status_code == 201, copied.text
        copy_path = copied.json()["path"]
        await until(lambda: copy_path in live(watcher, "contents"), 10, "the copy")
        renamed = await http.patch(f"/api/contents/{folder}", json={"path": "renamed-folder"})
        assert renamed.status_code == 200, renamed.text
        await until(
            lambda: (
                "renamed-folder" in live(watcher, "contents")
                and not any(p.startswith(folder) for p in live(watcher, "contents"))
            ),
            10,
            "the rename",
        )
        assert (await http.delete("/api/contents/renamed-folder")).status_code == 204
        await until(lambda: "renamed-folder" not in live(watcher, "contents"), 10, "the delete")
    finally:
        await watcher.close()


async def test_a_client_write_is_refused_and_changes_nothing(server) -> None:
    writer = await state_client(server)
    other = await state_client(server)
    try:
        before = server.get("/api/datastore/state")
        with writer.doc.transaction():
            writer.doc.get("kernels", type=Map)["forged"] = {"id": "forged", "name": "evil"}
        await until(lambda: any(r.get("type") == "refused" for r in writer.raw), 10, "the refusal")
        (refusal,) = [r for r in writer.raw if r.get("type") == "refused"]
        assert "read-only" in refusal["reason"] and "/api/kernels" in refusal["reason"]
        # Refused as it arrived: nothing was relayed to the other client or kept.
        assert "forged" not in live(other, "kernels")
        assert server.get("/api/datastore/state")["kernels"] == before["kernels"]
    finally:
        await writer.close()
        await other.close()


async def test_an_old_session_id_is_told_to_reload(server) -> None:
    url = server.url.replace("http", "ws", 1) + f"/api/collaboration/room/{STATE}"
    query = f"?sessionId={'0' * 32}&token={server.token}"
    async with websockets.connect(url + query) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    reason = json.loads(closed.value.rcvd.reason)
    assert reason["reloadable"] is True
    assert reason["sessionId"] == server.get("/api/datastore/state")["session_id"]


async def test_a_kernelspec_installed_on_disk_shows_after_a_refresh(server, http) -> None:
    folder = server.home / "data" / "kernels" / "extra"
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Extra", "language": "python"}  # fmt: skip
    (folder / "kernel.json").write_text(json.dumps(spec))
    try:
        refreshed = (await http.post("/api/datastore/state/refresh")).json()
        assert refreshed["kernelspecs"]["extra"]["spec"]["display_name"] == "Extra"
        assert refreshed["kernelspecs"]["python3"]["default"] is True
    finally:
        (folder / "kernel.json").unlink()
        folder.rmdir()


async def test_a_kernel_killed_from_outside_shows_as_dead(make_server) -> None:
    server = make_server(
        ["--KernelRestarter.restart_limit=0", "--KernelRestarter.time_to_dead=0.2"]
    )
    watcher = await state_client(server)
    try:
        kernel = server.request("POST", "/api/kernels", {"name": "python3"})
        kernel_id = kernel["id"]
        await until(
            lambda: live(watcher, "kernels").get(kernel_id, {}).get("execution_state") == "idle",
            30,
            "the kernel ready",
        )
        (process,) = [
            p for p in _children(server) if any(kernel_id in part for part in p.cmdline())
        ]
        os.kill(process.pid, signal.SIGKILL)
        await until(
            lambda: live(watcher, "kernels").get(kernel_id, {}).get("execution_state") == "dead",
            30,
            "the kernel shown dead",
        )
        assert "died" in live(watcher, "kernels")[kernel_id]["reason"]
        assert server.get("/api/kernels") == []
        assert live(watcher, "status")["kernels"] == 0
    finally:
        await watcher.close()


def _children(server: Any) -> list[Any]:
    import psutil

    assert server.process is not None
    return psutil.Process(server.process.pid).children(recursive=True)


async def test_kernel_websocket_connections_show_at_once(make_server) -> None:
    # No periodic re-read: the count must come from the connection itself.
    server = make_server(["--DatastoreApp.state_reconcile_interval=0"])
    watcher = await state_client(server)
    kernel_id = server.request("POST", "/api/kernels", {"name": "python3"})["id"]

    def connections() -> int | None:
        return live(watcher, "kernels").get(kernel_id, {}).get("connections")

    try:
        await until(lambda: connections() == 0, 30, "the kernel")
        url = server.url.replace("http", "ws", 1)
        channels = f"{url}/api/kernels/{kernel_id}/channels?token={server.token}"
        async with websockets.connect(channels), websockets.connect(channels):
            await until(lambda: connections() == 2, 10, "two connections")
            assert live(watcher, "status")["connections"] == 2
        await until(lambda: connections() == 0, 10, "none again")
    finally:
        await watcher.close()
        headers = {"Authorization": f"token {server.token}"}
        httpx.delete(f"{server.url}/api/kernels/{kernel_id}", headers=headers, timeout=30)


async def test_executions_stay_while_the_store_cannot_be_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that fails to read is an outage, not a reason to think executions deleted:
    the room keeps them as they were, logs the outage once, and reads them again after."""
    with small_disk(tmp_path / "disk") as disk:
        store = SQLiteStore(str(disk / "store.db"))
        await store.start()
        done = ExecutionRecord(id="done", kernel_id="k1", batch_id="b1")
        done.start()
        done.finish("ok", execution_count=1)
        queued = ExecutionRecord(id="queued", kernel_id="k1", batch_id="b1")
        await store.put_executions([done.stored(), queued.stored()])
        executor = Executor(
            rooms=None,
            ids=None,
            io=None,
            store=store,
            kernels={},
            sessions=None,
            policy=ExecutionPolicy(),
        )
        state = ServerState(
            services=None,
            bus=None,
            rooms=None,
            sessions_of_documents={},
            executor=executor,
            watcher=None,
            policy=StatePolicy(),
            room_settings=RoomSettings(),
        )

        def shown() -> dict[str, str]:
            entries = state.model.maps["executions"]
            return {key: value["status"] for key, value in entries.items()}

        async def reread(*ids: str) -> None:
            state._executions.update(ids)
            await state._apply()

        try:
            await reread("done", "queued", "pruned")
            assert shown() == {"done": "ok", "queued": "queued"}  # "pruned": NotFound

            # The store's folder is hidden under another mount (as a lost network mount
            # would be): every read fails, "no such table".
            subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(disk)], check=True)
            try:
                with caplog.at_level(logging.WARNING, "jupyter_datastore.state.service"):
                    for _ in range(3):
                        await reread("done", "queued")
                        assert shown() == {"done": "ok", "queued": "queued"}
                with pytest.raises(Exception, match="no such table"):
                    await store.get_execution("done")  # it is the store that fails
                # Changed meanwhile (the writer keeps its open file).
                queued.cancel("cancelled on request")
                await store.put_executions([queued.stored()])
            finally:
                subprocess.run(["umount", str(disk)], check=True)
            outage = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(outage) == 1 and "cannot read executions" in outage[0].getMessage()

            caplog.clear()
            with caplog.at_level(logging.WARNING, "jupyter_datastore.state.service"):
                await state._apply()  # the ids it could not read are still due
            assert shown() == {"done": "ok", "queued": "cancelled"}
            assert [r.getMessage() for r in caplog.records] == [
                "the state room reads executions again"
            ]
        finally:
            await store.close()
