"""`WS /api/collaboration/room/{room}?sessionId=`: a peer of a room, over Tornado.

The handler only moves bytes: frames in are parsed by `protocol` and handed to the room;
messages out arrive already encoded and framed (once for all peers) and are written to the
socket's stream as they are. Errors become close codes here and nowhere else:

    4400  malformed, truncated, empty or text frame; unknown message type; bad room name
    4404  unknown room or file id; the file does not exist
    4500  the document could not be loaded
    1003  the sessionId is not one this server issued (JSON: reason, sessionId, reloadable)
    1009  a frame over the size limit (Tornado)
    1013  the peer fell too far behind in reading what the room sends
    1001  the server is stopping
"""

from __future__ import annotations

import logging
import socket
from typing import Any, cast

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.iostream import IOStream, StreamBufferFullError, StreamClosedError
from tornado.websocket import WebSocketHandler

from ..datastore import Datastore
from ..documents import GLOBAL_AWARENESS
from ..errors import BadRequest, DatastoreError, SessionExpired, close_reason
from ..protocol.frames import Outgoing
from ..protocol.messages import ProtocolError, parse_message
from ..rooms import Room

__all__ = ["RoomHandler", "SocketPeer"]

log = logging.getLogger(__name__)


class SocketPeer:
    """A room peer writing pre-framed messages straight to its socket.

    When nothing is waiting, a frame goes to the socket with one `send` call (Tornado's
    stream write costs several times that per peer); whatever the socket does not take goes
    to the stream's write buffer, which is the peer's send queue, bounded by `limit` bytes.
    A message that would overflow it closes the peer with 1013 (a single message larger than
    the limit is still sent when nothing else is waiting).
    """

    __slots__ = ("_handler", "_limit", "_socket", "_stream", "closed")

    def __init__(self, handler: WebSocketHandler, stream: IOStream, limit: int) -> None:
        self._handler = handler
        self._stream = stream
        self._limit = limit
        # Plain TCP only: a TLS stream must encrypt through Tornado.
        self._socket: socket.socket | None = stream.socket if type(stream) is IOStream else None
        stream.max_write_buffer_size = limit
        self.closed = False

    def send(self, message: Outgoing) -> None:
        if self.closed:
            return
        frame = message.websocket_frame
        stream = self._stream
        if self._socket is not None and not stream.writing():
            try:
                sent = self._socket.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # the connection is gone; Tornado will call on_close
                self.closed = True
                stream.close()
                return
            if sent == len(frame):
                return
            frame = frame[sent:]
        try:
            stream.write(frame)
        except StreamBufferFullError:
            if stream.writing():
                detail = f"more than {self._limit} bytes waiting to be sent"
                log.warning("closing a slow peer of %s: %s", self._handler.request.path, detail)
                self.close(1013, close_reason({"error": "slow_peer", "detail": detail}))
                return
            stream.max_write_buffer_size = None  # one message larger than the limit
            stream.write(frame)
            stream.max_write_buffer_size = self._limit
        except StreamClosedError:
            self.closed = True

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self._stream.max_write_buffer_size = None  # room for the close frame
            self._handler.close(code, reason)


class RoomHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):  # type: ignore[misc]
    auth_resource = "contents"
    room: Room | None = None
    peer: SocketPeer | None = None

    @property
    def datastore(self) -> Datastore:
        return cast(Datastore, self.settings["datastore"])

    @property
    def max_message_size(self) -> int:
        return self.datastore.limits.max_message_size

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        user = self.current_user
        allowed = await ensure_async(self.authorizer.is_authorized(self, user, "read", "contents"))
        if not allowed:
            raise web.HTTPError(403)
        try:
            await self.datastore.ready()
        except DatastoreError as exc:
            raise web.HTTPError(500, exc.detail) from exc
        await super().get(*args, **kwargs)  # type: ignore[misc]

    async def open(self, name: str) -> None:  # type: ignore[override]
        super().open(name)
        self.set_nodelay(True)
        assert self.ws_connection is not None and self.ws_connection.stream is not None
        peer = SocketPeer(self, self.ws_connection.stream, self.datastore.limits.peer_send_limit)
        self.peer = peer
        try:
            self._check_session(name)
            room = await self.datastore.rooms.join(name, peer)
        except DatastoreError as exc:
            self._fail(exc)
            return
        except Exception:
            log.exception("cannot open room %s", name)
            self._fail(DatastoreError("the room could not be opened (see the server log)"))
            return
        self.room = room
        if self.ws_connection is None or self.ws_connection.is_closing():
            self.on_close()  # the client left while the room was loading

    def _check_session(self, name: str) -> None:
        session_id = self.get_query_argument("sessionId", None)
        expected = self.datastore.store.session_id
        if name == GLOBAL_AWARENESS and session_id is None:
            return  # JupyterLab's presence provider sends none, and the room holds no content
        if session_id is None:
            raise BadRequest("the sessionId query parameter is required")
        if session_id != expected:
            raise SessionExpired("unknown document session", session_id=expected)

    def _fail(self, exc: DatastoreError) -> None:
        log.info(
            "room %s: closing a peer with %d: %s", self.request.path, exc.close_code, exc.detail
        )
        if self.peer is not None:
            self.peer.close(exc.close_code, exc.reason())

    def on_message(self, message: str | bytes) -> None:
        room, peer = self.room, self.peer
        if room is None or peer is None or peer.closed:
            return
        try:
            if isinstance(message, str):
                raise BadRequest("text frames are not supported; send binary y-websocket messages")
            room.receive(peer, parse_message(message))
        except ProtocolError as exc:
            self._fail(BadRequest(exc.detail))
        except DatastoreError as exc:
            self._fail(exc)

    def on_close(self) -> None:
        room, peer = self.room, self.peer
        if peer is not None:
            peer.closed = True
        if room is not None and peer is not None:
            self.room = None
            self.datastore.rooms.leave(room, peer)
