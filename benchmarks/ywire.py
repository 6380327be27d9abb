"""The client side of the collaboration protocol, as much as the benchmarks need.

y-websocket v1 framing (varuint message type, then for sync a varuint step and a payload),
the session request that names a room, and opening a room's WebSocket. Nothing here
depends on either server's code.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

SYNC, AWARENESS = 0, 1
STEP1, STEP2, UPDATE = 0, 1, 2
EMPTY_STATE_VECTOR = b"\x00"


def var_uint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def read_var_uint(data: bytes, pos: int) -> tuple[int, int]:
    """The integer at `pos` and the position after it."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def sync_message(step: int, payload: bytes) -> bytes:
    return bytes((SYNC, step)) + var_uint(len(payload)) + payload


def sync_step1(state_vector: bytes = EMPTY_STATE_VECTOR) -> bytes:
    return sync_message(STEP1, state_vector)


def sync_update(update: bytes) -> bytes:
    return sync_message(UPDATE, update)


def sync_payload(frame: bytes) -> tuple[int, bytes] | None:
    """(step, payload) of a sync message; None for any other message type."""
    if len(frame) < 2 or frame[0] != SYNC:
        return None
    size, pos = read_var_uint(frame, 2)
    return frame[1], frame[pos : pos + size]


@dataclass(frozen=True)
class Endpoint:
    """A running server: where it listens and the token it wants."""

    url: str
    token: str

    def session(self, path: str) -> dict[str, Any]:
        """`PUT /api/collaboration/session/{path}` for a notebook, as JupyterLab sends it."""
        request = urllib.request.Request(
            f"{self.url}/api/collaboration/session/{urllib.parse.quote(path, safe='')}",
            data=json.dumps({"format": "json", "type": "notebook"}).encode(),
            method="PUT",
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return dict(json.loads(response.read()))

    def get(self, path: str) -> Any:
        """A REST call's JSON answer."""
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def room_url(self, session: dict[str, Any]) -> str:
        room = f"{session['format']}:{session['type']}:{session['fileId']}"
        query = urllib.parse.urlencode({"sessionId": session["sessionId"], "token": self.token})
        return f"{self.url.replace('http', 'ws', 1)}/api/collaboration/room/{room}?{query}"


async def open_room(room_url: str) -> ClientConnection:
    """A raw WebSocket to a room: no compression, no keepalive pings, no size limit."""
    return await connect(
        room_url, compression=None, max_size=None, ping_interval=None, open_timeout=60
    )


async def sync(ws: ClientConnection, state_vector: bytes = EMPTY_STATE_VECTOR) -> bytes:
    """Send SyncStep1 and return the SyncStep2 payload (other messages are skipped)."""
    await ws.send(sync_step1(state_vector))
    while True:
        frame = await ws.recv()
        assert isinstance(frame, bytes), "the server sent a text frame"
        parsed = sync_payload(frame)
        if parsed is not None and parsed[0] == STEP2:
            return parsed[1]
