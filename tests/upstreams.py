"""A stock Jupyter server on loopback as the upstream of supernode mode (the `upstream`
fixture is in conftest.py): `jupyter server` with no extension of ours or anyone's
(JUPYTER_NO_CONFIG: not even the ones enabled in this virtualenv), a token, its own root.
It can be stopped and started again on the same port, as an upstream that goes away."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

from conftest import LoopbackService

UPSTREAM_TOKEN = "upstream-test-token"


class UpstreamServer(LoopbackService):
    """A stock `jupyter server` process on loopback."""

    what = "upstream"

    def __init__(
        self,
        root: Path | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.root = root or self.home / "root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = UPSTREAM_TOKEN
        self.args = args or []
        self.env = env or {}

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def start(self) -> UpstreamServer:
        env = {
            **os.environ,
            "JUPYTER_NO_CONFIG": "1",
            "JUPYTER_DATA_DIR": str(self.home / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            **self.env,
        }
        command = [
            sys.executable, "-m", "jupyter_server",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}", "--ServerApp.open_browser=False",
        ]  # fmt: skip
        if os.geteuid() == 0:  # CI runs as root
            command.append("--ServerApp.allow_root=True")
        command += self.args
        request = urllib.request.Request(self.url + "/api/status", headers=self.headers)
        self.launch(command, env, request)
        return self
