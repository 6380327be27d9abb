"""jupyter-server-nbmodel's REST contract, with a real server and real ipykernel kernels."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from execapi import cell_json, outputs_text
from notebooks import code_cell, notebook, write_notebook
from yclient import YClient, until

pytestmark = pytest.mark.timeout(60)


class NbModelClient:
    """What jupyter-server-nbmodel's frontend does, over plain HTTP."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"token {token}"}, timeout=30
        )
        self.sessions: list[str] = []

    async def start_kernel(self, path: str) -> str:
        """A notebook session, as JupyterLab opens one; its kernel id."""
        response = await self.http.post(
            "/api/sessions",
            json={"path": path, "name": path, "type": "notebook", "kernel": {"name": "python3"}},
        )
        assert response.status_code == 201, response.text
        self.sessions.append(response.json()["id"])
        return str(response.json()["kernel"]["id"])

    async def execute(self, kernel_id: str, body: Any) -> httpx.Response:
        return await self.http.post(f"/api/kernels/{kernel_id}/execute", json=body)

    async def submit(self, kernel_id: str, code: str, **metadata: Any) -> httpx.Response:
        """POST the code; the 202 (asserted, with its Location)."""
        response = await self.execute(kernel_id, {"code": code, "metadata": metadata})
        assert response.status_code == 202, response.text
        uid = response.json()["request_id"]
        assert response.headers["Location"] == f"/api/kernels/{kernel_id}/requests/{uid}"
        assert response.headers["Access-Control-Expose-Headers"] == "Location"
        return response

    async def poll(self, url: str, until_status: int = 200, timeout: float = 20) -> httpx.Response:
        """GET `url` while it answers 202, until it answers `until_status`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            response = await self.http.get(url)
            if response.status_code == until_status:
                return response
            assert response.status_code == 202, response.text
            assert response.json()["request_status"] in ("queued", "running")
            assert isinstance(response.json()["outputs"], str)
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{url} still 202 after {timeout}s")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for session_id in self.sessions:
            await self.http.delete(f"/api/sessions/{session_id}")
        await self.http.aclose()


@pytest.fixture
async def nbm(server) -> AsyncIterator[NbModelClient]:
    client = NbModelClient(server.url, server.token)
    yield client
    await client.close()


def texts(outputs: str) -> str:
    """Everything a JSON string of outputs shows as text."""
    shown = []
    for output in json.loads(outputs):
        if output["output_type"] == "stream":
            shown.append(output["text"])
        elif output["output_type"] == "error":
            shown.append(f"{output['ename']}: {output['evalue']}")
        else:
            shown.append(output["data"]["text/plain"])
    return "".join(shown)


async def test_execute_into_a_cell_poll_and_collect_the_result_once(server, nbm) -> None:
    code = "print('hello from nbmodel')\n6 * 7"
    write_notebook(server.root / "nbm.ipynb", notebook(code_cell(code, "c1")))
    kernel_id = await nbm.start_kernel("nbm.ipynb")
    reader = await YClient.connect(server.url, server.token, "nbm.ipynb")
    try:
        # As nbmodel's frontend sends it: the room and the path both.
        submitted = await nbm.submit(
            kernel_id,
            code,
            cell_id="c1",
            document_id=reader.room,
            document_path="nbm.ipynb",
            record_timing=True,
        )
        accepted = submitted.json()
        uid = accepted["request_id"]
        location = submitted.headers["Location"]
        assert uuid.UUID(uid).version == 4
        assert accepted == {
            "request_id": uid,
            "kernel_id": kernel_id,
            "cell_id": "c1",
            "document_path": "nbm.ipynb",
            "pending": True,
            "request_status": "queued",
            "request_url": location,
            "outputs": "[]",
        }
        done = await nbm.poll(location)
        result = done.json()
        assert result["status"] == "ok"
        assert result["request_status"] == "complete"
        assert result["pending"] is False
        assert result["request_id"] == uid
        assert result["kernel_id"] == kernel_id
        assert result["cell_id"] == "c1"
        assert result["document_path"] == "nbm.ipynb"
        assert isinstance(result["execution_count"], int)
        assert isinstance(result["outputs"], str)
        outputs = json.loads(result["outputs"])
        assert [o["output_type"] for o in outputs] == ["stream", "execute_result"]
        assert texts(result["outputs"]) == "hello from nbmodel\n42"
        # The reader's document shows what ran, as JupyterLab would.
        count = result["execution_count"]
        await until(
            lambda: cell_json(reader.doc, "c1")["execution_count"] == count, what="the count"
        )
        assert outputs_text(reader.doc, "c1") == "hello from nbmodel\n42"
        assert cell_json(reader.doc, "c1")["execution_state"] == "idle"
        # The result was handed out: a second GET is a 404 (in our error shape).
        again = await nbm.http.get(location)
        assert again.status_code == 404
        assert again.json()["error"] == "not_found"
        # jupyter_server's own kernel routes are still its own.
        kernel = await nbm.http.get(f"/api/kernels/{kernel_id}")
        assert kernel.status_code == 200
        assert kernel.json()["id"] == kernel_id
    finally:
        await reader.close()


async def test_code_without_a_cell_runs_and_errors_are_results(server, nbm) -> None:
    write_notebook(server.root / "nocell.ipynb", notebook(code_cell("", "c")))
    kernel_id = await nbm.start_kernel("nocell.ipynb")
    response = await nbm.execute(kernel_id, {"code": "print('no cell here')"})
    assert response.status_code == 202, response.text
    assert response.json()["cell_id"] is None
    result = (await nbm.poll(response.headers["Location"])).json()
    assert result["status"] == "ok"
    assert result["cell_id"] is None
    assert texts(result["outputs"]) == "no cell here\n"
    # A kernel-level error is a 200 with status "error", outputs and all.
    failing = await nbm.submit(kernel_id, "1/0")
    failed = await nbm.poll(failing.headers["Location"])
    assert failed.json()["status"] == "error"
    assert failed.json()["execution_count"] == result["execution_count"] + 1
    assert texts(failed.json()["outputs"]) == "ZeroDivisionError: division by zero"
    # A cell named by the notebook's path alone (no room id) gets the outputs too.
    by_path = await nbm.submit(
        kernel_id, "print('by path')", cell_id="c", document_path="nocell.ipynb"
    )
    done = (await nbm.poll(by_path.headers["Location"])).json()
    assert (done["cell_id"], done["document_path"]) == ("c", "nocell.ipynb")
    reader = await YClient.connect(server.url, server.token, "nocell.ipynb")
    try:
        assert outputs_text(reader.doc, "c") == "by path\n"
        assert cell_json(reader.doc, "c")["execution_count"] == done["execution_count"]
    finally:
        await reader.close()


async def test_jupyterlab_executor_body_runs_the_cell_source(server, nbm) -> None:
    """jupyter-docprovider's server-side executor posts only `{cell_id, document_id}`."""
    write_notebook(server.root / "lab.ipynb", notebook(code_cell("print('from the doc')", "c")))
    kernel_id = await nbm.start_kernel("lab.ipynb")
    reader = await YClient.connect(server.url, server.token, "lab.ipynb")
    try:
        body = {"cell_id": "c", "document_id": reader.room}
        response = await nbm.execute(kernel_id, body)
        assert response.status_code == 202, response.text
        result = (await nbm.poll(response.headers["Location"])).json()
        assert texts(result["outputs"]) == "from the doc\n"
        await until(lambda: outputs_text(reader.doc, "c") == "from the doc\n")
        for bad in ({"cell_id": "c"}, {"cell_id": "", "document_id": reader.room}):
            refused = await nbm.execute(kernel_id, bad)
            assert refused.status_code == 400, refused.text
        unknown = await nbm.execute(kernel_id, {"cell_id": "nope", "document_id": reader.room})
        assert unknown.status_code == 404
    finally:
        await reader.close()


async def test_input_is_a_300_then_answered_through_the_kernel(server, nbm) -> None:
    code = "name = input('name? ')\nprint('hi', name)"
    write_notebook(server.root / "ask.ipynb", notebook(code_cell(code, "ask")))
    kernel_id = await nbm.start_kernel("ask.ipynb")
    reader = await YClient.connect(server.url, server.token, "ask.ipynb")
    try:
        asking = await nbm.submit(kernel_id, code, cell_id="ask", document_id=reader.room)
        waiting = await nbm.poll(asking.headers["Location"], until_status=300)
        assert waiting.headers["Location"] == f"/api/kernels/{kernel_id}/input"
        assert waiting.json()["input_request"] == {"prompt": "name? ", "password": False}
        assert waiting.json()["parent_header"] == {}
        assert waiting.json()["request_status"] == "input"
        assert waiting.json()["request_id"] == asking.json()["request_id"]
        # Queued behind it; both are listed as in flight, oldest first; nothing consumed.
        behind = await nbm.submit(kernel_id, "print('after')")
        assert (await nbm.http.get(behind.headers["Location"])).status_code == 202
        listed = await nbm.http.get(f"/api/kernels/{kernel_id}/execute")
        assert listed.status_code == 200
        assert listed.json()["kernel_id"] == kernel_id
        requests = listed.json()["requests"]
        assert [(r["request_id"], r["request_status"]) for r in requests] == [
            (asking.json()["request_id"], "running"),
            (behind.json()["request_id"], "queued"),
        ]
        assert requests[0]["cell_id"] == "ask"
        assert requests[0]["document_path"] == "ask.ipynb"
        assert all(r["pending"] is True and isinstance(r["outputs"], str) for r in requests)

        answered = await nbm.http.post(f"/api/kernels/{kernel_id}/input", json={"input": "Ada"})
        assert answered.status_code == 201, answered.text
        assert answered.content == b""
        result = (await nbm.poll(asking.headers["Location"])).json()
        assert result["status"] == "ok"
        assert texts(result["outputs"]) == "name? Ada\nhi Ada\n"
        await until(lambda: "hi Ada" in outputs_text(reader.doc, "ask"), what="the output")
        after = (await nbm.poll(behind.headers["Location"])).json()
        assert texts(after["outputs"]) == "after\n"
        # Nothing waits any more: an answer is refused, and nothing is in flight.
        late = await nbm.http.post(f"/api/kernels/{kernel_id}/input", json={"input": "x"})
        assert late.status_code == 409
        assert late.json()["error"] == "conflict"
        listed = await nbm.http.get(f"/api/kernels/{kernel_id}/execute")
        assert listed.json() == {"kernel_id": kernel_id, "requests": []}
    finally:
        await reader.close()


async def test_a_request_cancelled_before_it_ran_is_a_500(server, nbm) -> None:
    write_notebook(server.root / "cut.ipynb", notebook(code_cell("", "c")))
    kernel_id = await nbm.start_kernel("cut.ipynb")
    asking = await nbm.submit(kernel_id, "input('wait? ')")
    await nbm.poll(asking.headers["Location"], until_status=300)
    behind = await nbm.submit(kernel_id, "print('never')")
    # Cancelled through our own executions API while it waits its turn.
    cancel = await nbm.http.delete(f"/api/datastore/executions/{behind.json()['request_id']}")
    assert cancel.status_code == 200, cancel.text
    cancelled = await nbm.http.get(behind.headers["Location"])
    assert cancelled.status_code == 500
    assert cancelled.json()["error"] == "cancelled"
    assert "cancelled on request" in cancelled.json()["message"]
    # Handed out once, as a result is.
    assert (await nbm.http.get(behind.headers["Location"])).status_code == 404
    answered = await nbm.http.post(f"/api/kernels/{kernel_id}/input", json={"input": "go"})
    assert answered.status_code == 201
    result = (await nbm.poll(asking.headers["Location"])).json()
    assert result["status"] == "ok"
    assert texts(result["outputs"]) == "wait? go\n'go'"


async def test_bad_requests_get_clear_errors(server, nbm) -> None:
    write_notebook(server.root / "bad.ipynb", notebook(code_cell("", "c")))
    kernel_id = await nbm.start_kernel("bad.ipynb")
    nobody = str(uuid.uuid4())
    cases: list[tuple[str, Any, int]] = [
        (nobody, {"code": "1"}, 404),
        (kernel_id, [1, 2], 400),
        (kernel_id, {}, 400),
        (kernel_id, {"metadata": {"cell_id": "c"}}, 400),
        (kernel_id, {"code": 3}, 400),
        (kernel_id, {"code": "1", "metadata": "c"}, 400),
        (kernel_id, {"code": "1", "metadata": {"cell_id": 3}}, 400),
        (kernel_id, {"code": "1", "metadata": {"record_timing": "yes"}}, 400),
        (kernel_id, {"code": "1", "colour": "blue"}, 400),
        (kernel_id, {"code": "1", "server": {"url": "http://elsewhere:8888"}}, 400),
    ]
    for kernel, body, status in cases:
        response = await nbm.execute(kernel, body)
        assert response.status_code == status, (body, response.text)
        error = response.json()
        assert error["error"] and error["detail"] and error["message"], error
    remote = await nbm.execute(kernel_id, {"code": "1", "server": {"url": "http://x:1"}})
    assert "remote" in remote.json()["message"]
    not_json = await nbm.http.post(f"/api/kernels/{kernel_id}/execute", content=b"{nope")
    assert not_json.status_code == 400
    assert "not JSON" in not_json.json()["message"]

    assert (await nbm.http.get(f"/api/kernels/{nobody}/execute")).status_code == 404
    unknown = await nbm.http.get(f"/api/kernels/{kernel_id}/requests/{uuid.uuid4()}")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "not_found"
    # A request id is only found under its own kernel, and is not consumed there.
    mine = await nbm.submit(kernel_id, "1")
    uid = mine.json()["request_id"]
    elsewhere = await nbm.http.get(f"/api/kernels/{nobody}/requests/{uid}")
    assert elsewhere.status_code == 404
    assert (await nbm.poll(mine.headers["Location"])).json()["status"] == "ok"

    no_kernel = await nbm.http.post(f"/api/kernels/{nobody}/input", json={"input": "x"})
    assert no_kernel.status_code == 404
    no_input = await nbm.http.post(f"/api/kernels/{kernel_id}/input", json={"nope": "x"})
    assert no_input.status_code == 400
    nothing_waits = await nbm.http.post(f"/api/kernels/{kernel_id}/input", json={"input": "x"})
    assert nothing_waits.status_code == 409
    assert "waiting for input" in nothing_waits.json()["message"]


async def test_polls_during_a_long_run_carry_the_outputs_so_far_then_the_result_once(
    server, nbm
) -> None:
    """Each 202 of a running request has every output so far (a growing stream is encoded
    from what was kept at the previous poll); the 200 has them all, once."""
    code = (
        "import time\n"
        "for i in range(40):\n"
        "    print('x' * 1000 + f' {i}', flush=True)\n"
        "    time.sleep(0.02)\n"
        "print('\\N{GRINNING FACE} \"done\"')"
    )
    expected = "".join("x" * 1000 + f" {i}\n" for i in range(40)) + '\N{GRINNING FACE} "done"\n'
    write_notebook(server.root / "long.ipynb", notebook(code_cell(code, "c")))
    kernel_id = await nbm.start_kernel("long.ipynb")
    response = await nbm.submit(kernel_id, code, cell_id="c", document_path="long.ipynb")
    location = response.headers["Location"]
    seen: list[str] = []
    while True:
        polled = await nbm.http.get(location)
        if polled.status_code == 200:
            break
        assert polled.status_code == 202, polled.text
        outputs = json.loads(polled.json()["outputs"])
        assert [o["output_type"] for o in outputs] in ([], ["stream"])
        seen.append(texts(polled.json()["outputs"]))
        await asyncio.sleep(0.02)
    growing = [text for text in seen if text]
    assert len(growing) >= 3, seen  # polled while it ran, more than once
    assert all(expected.startswith(text) for text in growing)
    assert [len(text) for text in growing] == sorted(len(text) for text in growing)
    result = polled.json()
    assert result["status"] == "ok"
    assert json.loads(result["outputs"]) == [
        {"output_type": "stream", "name": "stdout", "text": expected}
    ]
    assert (await nbm.http.get(location)).status_code == 404
