"""WebSocket framing of outgoing messages, with bytes alone."""

from __future__ import annotations

import pytest

from jupyter_datastore.protocol.frames import Outgoing, websocket_frame


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x82\x00"),
        (125, b"\x82\x7d"),
        (126, b"\x82\x7e\x00\x7e"),
        (65535, b"\x82\x7e\xff\xff"),
        (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_frame_header_by_length(length: int, header: bytes) -> None:
    payload = b"x" * length
    assert websocket_frame(payload) == header + payload
    assert websocket_frame(payload, text=True) == bytes([0x81]) + header[1:] + payload


def test_outgoing_frames_once() -> None:
    message = Outgoing(b"abc")
    assert message.websocket_frame is message.websocket_frame
    assert message.websocket_frame == b"\x82\x03abc"


def test_text_messages_get_text_frames() -> None:
    assert Outgoing("é".encode(), text=True).websocket_frame == b"\x81\x02\xc3\xa9"
