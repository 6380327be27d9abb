"""Server-side execution on kernels behind a Jupyter Kernel Gateway (a real one, on loopback)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import free_port
from execapi import ExecApi
from notebooks import code_cell, notebook, read_notebook, write_notebook
from test_execution import until_output
from yclient import eventually

pytestmark = pytest.mark.timeout(240)

GATEWAY_TOKEN = "gateway-test-token"


class Gateway:
    """A `jupyter kernelgateway` process on loopback, stopped by its pid."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="jds-gateway-"))
        self.port = free_port()
        self.log_path = self.home / "gateway.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Gateway:
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self.home / "config"),
            "JUPYTER_DATA_DIR": str(self.home / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
        }
        command = [
            sys.executable, "-m", "kernel_gateway",
            "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={self.port}",
            f"--KernelGatewayApp.auth_token={GATEWAY_TOKEN}",
            "--KernelGatewayApp.port_retries=0",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        request = urllib.request.Request(
            self.url + "/api/kernelspecs", headers={"Authorization": f"token {GATEWAY_TOKEN}"}
        )
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(request, timeout=5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gateway did not start in 60 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            children = psutil.Process(self.process.pid).children(recursive=True)
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            for child in children:  # kernels left behind, by their pids
                with contextlib.suppress(psutil.Error):
                    child.kill()
            psutil.wait_procs(children, timeout=10)
        self.process = None


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    if importlib.util.find_spec("kernel_gateway") is None:
        message = "jupyter-kernel-gateway is not installed (pip install jupyter-kernel-gateway)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    instance = Gateway().start()
    yield instance
    instance.stop()


@pytest.fixture
async def gateway_api(gateway: Gateway, make_server: Any, tmp_path: Path) -> Any:
    server = make_server(
        [f"--GatewayClient.url={gateway.url}", f"--GatewayClient.auth_token={GATEWAY_TOKEN}"],
        root=tmp_path,
    )
    api = ExecApi(server.url, server.token)
    yield server, api
    await api.close()


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
    (again,) = await api.run("die.ipynb", "after")
    after = await api.wait(again["id"], timeout=60)
    assert after["status"] == "ok", after
    assert after["execution_count"] == 1
