"""A window's kernel WebSocket relayed to a gateway kernel, in the subprotocol the gateway chose.

jupyter_server's `GatewayWebSocketConnection` answers the browser's handshake before it dials
the gateway, so it cannot know what the gateway speaks: it always answers with the legacy JSON
protocol (jupyter_server #1310, #1311). JupyterLab offers `v1.kernel.websocket.jupyter.org`
only, so every window's first handshake fails and it dials again without a subprotocol. The
failed attempt leaves a gateway socket open under the window's session id, and the gateway's
handling of the second one (a "stale" session replaced, a buffer replayed) can leave the window
with no kernel status for good (seen once in CI).

`GatewayRelay` dials the gateway in `prepare`, before the browser's handshake is answered,
offering what the browser offered, and answers the browser with the subprotocol the gateway
chose. Frames pass whole in both directions, text or binary, so nothing is parsed. A frame from
the gateway is read only once the previous one is written to the window's socket, so a slow
window holds back the gateway's socket instead of filling the server's memory. When the gateway
drops the socket, the window's is closed too, and JupyterLab reconnects with a new handshake.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from jupyter_server.gateway.connections import GatewayWebSocketConnection
from jupyter_server.services.kernels.connection.base import BaseKernelWebsocketConnection
from jupyter_server.utils import url_escape
from tornado import web
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError

from ..execution.gateway import gateway_channels_url, gateway_websocket
from ..protocol.frames import offered_subprotocols

__all__ = ["GatewayRelay", "use_gateway_relay"]

log = logging.getLogger(__name__)

# The close code sent to the window when the gateway's socket ends (RFC 6455: going away).
_GATEWAY_GONE = 1001


def use_gateway_relay(settings: dict[str, Any]) -> bool:
    """Relay windows' kernel sockets with `GatewayRelay` where jupyter_server would use its
    gateway connection (kernels behind a gateway, or supernode mode); any other configured
    connection class is kept. Whether the relay is now in use."""
    key = "kernel_websocket_connection_class"
    if settings.get(key) is GatewayWebSocketConnection:
        settings[key] = GatewayRelay
    return settings.get(key) is GatewayRelay


class GatewayRelay(BaseKernelWebsocketConnection):  # type: ignore[misc]
    """One window's kernel socket and its own socket to the gateway."""

    _gateway: WebSocketClientConnection | None = None
    _pump: asyncio.Task[None] | None = None
    _closing = False

    async def prepare(self) -> None:
        """Dial the gateway with the window's subprotocols; the handshake answers with the
        one the gateway chose (`kernel_ws_protocol`, "" for the legacy protocol)."""
        offered = offered_subprotocols(self.websocket_handler.request.headers)
        url = gateway_channels_url(self.kernel_id)
        if self.session_id:
            url += f"?session_id={url_escape(self.session_id)}"
        try:
            self._gateway = await gateway_websocket(url, offered or None)
        except HTTPClientError as exc:
            status = 404 if exc.code == 404 else 502
            raise web.HTTPError(status, f"kernel gateway refused the kernel socket: {exc}") from exc
        except OSError as exc:
            raise web.HTTPError(502, f"kernel gateway unreachable: {exc}") from exc
        self.kernel_ws_protocol = self._gateway.selected_subprotocol or ""
        self._close_if_refused()

    def _close_if_refused(self) -> None:
        """Close the gateway's socket if the window's request is then refused (not a valid
        WebSocket handshake, a cross-origin one: Tornado answers 400, 403 or 426, and no
        `on_close` follows). A request ends with 101 when its socket opens."""
        handler = self.websocket_handler
        finish = handler.on_finish

        def on_finish() -> None:
            finish()
            if handler.get_status() != 101:
                self.disconnect()

        handler.on_finish = on_finish  # type: ignore[method-assign]

    async def connect(self) -> None:
        """Start relaying the gateway's frames to the window."""
        self._pump = asyncio.ensure_future(self._relay_from_gateway())

    async def _relay_from_gateway(self) -> None:
        gateway = self._gateway
        assert gateway is not None, "prepare() dials the gateway before connect()"
        while (frame := await gateway.read_message()) is not None:
            try:
                await self.websocket_handler.write_message(frame, binary=isinstance(frame, bytes))
            except WebSocketClosedError:
                return
        if not self._closing:
            log.warning("gateway closed kernel %s's socket; closing the window's", self.kernel_id)
            self.websocket_handler.close(_GATEWAY_GONE, "kernel gateway connection closed")

    def disconnect(self) -> None:  # type: ignore[override]
        """The window's socket closed, or its request was refused: close the gateway's.
        Synchronous, as jupyter_server's handler calls it without awaiting."""
        self._closing = True
        if self._gateway is not None:
            self._gateway.close()
        if self._pump is not None:
            self._pump.cancel()

    def handle_incoming_message(self, incoming_msg: str | bytes) -> None:
        """A frame from the window, sent on to the gateway as it is."""
        if self._gateway is None or self._closing:
            return
        try:
            self._gateway.write_message(incoming_msg, binary=isinstance(incoming_msg, bytes))
        except WebSocketClosedError:
            log.info(
                "kernel %s: a frame from a window dropped, the gateway socket is closed",
                self.kernel_id,
            )

    def handle_outgoing_message(self, stream: str, outgoing_msg: list[Any]) -> None:
        """Part of jupyter_server's interface for ZMQ streams, which a relay has none of:
        the gateway's frames go to the window whole, in `_relay_from_gateway`."""
        raise NotImplementedError("GatewayRelay relays whole frames; it has no ZMQ streams")
