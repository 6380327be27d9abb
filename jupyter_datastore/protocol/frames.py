"""An outgoing message, encoded once and framed once for every peer that receives it."""

from __future__ import annotations

import struct

__all__ = ["Outgoing", "websocket_binary_frame"]


def websocket_binary_frame(payload: bytes) -> bytes:
    """An unmasked, final, binary WebSocket frame (RFC 6455 section 5.2), as a server sends."""
    length = len(payload)
    if length < 126:
        header = bytes((0x82, length))
    elif length < 65536:
        header = struct.pack("!BBH", 0x82, 126, length)
    else:
        header = struct.pack("!BBQ", 0x82, 127, length)
    return header + payload


class Outgoing:
    """One message for many peers: the WebSocket frame is built on first use, then shared."""

    __slots__ = ("_frame", "message")

    def __init__(self, message: bytes) -> None:
        self.message = message
        self._frame: bytes | None = None

    @property
    def websocket_frame(self) -> bytes:
        frame = self._frame
        if frame is None:
            frame = self._frame = websocket_binary_frame(self.message)
        return frame
