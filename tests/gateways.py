"""A real Jupyter Kernel Gateway on loopback for the tests of gateway kernels (the
`gateway` fixture is in conftest.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
from conftest import free_port

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
            # JupyterLab lists the kernels (GET /api/kernels, relayed to the gateway): a
            # gateway behind a Jupyter server must allow it (it refuses by default).
            "--KernelGatewayApp.list_kernels=True",
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
