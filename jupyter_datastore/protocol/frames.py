"""An outgoing message, encoded once and framed once for every peer that receives it."""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["Outgoing", "offered_subprotocols", "websocket_frame"]

_BINARY, _TEXT = 0x82, 0x81  # FIN bit and the opcode


def offered_subprotocols(headers: Any) -> list[str]:
    """The subprotocols a client offers in its opening handshake (`Sec-WebSocket-Protocol`,
    RFC 6455 section 4.1, one or more header lines), in its order; `headers`: Tornado's."""
    offered = ",".join(headers.get_list("Sec-WebSocket-Protocol"))
    return [token.strip() for token in offered.split(",") if token.strip()]


def websocket_frame(payload: bytes, *, text: bool = False) -> bytes:
    """An unmasked, final WebSocket frame (RFC 6455 section 5.2), as a server sends."""
    first = _TEXT if text else _BINARY
    length = len(payload)
    if length < 126:
        header = bytes((first, length))
    elif length < 65536:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload


class Outgoing:
    """One message for many peers: the WebSocket frame is built on first use, then shared.
    A text message (`text=True`) must be UTF-8."""

    __slots__ = ("_frame", "message", "text")

    def __init__(self, message: bytes, *, text: bool = False) -> None:
        self.message = message
        self.text = text
        self._frame: bytes | None = None

    @property
    def websocket_frame(self) -> bytes:
        frame = self._frame
        if frame is None:
            frame = self._frame = websocket_frame(self.message, text=self.text)
        return frame
