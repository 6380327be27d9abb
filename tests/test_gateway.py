"""Server-side execution on kernels behind a Jupyter Kernel Gateway (a real one, on loopback)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from execapi import ExecApi
from gateways import GATEWAY_TOKEN, Gateway
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from notebooks import code_cell, notebook, read_notebook, write_notebook
from test_execution import until_output
from yclient import eventually

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def gateway_api(gateway: Gateway, make_server: Any, tmp_path: Path) -> Any:
    server = make_server(
        [f"--GatewayClient.url={gateway.url}", f"--GatewayClient.auth_token={GATEWAY_TOKEN}"],
        root=tmp_path,
    )
    api = ExecApi(server.url, server.token)
    yield server, api
    await api.close()


async def first_on_a_fresh_kernel(api: ExecApi, path: str, cell_id: str) -> dict[str, Any]:
    """Run a cell after the kernel restarted: it succeeds, as the fresh kernel's first."""
    (record,) = await api.run(path, cell_id)
    after = await api.wait(record["id"], timeout=60)
    assert after["status"] == "ok", after
    assert after["execution_count"] == 1
    return after


def file_outputs(path: Path, cell_id: str) -> list[dict[str, Any]]:
    cell = next(c for c in read_notebook(path)["cells"] if c["id"] == cell_id)
    return list(cell.get("outputs", []))


async def test_a_cell_runs_on_a_gateway_kernel_and_its_outputs_reach_the_file(
    gateway_api: Any,
) -> None:
    server, api = gateway_api
    path = server.root / "gw.ipynb"
    write_notebook(
        path, notebook(code_cell("import os\nprint('hello from', 'gateway')\n6 * 7", "one"))
    )
    (record,) = await api.run("gw.ipynb", "one")
    done = await api.wait(record["id"], timeout=90)
    assert done["status"] == "ok", done
    assert done["execution_count"] == 1

    def saved() -> list[dict[str, Any]] | None:
        outputs = file_outputs(path, "one")
        return outputs if len(outputs) == 2 else None

    outputs = await eventually(_async(saved), timeout=30)
    assert outputs[0]["output_type"] == "stream"
    assert "".join(outputs[0]["text"]) == "hello from gateway\n"
    assert outputs[1]["output_type"] == "execute_result"
    assert "".join(outputs[1]["data"]["text/plain"]) == "42"


async def test_input_answered_over_rest_and_an_interrupt_on_a_gateway_kernel(
    gateway_api: Any,
) -> None:
    server, api = gateway_api
    path = server.root / "ask.ipynb"
    write_notebook(
        path,
        notebook(
            code_cell("name = input('name? ')\nprint('hi', name)", "ask"),
            code_cell("import time\nprint('zz', flush=True)\ntime.sleep(60)", "sleep"),
        ),
    )
    (asked,) = await api.run("ask.ipynb", "ask")
    waiting = await api.wait(asked["id"], {"awaiting_input"}, timeout=90)
    assert waiting["input_request"] == {"prompt": "name? ", "password": False}
    response = await api.http.post(
        f"/api/datastore/executions/{asked['id']}/input", json={"value": "Ada"}
    )
    assert response.status_code == 200, response.text
    done = await api.wait(asked["id"], timeout=30)
    assert done["status"] == "ok", done
    assert "hi Ada\n" in "".join(o.get("text", "") for o in done["outputs"])

    (sleeping,) = await api.run("ask.ipynb", "sleep")
    await until_output(api, sleeping["id"], "zz")
    response = await api.http.delete(f"/api/datastore/executions/{sleeping['id']}")
    assert response.status_code == 202
    stopped = await api.wait(sleeping["id"], timeout=30)
    assert stopped["status"] == "interrupted", stopped
    assert stopped["error"]["ename"] == "KeyboardInterrupt"


def _async(check: Any) -> Any:
    async def call() -> Any:
        return check()

    return call


async def test_a_gateway_kernel_that_dies_mid_cell_ends_the_run_and_the_queue_goes_on(
    gateway_api: Any,
) -> None:
    server, api = gateway_api
    write_notebook(
        server.root / "die.ipynb",
        notebook(
            code_cell("import os\nprint('bye', flush=True)\nos._exit(1)", "die"),
            code_cell("print('back')", "after"),
        ),
    )
    (died,) = await api.run("die.ipynb", "die")
    ended = await api.wait(died["id"], timeout=60)
    assert ended["status"] == "error", ended
    assert ended["error"]["ename"] == "KernelDied"
    # The gateway restarted the kernel; the next cell runs on the fresh one.
    after = await first_on_a_fresh_kernel(api, "die.ipynb", "after")
    # The gateway's `restarting` reached the state, and the fresh kernel is idle again.
    kernel_id = after["kernel_id"]

    async def restarted_then_idle() -> bool:
        states = [e["execution_state"] for e in await status_events(api, kernel_id)]
        return "restarting" in states and states[-1] == "idle"

    await eventually(restarted_then_idle, timeout=30)
    assert await kernel_state(api, kernel_id) == "idle"


KERNEL_STATUS = "https://events.jupyter.org/jupyter_datastore/kernel_status/v1"


async def kernel_state(api: ExecApi, kernel_id: str) -> str | None:
    response = await api.http.get("/api/datastore/state")
    assert response.status_code == 200, response.text
    return response.json()["kernels"].get(kernel_id, {}).get("execution_state")


async def status_events(api: ExecApi, kernel_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    since = 0
    while True:
        response = await api.http.get(
            "/api/events", params={"since": since, "schema_id": KERNEL_STATUS, "limit": 10_000}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        if not body["events"]:
            return [e for e in events if e.get("kernel_id") == kernel_id]
        events += body["events"]
        since = body["last_id"]


async def test_the_state_shows_a_gateway_kernel_busy_then_idle(gateway_api: Any) -> None:
    server, api = gateway_api
    flag = server.root / "go.flag"
    write_notebook(
        server.root / "busy.ipynb",
        notebook(
            code_cell(
                "import os, time\nprint('waiting', flush=True)\n"
                f"while not os.path.exists({str(flag)!r}):\n    time.sleep(0.02)",
                "wait",
            )
        ),
    )
    (record,) = await api.run("busy.ipynb", "wait")
    await until_output(api, record["id"], "waiting")
    kernel_id = (await api.get(record["id"]))["kernel_id"]

    async def busy() -> bool:
        return await kernel_state(api, kernel_id) == "busy"

    await eventually(busy, timeout=30)
    flag.write_text("go")
    done = await api.wait(record["id"], timeout=30)
    assert done["status"] == "ok", done

    async def idle() -> bool:
        return await kernel_state(api, kernel_id) == "idle"

    await eventually(idle, timeout=30)

    async def both() -> list[dict[str, Any]] | None:
        events = await status_events(api, kernel_id)
        states = [e["execution_state"] for e in events]
        return events if "busy" in states and "idle" in states[states.index("busy") :] else None

    events = await eventually(both, timeout=30)
    assert events[0]["execution_state"] == "starting"


async def test_nbmodel_execute_on_a_gateway_kernel(gateway_api: Any) -> None:
    server, api = gateway_api
    write_notebook(server.root / "nbm.ipynb", notebook(code_cell("", "c")))
    response = await api.http.post(
        "/api/sessions",
        json={"path": "nbm.ipynb", "name": "nbm.ipynb", "type": "notebook",
              "kernel": {"name": "python3"}},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    kernel_id = response.json()["kernel"]["id"]
    response = await api.http.post(
        f"/api/kernels/{kernel_id}/execute",
        json={"code": "print('via nbmodel')\n6 * 7", "metadata": {}},
    )
    assert response.status_code == 202, response.text
    location = response.headers["Location"]

    async def result() -> Any:
        answer = await api.http.get(location)
        if answer.status_code == 202:
            return None
        assert answer.status_code == 200, answer.text
        return answer.json()

    done = await eventually(result, timeout=90)
    assert done["status"] == "ok", done
    outputs = json.loads(done["outputs"])
    assert outputs[0]["output_type"] == "stream"
    assert outputs[0]["text"] == "via nbmodel\n"
    assert outputs[1]["data"]["text/plain"] == "42"


async def test_a_gateway_kernel_restarted_over_rest_runs_the_next_cell(gateway_api: Any) -> None:
    server, api = gateway_api
    write_notebook(
        server.root / "restart.ipynb",
        notebook(code_cell("x = 1\nx", "one"), code_cell("print('after restart')", "two")),
    )
    (first,) = await api.run("restart.ipynb", "one")
    done = await api.wait(first["id"], timeout=90)
    assert done["status"] == "ok", done
    assert done["execution_count"] == 1
    kernel_id = done["kernel_id"]
    (second,) = await api.run("restart.ipynb", "one")
    assert (await api.wait(second["id"], timeout=30))["execution_count"] == 2

    response = await api.http.post(f"/api/kernels/{kernel_id}/restart")
    assert response.status_code == 200, response.text
    after = await first_on_a_fresh_kernel(api, "restart.ipynb", "two")
    assert "after restart\n" in "".join(o.get("text", "") for o in after["outputs"])

    async def idle() -> bool:
        return await kernel_state(api, kernel_id) == "idle"

    await eventually(idle, timeout=30)
    states = [e["execution_state"] for e in await status_events(api, kernel_id)]
    assert "restarting" in states


async def test_a_restart_over_rest_ends_the_running_cell_on_a_gateway_kernel(
    gateway_api: Any,
) -> None:
    server, api = gateway_api
    write_notebook(
        server.root / "long.ipynb",
        notebook(
            code_cell("import time\nprint('zz', flush=True)\ntime.sleep(120)", "long"),
            code_cell("print('fresh')", "next"),
        ),
    )
    (running,) = await api.run("long.ipynb", "long")
    await until_output(api, running["id"], "zz")
    kernel_id = (await api.get(running["id"]))["kernel_id"]
    response = await api.http.post(f"/api/kernels/{kernel_id}/restart")
    assert response.status_code == 200, response.text
    ended = await api.wait(running["id"], timeout=60)
    assert ended["status"] == "error", ended
    assert ended["error"]["ename"] == "KernelDied"
    await first_on_a_fresh_kernel(api, "long.ipynb", "next")


V1 = "v1.kernel.websocket.jupyter.org"


def kernel_info_request() -> dict[str, Any]:
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": "kernel_info_request",
        "session": "s",
        "username": "u",
        "date": "2026-12-08T00:00:00Z",
        "version": "5.3",
    }
    return {"header": header, "parent_header": {}, "metadata": {}, "content": {}}


def v1_frame(msg: dict[str, Any], channel: str) -> bytes:
    parts = [
        json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata", "content")
    ]
    return bytes(serialize_msg_to_ws_v1(parts, channel))


def from_v1_frame(frame: bytes) -> tuple[str, dict[str, Any]]:
    channel, parts = deserialize_msg_from_ws_v1(frame)
    keys = ("header", "parent_header", "metadata", "content")
    return channel, {k: json.loads(part) for k, part in zip(keys, parts, strict=True)}


async def reply_to(socket: Any, request: dict[str, Any], *, v1: bool) -> dict[str, Any]:
    """Read the socket's messages until the shell reply to `request`."""
    async with asyncio.timeout(60):
        while True:
            frame = await socket.recv()
            assert isinstance(frame, bytes) is v1, f"a {type(frame).__name__} frame"
            if v1:
                channel, msg = from_v1_frame(frame)
            else:
                msg = json.loads(frame)
                channel = msg["channel"]
            if (
                channel == "shell"
                and msg["parent_header"].get("msg_id") == request["header"]["msg_id"]
            ):
                return msg


async def gateway_kernel_socket(gateway: Gateway, server: Any, **kwargs: Any) -> tuple[str, Any]:
    """A new gateway kernel's id, and a window's socket to it through the server, opened
    once the server's kernel watcher holds its own socket to the kernel (the only one)."""
    kernel_id = server.request("POST", "/api/kernels", {"name": "python3"})["id"]
    await eventually(_async(lambda: gateway_sockets(gateway, kernel_id) == 1))
    url = server.url.replace("http", "ws", 1)
    channels = f"{url}/api/kernels/{kernel_id}/channels?session_id=w1&token={server.token}"
    return kernel_id, await websockets.connect(channels, max_size=None, **kwargs)


def gateway_sockets(gateway: Gateway, kernel_id: str) -> int:
    """How many sockets the gateway has open to the kernel, as the gateway counts them."""
    headers = {"Authorization": f"token {GATEWAY_TOKEN}"}
    response = httpx.get(f"{gateway.url}/api/kernels/{kernel_id}", headers=headers, timeout=30)
    return int(response.json()["connections"])


def delete_kernel(server: Any, kernel_id: str) -> None:
    headers = {"Authorization": f"token {server.token}"}
    response = httpx.delete(f"{server.url}/api/kernels/{kernel_id}", headers=headers, timeout=30)
    assert response.status_code == 204, response.text


async def test_a_window_speaks_v1_with_a_gateway_kernel_in_one_handshake(
    gateway: Gateway, gateway_api: Any
) -> None:
    """The window's socket is answered with the subprotocol the gateway chose (v1, as
    JupyterLab offers), so the first handshake succeeds; binary frames pass both ways; the
    gateway holds one socket for the window (beside the watcher's); when the gateway drops
    it, the window's socket closes, so that the window reconnects."""
    server, _ = gateway_api
    kernel_id, socket = await gateway_kernel_socket(gateway, server, subprotocols=[V1])
    async with socket:
        assert socket.subprotocol == V1
        request = kernel_info_request()
        await socket.send(v1_frame(request, "shell"))
        reply = await reply_to(socket, request, v1=True)
        assert reply["header"]["msg_type"] == "kernel_info_reply"
        assert reply["content"]["status"] == "ok"
        assert gateway_sockets(gateway, kernel_id) == 2
        # Another client takes the window's session id on the gateway: the gateway closes
        # the relay's socket as stale, and the relay closes the window's.
        direct = f"{gateway.url.replace('http', 'ws', 1)}/api/kernels/{kernel_id}/channels"
        headers = {"Authorization": f"token {GATEWAY_TOKEN}"}
        async with websockets.connect(f"{direct}?session_id=w1", additional_headers=headers):
            async with asyncio.timeout(30):
                await socket.wait_closed()
    assert socket.close_code == 1001
    delete_kernel(server, kernel_id)


async def test_a_window_without_a_subprotocol_gets_the_legacy_protocol(
    gateway: Gateway, gateway_api: Any
) -> None:
    """A client that offers no subprotocol gets Jupyter's JSON text frames; when it closes
    its socket, the relay closes its socket to the gateway (none is left open)."""
    server, _ = gateway_api
    kernel_id, socket = await gateway_kernel_socket(gateway, server)
    async with socket:
        assert socket.subprotocol is None
        request = {**kernel_info_request(), "channel": "shell"}
        await socket.send(json.dumps(request))
        reply = await reply_to(socket, request, v1=False)
        assert reply["content"]["status"] == "ok"
        assert gateway_sockets(gateway, kernel_id) == 2
    await eventually(_async(lambda: gateway_sockets(gateway, kernel_id) == 1))
    delete_kernel(server, kernel_id)


async def test_a_refused_handshake_leaves_no_socket_on_the_gateway(
    gateway: Gateway, gateway_api: Any
) -> None:
    """A request that is not a WebSocket handshake gets Tornado's 400, and the socket the
    relay opened to the gateway for it is closed (only the watcher's is left)."""
    server, _ = gateway_api
    kernel_id = server.request("POST", "/api/kernels", {"name": "python3"})["id"]
    await eventually(_async(lambda: gateway_sockets(gateway, kernel_id) == 1))
    headers = {"Authorization": f"token {server.token}", "Upgrade": "websocket"}
    url = f"{server.url}/api/kernels/{kernel_id}/channels?session_id=w1"
    async with httpx.AsyncClient() as http:  # Connection: keep-alive, not Upgrade
        response = await http.get(url, headers=headers)
    assert response.status_code == 400
    await eventually(_async(lambda: gateway_sockets(gateway, kernel_id) == 1))
    delete_kernel(server, kernel_id)


@pytest.mark.browser
@pytest.mark.browser
def test_jupyterlab_runs_a_cell_on_a_gateway_kernel(gateway: Any, make_server: Any, tmp_path: Path):
    """JupyterLab's own kernel connection (its WebSocket to this server, relayed to the
    gateway) runs a cell on a gateway kernel; the state shows the kernel idle again."""
    from playwright.sync_api import expect
    from test_jupyterlab import LOAD_TIMEOUT, SYNC_TIMEOUT, Tab, browser_tabs, lab_server, settle

    root = tmp_path / "root"
    write_notebook(root / "lab.ipynb", notebook(code_cell("print('hi from', 6 * 7)", "c1")))
    server = lab_server(
        make_server,
        tmp_path,
        root,
        f"--GatewayClient.url={gateway.url}",
        f"--GatewayClient.auth_token={GATEWAY_TOKEN}",
    )
    session = server.request(
        "POST",
        "/api/sessions",
        {
            "path": "lab.ipynb",
            "type": "notebook",
            "name": "lab.ipynb",
            "kernel": {"name": "python3"},
        },
    )
    kernel_id = session["kernel"]["id"]
    with browser_tabs(server) as (browser, tabs):
        tab = Tab(browser, "lab")
        tabs.append(tab)
        tab.page.goto(f"{server.url}/lab/tree/lab.ipynb?token={server.token}", wait_until="commit")
        expect(tab.editor).to_have_text("print('hi from', 6 * 7)", timeout=LOAD_TIMEOUT)
        expect(
            tab.page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
        ).to_have_count(1, timeout=LOAD_TIMEOUT)
        tab.editor.click()
        tab.page.keyboard.press("Shift+Enter")
        output = tab.page.locator(".jp-Notebook .jp-Cell .jp-OutputArea-output").first
        expect(output).to_have_text("hi from 42", timeout=SYNC_TIMEOUT * 3)
        state = server.get("/api/datastore/state")
        assert state["kernels"][kernel_id]["name"] == "python3"
        assert not tab.errors, tab.errors
        # One handshake, in the subprotocol JupyterLab offered: no refused first attempt.
        kernel_sockets = [u for u in tab.socket_urls if f"/api/kernels/{kernel_id}/" in u]
        assert len(kernel_sockets) == 1, kernel_sockets
        assert not [line for line in tab.console if "Sec-WebSocket-Protocol" in line]
        settle(tabs)
