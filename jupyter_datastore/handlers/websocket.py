"""A server WebSocket on a Tornado stream, framed by the `websockets` sans-I/O protocol.

Tornado accepts the HTTP request (and jupyter_server authenticates it); after the `101`
response the handler detaches the stream and this class speaks RFC 6455 on it: bytes read
from the stream go into a `websockets.protocol.Protocol`, whole messages come out, and
what the protocol wants to send (pongs, close frames) is written back. Compared with
Tornado's WebSocketHandler this costs one read per batch of frames instead of several
awaits per frame, and it lets a room write one pre-framed message to many sockets.

Outgoing room messages are written straight to the socket when nothing is queued (one
`send` call); what the socket does not take waits in the stream's write buffer, bounded
by `send_limit` bytes. A peer that falls further behind is closed with 1013.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from tornado.httputil import HTTPHeaders
from tornado.iostream import IOStream, StreamBufferFullError, StreamClosedError
from websockets.frames import BINARY, CONT, TEXT, Frame
from websockets.protocol import CLOSED, OPEN, SERVER, Protocol

from ..errors import BadRequest, close_reason
from ..protocol.frames import Outgoing

__all__ = ["WebSocket", "handshake_response", "keep_alive"]

log = logging.getLogger(__name__)

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_READ_SIZE = 1 << 16
_CLOSE_TIMEOUT = 5.0


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def handshake_response(headers: HTTPHeaders, subprotocol: str | None = None) -> bytes:
    """The `101` response to a valid opening handshake (RFC 6455 section 4.2); else BadRequest.
    `subprotocol`: the one chosen among those the client offered, named in the response."""
    if "websocket" not in _tokens(headers.get("Upgrade", "")):
        raise BadRequest("not a WebSocket request: Upgrade: websocket is missing")
    if "upgrade" not in _tokens(headers.get("Connection", "")):
        raise BadRequest("not a WebSocket request: Connection: Upgrade is missing")
    if headers.get("Sec-WebSocket-Version") != "13":
        raise BadRequest("unsupported WebSocket version (Sec-WebSocket-Version: 13 is required)")
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (ValueError, binascii.Error) as exc:
        raise BadRequest("malformed Sec-WebSocket-Key") from exc
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    chosen = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else ""
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n{chosen}\r\n"
    ).encode()


def keep_alive(settings: dict[str, Any]) -> tuple[float, float]:
    """jupyter_server's websocket_ping_interval and _timeout, in seconds (30 s each)."""
    interval: Any = settings.get("websocket_ping_interval") or 30
    timeout: Any = settings.get("websocket_ping_timeout") or interval
    return float(interval), float(timeout)


class WebSocket:
    """One open WebSocket; a room peer (`send`, `close`, `closed`)."""

    def __init__(
        self,
        stream: IOStream,
        *,
        on_message: Callable[[bytes | str], None],
        on_closed: Callable[[], None],
        max_message_size: int,
        send_limit: int,
        keep_alive: tuple[float, float] = (30.0, 30.0),
        name: str = "",
        limit: Callable[[], int] | None = None,
    ) -> None:
        """`limit`: the largest message now, asked before each frame (else always
        `max_message_size`): a message over it closes the socket with 1009 at its header."""
        self._stream = stream
        self._limit = limit
        self._on_message = on_message
        self._on_closed = on_closed
        self._protocol = Protocol(SERVER, state=OPEN, max_size=max_message_size)
        self._send_limit = send_limit
        self._ping_interval, self._ping_timeout = keep_alive
        self.name = name
        # Plain TCP only: a TLS stream must encrypt through Tornado.
        self._socket: socket.socket | None = stream.socket if type(stream) is IOStream else None
        self._fragments: list[bytes] = []
        self._fragment_is_text = False
        self._loop = asyncio.get_running_loop()
        self._last_seen = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._ping_sent: float | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: Any = None  # the last write still in the stream's buffer
        self._finished = False
        self.closed = False
        """True once a close was sent or the connection dropped: nothing more is sent."""
        stream.set_nodelay(True)
        stream.max_write_buffer_size = send_limit

    async def accept(self, response: bytes) -> None:
        """Complete the opening handshake with the `101` response."""
        await self._queue(response)

    def start(self) -> None:
        """Start reading frames (and keep-alive pings)."""
        self._reader = self._loop.create_task(self._read())
        if self._ping_interval > 0:
            self._timer = self._loop.call_later(self._ping_interval, self._keep_alive)

    # --- sending ---

    def send(self, message: Outgoing) -> None:
        if self.closed:
            return
        frame = message.websocket_frame
        sock = self._socket
        if sock is not None and self._pending is None:  # nothing queued: straight to the socket
            try:
                sent = sock.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # the connection is gone; the reader sees it too
                self.closed = True
                self._stream.close()
                return
            if sent == len(frame):
                return
            frame = frame[sent:]
        try:
            self._queue(frame)
        except StreamBufferFullError:
            if self._pending is not None:
                detail = f"more than {self._send_limit} bytes waiting to be sent"
                log.warning("closing a slow peer of %s: %s", self.name, detail)
                self.close(1013, close_reason({"error": "slow_peer", "detail": detail}))
                return
            self._stream.max_write_buffer_size = None  # one message larger than the limit
            self._queue(frame)
            self._stream.max_write_buffer_size = self._send_limit
        except StreamClosedError:
            self.closed = True

    def _queue(self, data: bytes) -> Any:
        """Write through the stream's buffer; `_pending` tells whether anything waits there."""
        future = self._stream.write(data)
        self._pending = future
        future.add_done_callback(self._drained)
        return future

    def _drained(self, future: Any) -> None:
        if self._pending is future:
            self._pending = None

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; the connection ends when the client answers."""
        if self.closed or self._protocol.state is not OPEN:
            return
        self.closed = True
        self._protocol.send_close(code, reason)
        self._flush()
        self._loop.call_later(_CLOSE_TIMEOUT, self._abort)

    def _abort(self) -> None:
        if not self._stream.closed():
            self._stream.close()

    def _flush(self) -> None:
        """Write what the protocol wants sent (pongs, close frames, the end of the stream)."""
        stream = self._stream
        stream.max_write_buffer_size = None  # protocol frames are never refused
        try:
            for data in self._protocol.data_to_send():
                if data:
                    self._queue(data)
                else:  # SEND_EOF: close once everything written has left
                    self._loop.create_task(self._close_after(self._queue(b"")))
        except StreamClosedError:
            pass
        stream.max_write_buffer_size = self._send_limit

    async def _close_after(self, written: Any) -> None:
        with contextlib.suppress(StreamClosedError, asyncio.TimeoutError):
            await asyncio.wait_for(written, _CLOSE_TIMEOUT)
        self._abort()

    # --- receiving ---

    async def _read(self) -> None:
        protocol = self._protocol
        try:
            while protocol.state is not CLOSED:
                data = await self._stream.read_bytes(_READ_SIZE, partial=True)
                self._last_seen = self._loop.time()
                if self._limit is not None and not protocol.reader.buffer:
                    # Between frames (nothing of the next one read yet): the parser reads
                    # the limit when the next frame's first byte arrives, in this call.
                    protocol.max_message_size = self._limit()
                protocol.receive_data(data)
                for frame in protocol.events_received():
                    if isinstance(frame, Frame):
                        self._frame(frame)
                self._flush()
                if protocol.close_expected() and not self.closed:
                    self.closed = True  # the client closed, or broke the protocol
        except StreamClosedError:
            protocol.receive_eof()
        except Exception:
            log.exception("WebSocket %s failed", self.name)
        finally:
            self._finish()

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        data = frame.data if isinstance(frame.data, bytes) else bytes(frame.data)
        if opcode is BINARY or opcode is TEXT:
            self._fragments = [data]
            self._fragment_is_text = opcode is TEXT
        elif opcode is CONT:
            self._fragments.append(data)
        else:
            return  # control frames: the protocol answered pings and closes already
        if frame.fin and not self.closed:
            payload = self._fragments[0] if len(self._fragments) == 1 else b"".join(self._fragments)
            self._fragments = []
            self._on_message(
                payload.decode("utf-8", "replace") if self._fragment_is_text else payload
            )

    def _keep_alive(self) -> None:
        """Ping a client quiet for an interval; drop it if the ping stays unanswered."""
        if self._finished:
            return
        now = self._loop.time()
        if self._ping_sent is not None and self._last_seen < self._ping_sent:
            if now - self._ping_sent >= self._ping_timeout:
                log.info("WebSocket %s: no answer to a ping, dropping it", self.name)
                self._abort()
                return
        elif now - self._last_seen >= self._ping_interval and self._protocol.state is OPEN:
            self._protocol.send_ping(b"")
            self._flush()
            self._ping_sent = now
        self._timer = self._loop.call_later(
            min(self._ping_interval, self._ping_timeout) / 2, self._keep_alive
        )

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._abort()
        self._on_closed()
