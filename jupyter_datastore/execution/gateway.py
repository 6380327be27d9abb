"""A kernel client for kernels behind a Jupyter Kernel Gateway: one WebSocket, no ZMQ.

With `--GatewayClient.url`, jupyter_server's kernels are `GatewayKernelManager`s: the kernel
runs on the gateway, and the server has no ZMQ ports to connect to (`get_connection_info()`
gives ports that nothing listens on, so a ZMQ client never hears back). The gateway serves
each kernel's channels on a WebSocket (`/api/kernels/{id}/channels`, Jupyter's JSON protocol:
each message says its `channel`).

jupyter_server's own `GatewayKernelClient` cannot serve the executor: it connects with a
blocking call and without the gateway's auth headers, sends messages without their
`channel` (so the gateway takes an `input_reply` for a shell message), its `get_msg` polls
with `asyncio.sleep(0)` and gives up after one second by default, and its router thread
stops at the first message of a channel it has no queue for.

`GatewayChannels` is an `AsyncKernelClient` whose channels are asyncio queues fed by one
Tornado WebSocket to the gateway, connected with `GatewayClient`'s connection arguments
(URL, auth headers, TLS). It gives the executor what it uses of a kernel client: `execute`,
`session`, the shell, iopub and stdin channels (`get_msg`, `send`), `wait_for_ready` and
`stop_channels`. Interrupts, restarts and shutdowns go through the kernel manager (the
gateway's REST API), as for any kernel.

The kernel watcher (`events/kernels.py`) follows a gateway kernel's busy and idle with one
too, queueing only the channels it reads (`channels=("shell", "iopub")`): it `connect`s,
without waiting for an answer, and asks `kernel_info` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Collection
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.jsonutil import json_default
from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.gateway.managers import GatewayKernelManager
from jupyter_server.services.kernels.connection.base import deserialize_binary_message
from jupyter_server.utils import url_escape, url_path_join
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from ..events.catalog import KERNEL_ACTIONS

__all__ = ["GatewayChannels", "gateway_channels_url", "gateway_websocket", "is_gateway_kernel"]

log = logging.getLogger(__name__)

_CHANNELS = ("shell", "iopub", "stdin", "control")


def gateway_channels_url(kernel_id: str) -> str:
    """The gateway's WebSocket URL for a kernel's channels."""
    gateway = GatewayClient.instance()
    return url_path_join(
        gateway.ws_url or "", gateway.kernels_endpoint, url_escape(kernel_id), "channels"
    )


async def gateway_websocket(
    url: str, subprotocols: list[str] | None = None
) -> WebSocketClientConnection:
    """A WebSocket to the gateway at `url`, with the gateway client's connection arguments
    (auth headers, TLS, timeouts)."""
    args = GatewayClient.instance().load_connection_args()  # type: ignore[no-untyped-call]
    return await websocket_connect(HTTPRequest(url, **args), subprotocols=subprotocols)


def is_gateway_kernel(kernel: object) -> bool:
    """Whether a kernel manager's kernel runs behind a Kernel Gateway."""
    return isinstance(kernel, GatewayKernelManager)


class GatewayChannel:
    """One channel of a gateway kernel: the messages received on it, and a way to send."""

    def __init__(self, name: str, owner: GatewayChannels) -> None:
        self.name = name
        self._owner = owner
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message; with a timeout, `asyncio.QueueEmpty` (timeout 0) or
        `asyncio.TimeoutError` when none comes in time."""
        if timeout is None:
            return await self.queue.get()
        if timeout <= 0:
            return self.queue.get_nowait()
        return await asyncio.wait_for(self.queue.get(), timeout)

    def send(self, msg: dict[str, Any]) -> None:
        self._owner.send(self.name, msg)

    def start(self) -> None:
        """Nothing to start: the WebSocket carries every channel."""

    def stop(self) -> None:
        """Nothing to stop: `GatewayChannels.stop_channels` closes the WebSocket."""

    def is_alive(self) -> bool:
        return self._owner.connected


class GatewayChannels(AsyncKernelClient):
    """A client of one gateway kernel over the gateway's WebSocket (see the module)."""

    def __init__(
        self,
        kernel_id: str,
        *,
        channels: Collection[str] = _CHANNELS,
        event_logger: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kernel_id = kernel_id
        self._ws: WebSocketClientConnection | None = None
        self._router: asyncio.Task[None] | None = None
        self._queues = {name: GatewayChannel(name, self) for name in _CHANNELS}
        self._queued = frozenset(channels)
        """The channels whose messages are kept; the others' are dropped as they come."""
        self.restarted = False
        """The kernel restarted (or failed to), as the gateway said on the WebSocket or the
        server's `kernel_actions` event (with `event_logger`): its state is gone."""
        self._lost = False  # the WebSocket closed under us
        self.closed = asyncio.Event()
        """Set when the gateway closed the WebSocket (not when we did)."""
        # A restart over REST says nothing on the WebSocket (the gateway's connection follows
        # the fresh kernel on the same ports): the server's `kernel_actions` event tells it.
        self._event_logger = event_logger
        if event_logger is not None:
            event_logger.add_listener(schema_id=KERNEL_ACTIONS, listener=self._heard_action)

    async def _heard_action(self, logger: Any, schema_id: str, data: Any) -> None:
        if (
            data.get("kernel_id") == self.kernel_id
            and data.get("action") == "restart"
            and data.get("status") == "success"
        ):
            self.restarted = True

    # --- the channels the executor reads and writes ---

    @property
    def shell_channel(self) -> Any:  # type: ignore[override]
        return self._queues["shell"]

    @property
    def iopub_channel(self) -> Any:  # type: ignore[override]
        return self._queues["iopub"]

    @property
    def stdin_channel(self) -> Any:  # type: ignore[override]
        return self._queues["stdin"]

    @property
    def control_channel(self) -> Any:  # type: ignore[override]
        return self._queues["control"]

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._lost

    def start_channels(self, *args: Any, **kwargs: Any) -> None:
        """Nothing yet: `wait_for_ready` connects (it is the first thing awaited)."""

    def stop_channels(self) -> None:
        if self._event_logger is not None:
            with contextlib.suppress(Exception):
                self._event_logger.remove_listener(
                    schema_id=KERNEL_ACTIONS, listener=self._heard_action
                )
            self._event_logger = None
        if self._router is not None:
            self._router.cancel()
            self._router = None
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    @property
    def channels_running(self) -> bool:
        return self.connected

    def send(self, channel: str, msg: dict[str, Any]) -> None:
        if self._ws is None:
            raise RuntimeError(f"not connected to gateway kernel {self.kernel_id}")
        message = json.dumps({**msg, "channel": channel}, default=json_default)
        self._ws.write_message(message.replace("</", "<\\/"))

    # --- connecting ---

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        """Connect to the kernel's WebSocket on the gateway and wait for its
        `kernel_info_reply`; `RuntimeError` when it does not come in `timeout` seconds."""
        await self._opening(self._connect, timeout)

    async def connect(self, timeout: float | None = None) -> None:
        """Open the kernel's WebSocket on the gateway, without asking the kernel anything;
        `RuntimeError` when it cannot be opened (in `timeout` seconds)."""
        await self._opening(self._open, timeout)

    async def _opening(self, step: Any, timeout: float | None) -> None:
        url = self._url()
        try:
            await asyncio.wait_for(step(url), timeout)
        except asyncio.TimeoutError as exc:
            self.stop_channels()
            raise RuntimeError(f"Kernel didn't respond in {timeout} seconds ({url})") from exc
        except Exception as exc:  # refused, 401, 404 (no such kernel), TLS...
            self.stop_channels()
            raise RuntimeError(f"cannot connect to the gateway at {url}: {exc}") from exc

    def _url(self) -> str:
        return gateway_channels_url(self.kernel_id)

    async def _connect(self, url: str) -> None:
        await self._open(url)
        await self._kernel_info()

    async def _open(self, url: str) -> None:
        self._ws = await gateway_websocket(url)
        self._router = asyncio.ensure_future(self._route(self._ws))

    async def _kernel_info(self) -> None:
        msg = self.session.msg("kernel_info_request")
        self.send("shell", msg)
        shell = self._queues["shell"]
        while True:  # a reply to someone else (none yet: the socket is ours) is dropped
            reply = await shell.get_msg()
            if reply.get("parent_header", {}).get("msg_id") == msg["header"]["msg_id"]:
                return

    async def _route(self, ws: WebSocketClientConnection) -> None:
        """Each message from the gateway to the queue of its channel, until the socket closes."""
        while True:
            raw = await ws.read_message()
            if raw is None:
                log.info("gateway kernel %s: the WebSocket closed", self.kernel_id)
                self._lost = True
                self.closed.set()
                return
            try:
                msg = _decode(raw)
                channel = msg.pop("channel", None)
            except Exception:
                log.exception("gateway kernel %s: cannot read a message", self.kernel_id)
                continue
            queue = self._queues.get(channel)
            if queue is None:
                continue
            if channel == "iopub" and not msg.get("parent_header"):
                state = msg.get("content", {}).get("execution_state")
                if msg.get("msg_type") == "status" and state in ("restarting", "dead"):
                    self.restarted = True
            if channel not in self._queued:
                continue
            with contextlib.suppress(asyncio.QueueFull):
                queue.queue.put_nowait(msg)


def _decode(raw: str | bytes) -> dict[str, Any]:
    """A message from the gateway: JSON, or binary when it carries buffers."""
    if isinstance(raw, bytes):
        return dict(deserialize_binary_message(raw))  # type: ignore[no-untyped-call]
    return dict(json.loads(raw))
