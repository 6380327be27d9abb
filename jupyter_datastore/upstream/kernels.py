"""Kernels on the upstream Jupyter server, through jupyter_server's gateway client.

A stock Jupyter server serves the same kernel API as a Kernel Gateway (`/api/kernels`, the
channels WebSocket, `/api/kernelspecs`), so supernode mode points the gateway client at it.
One difference matters: a Kernel Gateway takes a kernel's working folder from the
`KERNEL_WORKING_DIR` variable, which a Jupyter server ignores; it takes the notebook's `path`
in the start request instead. Without it every kernel would run in the upstream's root, and
`open("data.csv")` beside a notebook in a subfolder would fail.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.gateway.gateway_client import gateway_request
from jupyter_server.gateway.managers import GatewayKernelManager, GatewayMappingKernelManager
from jupyter_server.services.kernels.kernelmanager import emit_kernel_action_event
from jupyter_server.utils import url_escape, url_path_join
from tornado.escape import json_decode, json_encode
from traitlets import default

__all__ = ["UpstreamKernelManager", "UpstreamMappingKernelManager"]

_PATH = "upstream_path"
"""The keyword that carries a new kernel's API path from the mapping manager to the start."""


class UpstreamMappingKernelManager(GatewayMappingKernelManager):  # type: ignore[misc]
    """The gateway client's mapping manager, passing each new kernel's API path on."""

    @default("kernel_manager_class")
    def _default_kernel_manager_class(self) -> str:
        return f"{__name__}.UpstreamKernelManager"

    async def start_kernel(self, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        if kwargs.get("kernel_id") is None and kwargs.get("path") is not None:
            kwargs[_PATH] = kwargs["path"]
        kernel: str = await super().start_kernel(*args, **kwargs)  # type: ignore[no-untyped-call]
        return kernel


class UpstreamKernelManager(GatewayKernelManager):  # type: ignore[misc]
    """A kernel of the upstream server, started in its notebook's folder there."""

    @emit_kernel_action_event(success_msg="Kernel {kernel_id} was started.")
    async def start_kernel(self, **kwargs: Any) -> None:
        path = kwargs.pop(_PATH, None)
        if path is None or kwargs.get("kernel_id") is not None:
            # A kernel the upstream has already, or one with no notebook: as the gateway does.
            await GatewayKernelManager.start_kernel.__wrapped__(self, **kwargs)
            return
        body = {"name": kwargs.get("kernel_name", "python3"), "path": path}
        response = await gateway_request(
            self.kernels_url,
            method="POST",
            headers={"Content-Type": "application/json"},
            body=json_encode(body),
        )
        self.kernel = json_decode(response.body)
        self.kernel_id = self.kernel["id"]
        self.kernel_url = url_path_join(self.kernels_url, url_escape(str(self.kernel_id)))
        self.log.info("started kernel %s on the upstream, in %s", self.kernel_id, path)
