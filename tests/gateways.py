"""A real Jupyter Kernel Gateway on loopback for the tests of gateway kernels (the
`gateway` fixture is in conftest.py)."""

from __future__ import annotations

import os
import sys
import urllib.request

from conftest import LoopbackService

GATEWAY_TOKEN = "gateway-test-token"


class Gateway(LoopbackService):
    """A `jupyter kernelgateway` process on loopback."""

    what = "gateway"

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
            "--JupyterWebsocketPersonality.list_kernels=True",
        ]  # fmt: skip
        request = urllib.request.Request(
            self.url + "/api/kernelspecs", headers={"Authorization": f"token {GATEWAY_TOKEN}"}
        )
        self.launch(command, env, request)
        return self
