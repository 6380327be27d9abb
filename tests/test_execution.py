"""Server-side execution with real ipykernel kernels: outputs land in the shared document."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from execapi import ExecApi, cell_json, outputs_text
from notebooks import code_cell, markdown_cell, notebook, read_notebook, write_notebook
from pycrdt import Array
from yclient import YClient, until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def api(server):
    client = ExecApi(server.url, server.token)
    yield client
    await client.close()


def file_cell(path: Path, cell_id: str) -> dict:
    return next(c for c in read_notebook(path)["cells"] if c["id"] == cell_id)


async def test_outputs_reach_a_reader_and_the_file_as_jupyterlab_shows_them(server, api) -> None:
    path = server.root / "outputs.ipynb"
    progress = (
        "import time\nfor i in range(5):\n    print(f'\\r{i*25}%', end='')\nprint()\n'result'"
    )
    display = "from IPython.display import display\nh = display('first', display_id='d1')"
    later = "h.update('second')\nprint('updated')"
    clear = (
        "from IPython.display import clear_output\n"
        "print('old')\nclear_output(wait=True)\nprint('new')"
    )
    write_notebook(
        path,
        notebook(
            code_cell(progress, "progress"),
            code_cell(display, "display"),
            code_cell(later, "later"),
            code_cell(clear, "clear"),
        ),
    )
    reader = await YClient.connect(server.url, server.token, "outputs.ipynb")
    try:
        records = await api.run("outputs.ipynb", "progress", "display", "later", "clear")
        assert [r["status"] for r in records] == ["queued"] * 4
        # Queued cells show [*] at once, as JupyterLab does.
        await until(lambda: cell_json(reader.doc, "clear").get("execution_state") == "running")
        done = [await api.wait(r["id"]) for r in records]
        assert [r["status"] for r in done] == ["ok"] * 4
        assert [r["execution_count"] for r in done] == [1, 2, 3, 4]

        await until(lambda: cell_json(reader.doc, "clear")["execution_count"] == 4)
        doc = reader.doc
        # The progress bar overwrote its line: one stream output, the last state only.
        assert outputs_text(doc, "progress") == "100%\n'result'"
        progress_cell = cell_json(doc, "progress")
        assert [o["output_type"] for o in progress_cell["outputs"]] == ["stream", "execute_result"]
        assert progress_cell["execution_state"] == "idle"
        timing = progress_cell["metadata"]["execution"]
        assert set(timing) >= {"iopub.status.busy", "shell.execute_reply", "iopub.status.idle"}
        # update_display_data from a later cell replaced the display in the earlier one.
        assert outputs_text(doc, "display") == "'second'"
        assert outputs_text(doc, "later") == "updated\n"
        # clear_output(wait=True) cleared only when the next output came.
        assert outputs_text(doc, "clear") == "new\n"

        await until(
            lambda: file_cell(path, "clear")["outputs"] != [], what="outputs saved to the file"
        )
        on_disk = read_notebook(path)
        cells = {c["id"]: c for c in on_disk["cells"]}
        assert cells["progress"]["outputs"][0]["text"] == ["100%\n"]
        assert cells["display"]["outputs"][0]["data"]["text/plain"] == ["'second'"]
        assert cells["clear"]["execution_count"] == 4
        assert all("execution_state" not in c for c in on_disk["cells"])
    finally:
        await reader.close()


async def test_a_failing_cell_stops_the_rest_of_its_request(server, api) -> None:
    write_notebook(
        server.root / "fail.ipynb",
        notebook(code_cell("1/0", "bad"), code_cell("print('never')", "after")),
    )
    bad, after = await api.run("fail.ipynb", "bad", "after")
    failed = await api.wait(bad["id"])
    assert failed["status"] == "error"
    assert failed["error"] == {"ename": "ZeroDivisionError", "evalue": "division by zero"}
    assert failed["outputs"][0]["output_type"] == "error"
    skipped = await api.wait(after["id"])
    assert skipped["status"] == "cancelled"
    assert "bad" in skipped["reason"]
    reader = await YClient.connect(server.url, server.token, "fail.ipynb")
    try:
        assert cell_json(reader.doc, "after")["execution_state"] == "idle"
        assert cell_json(reader.doc, "after")["outputs"] == []
    finally:
        await reader.close()


async def test_run_outlives_every_client_and_room(make_server, tmp_path) -> None:
    """The cell sleeps longer than the idle-room delay, then prints: nothing is lost."""
    server = make_server(["--DatastoreApp.room_idle_timeout=0.3"])
    path = tmp_path / "alone.ipynb"
    code = "import time\nprint('start', flush=True)\ntime.sleep(2)\nprint('end')"
    write_notebook(path, notebook(code_cell(code, "slow")))
    api = ExecApi(server.url, server.token)
    client = await YClient.connect(server.url, server.token, "alone.ipynb")
    try:
        (record,) = await api.run("alone.ipynb", "slow")
        await until(lambda: "start" in outputs_text(client.doc, "slow"), what="first output")
        await client.close()  # every client gone, mid-run
        done = await api.wait(record["id"])
        assert done["status"] == "ok"
        await until(lambda: file_cell(path, "slow")["execution_count"] == 1, what="saved")
        assert "".join(file_cell(path, "slow")["outputs"][0]["text"]) == "start\nend\n"
        reopened = await YClient.connect(server.url, server.token, "alone.ipynb")
        try:
            cell = cell_json(reopened.doc, "slow")
            assert outputs_text(reopened.doc, "slow") == "start\nend\n"
            assert cell["execution_state"] == "idle"
        finally:
            await reopened.close()
    finally:
        await api.close()


async def test_kernel_death_is_an_error_and_the_queue_goes_on(server, api) -> None:
    write_notebook(
        server.root / "die.ipynb",
        notebook(code_cell("x = 1", "warm"), code_cell("import os; os._exit(1)", "die")),
    )
    (warm,) = await api.run("die.ipynb", "warm")
    assert (await api.wait(warm["id"]))["status"] == "ok"
    (die,) = await api.run("die.ipynb", "die")
    (again,) = await api.run("die.ipynb", "warm")
    died = await api.wait(die["id"])
    assert died["status"] == "error"
    assert died["error"]["ename"] == "KernelDied"
    assert "died" in died["reason"]
    assert died["outputs"][-1]["output_type"] == "error"
    # The kernel is restarted by the server and the queue goes on.
    after = await api.wait(again["id"])
    assert after["status"] == "ok"
    assert after["execution_count"] == 1  # a fresh kernel


async def test_interrupt_a_sleeping_cell(server, api) -> None:
    write_notebook(
        server.root / "sleep.ipynb",
        notebook(code_cell("import time\nprint('zz', flush=True)\ntime.sleep(60)", "sleep")),
    )
    (record,) = await api.run("sleep.ipynb", "sleep")
    await until_output(api, record["id"], "zz")
    response = await api.http.delete(f"/api/datastore/executions/{record['id']}")
    assert response.status_code == 202
    done = await api.wait(record["id"], timeout=20)
    assert done["status"] == "interrupted"
    assert done["error"]["ename"] == "KeyboardInterrupt"


async def until_output(api: ExecApi, execution_id: str, text: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        record = await api.get(execution_id)
        shown = "".join(o.get("text", "") for o in record["outputs"] if "text" in o)
        if text in shown:
            return
        assert asyncio.get_running_loop().time() < deadline, f"no {text!r} in {shown!r}"
        await asyncio.sleep(0.05)


async def test_input_and_getpass_answered_by_another_client(server, api) -> None:
    code = (
        "import getpass\nname = input('name? ')\npw = getpass.getpass('pw? ')\nprint(name, len(pw))"
    )
    write_notebook(server.root / "ask.ipynb", notebook(code_cell(code, "ask")))
    reader = await YClient.connect(server.url, server.token, "ask.ipynb")
    other = ExecApi(server.url, server.token)  # a second client answers
    try:
        (record,) = await api.run("ask.ipynb", "ask")
        waiting = await api.wait(record["id"], {"awaiting_input"})
        assert waiting["input_request"] == {"prompt": "name? ", "password": False}
        await until(lambda: "input_request" in cell_json(reader.doc, "ask"), what="prompt in doc")
        # The server's state shows it waiting (an event says so: no polling needed).
        state = (await api.http.get("/api/datastore/state")).json()
        assert state["executions"][record["id"]]["status"] == "awaiting_input"
        assert cell_json(reader.doc, "ask")["input_request"]["execution_id"] == record["id"]
        answered = await other.http.post(
            f"/api/datastore/executions/{record['id']}/input", json={"value": "Ada"}
        )
        assert answered.status_code == 200, answered.text
        waiting = await api.wait(record["id"], {"awaiting_input"})
        assert waiting["input_request"] == {"prompt": "pw? ", "password": True}
        secret = "s3cr3t-pass-phrase"
        answered = await other.http.post(
            f"/api/datastore/executions/{record['id']}/input", json={"value": secret}
        )
        assert answered.status_code == 200
        done = await api.wait(record["id"])
        assert done["status"] == "ok"
        await until(lambda: "Ada 18" in outputs_text(reader.doc, "ask"), what="output")
        shown = outputs_text(reader.doc, "ask")
        assert shown.startswith("name? Ada\npw? ")
        assert secret not in shown
        assert "input_request" not in cell_json(reader.doc, "ask")
        # An answer when nothing waits is refused.
        late = await other.http.post(
            f"/api/datastore/executions/{record['id']}/input", json={"value": "x"}
        )
        assert late.status_code == 409
        assert late.json()["error"] == "conflict"
        schema = "https://events.jupyter.org/jupyter_datastore/execution/v1"
        events = (await api.http.get("/api/events", params={"schema_id": schema})).json()
        actions = [e["action"] for e in events["events"] if e["execution_id"] == record["id"]]
        asked = ["input_requested", "input_answered"]
        assert actions == ["queued", "started", *asked, *asked, "finished"], actions
        assert secret not in json.dumps(events)
    finally:
        await reader.close()
        await other.close()
    store = server.root / ".jupyter" / "datastore.db"
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT data FROM executions").fetchall()
    assert rows and not any(secret in row[0] for row in rows)


async def test_bad_requests_get_clear_errors_and_change_nothing(server, api) -> None:
    path = server.root / "bad.ipynb"
    write_notebook(path, notebook(code_cell("print(1)", "code"), markdown_cell("# hi", "md")))
    before = path.read_bytes()
    cases = [
        ({"path": "nope.ipynb", "cell_ids": ["code"]}, 404),
        ({"path": "bad.ipynb", "cell_ids": ["missing"]}, 404),
        ({"path": "bad.ipynb", "cell_ids": ["md"]}, 400),
        ({"path": "bad.ipynb", "cell_ids": ["code"], "kernel": {"id": "no-such-kernel"}}, 404),
        ({"path": "bad.ipynb", "cell_ids": ["code"], "kernel": {"name": "no-such-spec"}}, 404),
        ({"path": "bad.ipynb", "cell_ids": []}, 400),
        ({"path": "bad.ipynb", "cell_ids": "code"}, 400),
        ({"path": "bad.ipynb", "cell_ids": ["code", "code"]}, 400),
        ({"path": "bad.ipynb", "room_id": "json:notebook:x", "cell_ids": ["code"]}, 400),
        ({"room_id": "text:file:abc", "cell_ids": ["code"]}, 400),
        ({"path": "../etc/passwd.ipynb", "cell_ids": ["code"]}, 404),
        ({"path": 3, "cell_ids": ["code"]}, 400),
        ({"path": "bad.ipynb", "cell_ids": ["code"], "colour": "blue"}, 400),
        ({"path": "bad.ipynb", "cell_ids": ["code"], "source_hashes": {"code": "0" * 64}}, 409),
        ([1, 2], 400),
    ]
    for body, status in cases:
        response = await api.post(body)
        assert response.status_code == status, (body, response.text)
        error = response.json()
        assert error["error"] and error["detail"], error
    not_json = await api.http.post("/api/datastore/executions", content=b"{nope")
    assert not_json.status_code == 400
    unknown = await api.http.get("/api/datastore/executions/not-an-execution")
    assert unknown.status_code == 404
    assert (await api.http.delete("/api/datastore/executions/not-an-execution")).status_code == 404
    no_input = await api.http.post("/api/datastore/executions/nope/input", json={"value": "x"})
    assert no_input.status_code == 404
    assert path.read_bytes() == before
    listed = (await api.http.get("/api/datastore/executions", params={"path": "bad.ipynb"})).json()
    assert listed == {"executions": []}
    sessions = (await api.http.get("/api/sessions")).json()
    assert not any(s["path"] == "bad.ipynb" for s in sessions)


async def test_source_hash_and_a_cell_deleted_while_queued(server, api) -> None:
    from jupyter_datastore.execution.service import source_hash

    write_notebook(
        server.root / "queue.ipynb",
        notebook(
            code_cell("import time; time.sleep(1.5)", "first"), code_cell("print('x')", "gone")
        ),
    )
    client = await YClient.connect(server.url, server.token, "queue.ipynb")
    try:
        first, gone = await api.run(
            "queue.ipynb",
            "first",
            "gone",
            source_hashes={"gone": source_hash("print('x')")},
        )
        await api.wait(first["id"], {"running"})
        cells = client.doc.get("cells", type=Array)
        del cells[1]  # the queued cell is deleted before its turn
        cancelled = await api.wait(gone["id"])
        assert cancelled["status"] == "cancelled"
        assert "deleted" in cancelled["reason"]
        assert (await api.wait(first["id"]))["status"] == "ok"
        listed = await api.http.get("/api/datastore/executions", params={"path": "queue.ipynb"})
        assert {r["id"] for r in listed.json()["executions"]} == {first["id"], gone["id"]}
    finally:
        await client.close()


async def test_cancel_a_queued_cell(server, api) -> None:
    write_notebook(
        server.root / "cancel.ipynb",
        notebook(code_cell("import time; time.sleep(1)", "slow"), code_cell("1", "next")),
    )
    slow, queued = await api.run("cancel.ipynb", "slow", "next")
    response = await api.http.delete(f"/api/datastore/executions/{queued['id']}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert (await api.wait(slow["id"]))["status"] == "ok"
    assert (await api.get(queued["id"]))["status"] == "cancelled"
    again = await api.http.delete(f"/api/datastore/executions/{queued['id']}")
    assert again.status_code == 409


async def test_output_flood_is_cut_at_the_limit_and_says_so(make_server, tmp_path) -> None:
    server = make_server(["--DatastoreApp.output_limit=20000"])
    code = "for i in range(100_000):\n    print(i)"
    write_notebook(tmp_path / "flood.ipynb", notebook(code_cell(code, "flood")))
    api = ExecApi(server.url, server.token)
    reader = await YClient.connect(server.url, server.token, "flood.ipynb")
    try:
        (record,) = await api.run("flood.ipynb", "flood")
        assert (await api.wait(record["id"]))["status"] == "ok"
        await until(lambda: cell_json(reader.doc, "flood")["execution_count"] == 1)
        outputs = cell_json(reader.doc, "flood")["outputs"]
        assert outputs[0]["text"].startswith("0\n1\n2\n")
        assert len(outputs[0]["text"].encode()) <= 20000
        assert outputs[-1]["name"] == "stderr"
        assert "output truncated" in outputs[-1]["text"]
    finally:
        await reader.close()
        await api.close()


async def test_server_crash_mid_run_leaves_a_lost_record_and_an_idle_cell(
    make_server, tmp_path
) -> None:
    server = make_server()
    write_notebook(
        tmp_path / "crash.ipynb",
        notebook(code_cell("import time\nprint('go', flush=True)\ntime.sleep(30)", "long")),
    )
    api = ExecApi(server.url, server.token)
    try:
        (record,) = await api.run("crash.ipynb", "long")
        await until_output(api, record["id"], "go")
        server.restart(signal.SIGKILL)
        lost = await api.get(record["id"])
        assert lost["status"] == "lost"
        assert "server stopped" in lost["reason"]
        client = await YClient.connect(server.url, server.token, "crash.ipynb")
        try:
            await until(lambda: cell_json(client.doc, "long")["execution_state"] == "idle")
        finally:
            await client.close()
    finally:
        await api.close()


async def test_kernel_by_name_starts_the_session_and_a_mismatch_is_refused(server, api) -> None:
    """A second kernel spec ("alt", the same Python) in the server's Jupyter data dir."""
    spec = server.home / "data" / "kernels" / "alt"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Alt", "language": "python"})
    )
    write_notebook(server.root / "named.ipynb", notebook(code_cell("print('alt')", "c")))
    (record,) = await api.run("named.ipynb", "c", kernel={"name": "alt"})
    assert (await api.wait(record["id"]))["status"] == "ok"
    sessions = (await api.http.get("/api/sessions")).json()
    (session,) = [s for s in sessions if s["path"] == "named.ipynb"]
    assert session["kernel"]["name"] == "alt"
    assert session["kernel"]["id"] == record["kernel_id"]
    # The session runs "alt": asking for python3 is refused rather than switching kernels.
    response = await api.post(
        {"path": "named.ipynb", "cell_ids": ["c"], "kernel": {"name": "python3"}}
    )
    assert response.status_code == 409
    assert "alt" in response.json()["detail"]
    huge = await api.http.post(
        f"/api/datastore/executions/{record['id']}/input", json={"value": "x" * (2 << 20)}
    )
    assert huge.status_code == 400
