"""`WS /api/collaboration/room/{room}?sessionId=`: a peer of a room.

The handler authenticates and authorizes the request (jupyter_server), checks the opening
handshake, detaches the stream and hands it to a `WebSocket`; a `RoomPeer` then joins the
room and moves messages: frames in are parsed by `protocol` and given to the room, messages
out arrive encoded and framed once for all peers. Errors become close codes here and
nowhere else:

    4400  malformed, truncated, empty or text frame; unknown message type; a room name
          that is no room id (`documents/roomid.py`: a wrong shape, an unsupported kind,
          a malformed file id); an awareness limit passed (`protocol/awareness.py`,
          `rooms/awareness.py`)
    4403  the user's role on the file does not allow reading it (an edit or a save it does
          not allow is refused with a RAW `refused` message instead, `reload` true for an
          edit; the peer stays). The peer is told its role on the file when it joins and
          at each change: RAW `{"type": "role", "role", "edit"}`
    4404  a well-formed room id that names no file or fork; the file does not exist
    4500  the document could not be loaded
    1003  the sessionId is not the room's (JSON: reason, sessionId, reloadable): another
          store's, or, in a document room, that of the document's rows before they were
          deleted and made again (the store's id and the rows' epoch: `DocumentSession`);
          checked once the room is open, after the role, and nothing of the peer is merged
    1009  a message over the size limit: the server's `max_message_size` for a peer whose
          role allows editing, `VIEWER_MAX_MESSAGE` for any other (decided at each frame's
          header, on the role at that time: refused before the frame is read)
    1013  the peer fell too far behind in reading what the room sends
    1001  the server is stopping

A request that is not a valid opening handshake gets an HTTP error instead (400, 403).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from tornado import web
from tornado.iostream import StreamClosedError

from ..auth import Role
from ..auth.live import Watched
from ..datastore import Datastore
from ..documents.roomid import GLOBAL_AWARENESS, STATE_ROOM, RoomId, is_fork_id
from ..documents.session import DocumentSession
from ..errors import BadRequest, DatastoreError, Forbidden, NotFound, SessionExpired
from ..protocol.awareness import MAX_AWARENESS_UPDATE
from ..protocol.frames import Outgoing
from ..protocol.messages import (
    Message,
    ProtocolError,
    SaveRequest,
    SyncStep2,
    SyncUpdate,
    parse_message,
    raw_message,
)
from ..rooms import Room
from ..rooms.room import EMPTY_UPDATE
from .base import DatastoreHandler, user_name_of
from .websocket import WebSocket, handshake_response, keep_alive

__all__ = ["RoomHandler", "RoomPeer"]

log = logging.getLogger(__name__)

VIEWER_MAX_MESSAGE = 1024 * 1024
"""Largest message from a peer whose role does not allow editing (and from the presence
room's peers): enough for awareness and a sync step 1, while a viewer's large frame is
refused at its header instead of being read into memory and then refused."""


class RoomPeer:
    """A WebSocket joined to a room: checks the session, joins, relays, leaves."""

    _running: ClassVar[set[RoomPeer]] = set()  # keeps live connections referenced

    def __init__(
        self,
        datastore: Datastore,
        name: str,
        session_id: str | None,
        user: str | None = None,
        handler: Any = None,
    ) -> None:
        self.datastore = datastore
        self.name = name
        self.session_id = session_id
        self.user = user
        self.handler = handler
        """The handler of the opening request: its credentials are checked again live."""
        self.room: Room | None = None
        self.socket: WebSocket | None = None
        self.watched: Watched | None = None
        self.role_told: Role | None = None
        """The role last told to the peer (a RAW `role` message), None before the first."""

    async def run(self, socket: WebSocket, response: bytes) -> None:
        try:
            await socket.accept(response)
        except StreamClosedError:
            return  # the client left during the handshake
        self.socket = socket
        RoomPeer._running.add(self)
        try:
            self._check_session(None)
            self._check_access()
            async with self.datastore.rooms.hold(self.name) as room:  # open from check to join
                self._check_session(room)
                self.room = await self.datastore.rooms.join(self.name, socket, user=self.user)
            self._tell_role()
            if self.handler is not None:
                watched = Watched(self.user, self.handler, self._fail, self._recheck)
                self.watched = self.datastore.live.add(watched)
        except DatastoreError as exc:
            self._fail(exc)
        except Exception:
            log.exception("cannot open room %s", self.name)
            self._fail(DatastoreError("the room could not be opened (see the server log)"))
        socket.start()  # read only once joined: early messages wait in the socket

    def _check_session(self, room: Room | None) -> None:
        """Refuse a missing or foreign sessionId. A document room's is its owner's (the
        store's id and the epoch of the document's rows), known once the room is open: with
        `room` None, only what is known before is checked. Fork and timeline rooms (and the
        presence room) take any session id of this store: the store's own (the fork and
        timeline answers give it) or a document's, which front ends pass on to a fork of it;
        a fork's id is never given again, and a fork deleted is gone (4404), not made again,
        so its epoch would tell nothing."""
        store = self.datastore.store
        if self.name == GLOBAL_AWARENESS and self.session_id is None:
            return  # JupyterLab's presence provider sends none, and the room holds no content
        if self.session_id is None:
            raise BadRequest("the sessionId query parameter is required")
        if self.name == STATE_ROOM:
            expected = self.datastore.state.session_id  # GET /api/datastore/state gives it
        elif room is not None and isinstance(room.owner, DocumentSession):
            expected = room.owner.session_id
        elif room is None and self.name != GLOBAL_AWARENESS:
            return  # a document's or a fork's room: checked once it is open
        elif store.is_own_session_id(self.session_id):
            return
        else:
            expected = store.session_id
        if self.session_id != expected:
            raise SessionExpired("unknown document session", session_id=expected)

    def _path(self) -> str | None:
        """The file the room holds, where it is now (renames follow); the root for the state
        room; None for the presence room, which holds no content."""
        if self.name == GLOBAL_AWARENESS:
            return None
        if self.name == STATE_ROOM:
            return ""
        name = self.datastore.root_room(self.name)  # a fork's file is its root's
        session = self.datastore.documents.sessions.get(name)
        if session is not None:
            return session.path
        if is_fork_id(name):
            raise NotFound(f"no fork or timeline {name}")
        file_id = RoomId.parse(name).file_id
        path = self.datastore.ids.path(file_id)
        if path is None:
            raise NotFound(f"no file has id {file_id}")
        return path

    def _check_role(self, needed: Role, operation: str) -> None:
        path = self._path()
        if path is not None:
            self.datastore.permissions.require(self.user, path, needed, operation)

    def message_limit(self) -> int:
        """The largest message the peer may send now (its role is looked up each time)."""
        full = self.datastore.limits.max_message_size
        try:
            path = self._path()
            role = Role.NONE if path is None else self.datastore.permissions.role(self.user, path)
        except DatastoreError:
            role = Role.NONE
        return full if role >= Role.EDITOR else min(full, VIEWER_MAX_MESSAGE)

    def _check_access(self) -> None:
        """May the user be in this room (now)? The state room shows the whole server: only
        to those who may view everything."""
        if self.name == STATE_ROOM:
            if not self.datastore.permissions.sees_everything(self.user):
                who = self.user or "an anonymous user"
                raise Forbidden(
                    f"the state room shows every document; {who} may not view them all:"
                    " GET /api/datastore/state shows what concerns you"
                )
            return
        self._check_role(Role.VIEWER, "open")

    def _recheck(self) -> None:
        """After a change of users or rules: may the user stay, and with what role?"""
        self._check_access()
        self._tell_role()

    def _tell_role(self) -> None:
        """Tell the peer its role on the document's file when it joins and each time it
        changes, so that a front end opens the document read-only for a viewer and switches
        live (RAW `{"type": "role", "role", "edit"}`; rooms with no file say nothing)."""
        if self.name == STATE_ROOM or self.socket is None:
            return
        path = self._path()
        if path is None:
            return
        role = self.datastore.permissions.role(self.user, path)
        if role != self.role_told:
            self.role_told = role
            told = {"type": "role", "role": role.label, "edit": role >= Role.EDITOR}
            self.socket.send(Outgoing(raw_message(told)))

    def _refuse(self, socket: WebSocket, message: Message) -> bool:
        """Refuse an edit or a save the peer's role does not allow: a RAW `refused` message
        says why, the peer stays (it may still read and show presence)."""
        if isinstance(message, SyncUpdate | SyncStep2):
            if message.update == EMPTY_UPDATE:
                return False
            operation = "edit"
        elif isinstance(message, SaveRequest):
            operation = "save"
        else:
            return False
        try:
            self._check_role(Role.EDITOR, operation)
        except Forbidden as exc:
            # An edit stays in the peer's copy, which no longer matches the room's: it should
            # load the document again (a refusal for a store fault keeps it, to send later).
            reload = operation == "edit"
            refusal = {"type": "refused", "reason": exc.detail, "reload": reload}
            socket.send(Outgoing(raw_message(refusal)))
            if isinstance(message, SaveRequest):  # the client waits for the save's answer
                reply = {"type": "save", "responseTo": message.request_id, "status": "failed"}
                socket.send(Outgoing(raw_message(reply)))
            return True
        return False

    def _fail(self, exc: DatastoreError) -> None:
        log.info("room %s: closing a peer with %d: %s", self.name, exc.close_code, exc.detail)
        if self.socket is not None:
            self.socket.close(exc.close_code, exc.reason())

    def on_message(self, message: bytes | str) -> None:
        room, socket = self.room, self.socket
        if room is None or socket is None or socket.closed:
            return
        try:
            if isinstance(message, str):
                raise BadRequest("text frames are not supported; send binary y-websocket messages")
            parsed = parse_message(message, max_awareness_update=MAX_AWARENESS_UPDATE)
            if not self._refuse(socket, parsed):
                room.receive(socket, parsed)
        except ProtocolError as exc:
            self._fail(BadRequest(exc.detail))
        except DatastoreError as exc:
            self._fail(exc)

    def on_closed(self) -> None:
        RoomPeer._running.discard(self)
        if self.watched is not None:
            self.datastore.live.discard(self.watched)
        room, socket = self.room, self.socket
        self.room = None
        if room is not None and socket is not None:
            self.datastore.rooms.leave(room, socket)


class RoomHandler(DatastoreHandler):
    auth_resource = "contents"
    websocket = True
    """Not a REST endpoint (the OpenAPI document leaves it out)."""

    @ws_authenticated
    async def get(self, name: str) -> None:
        user = self.current_user
        resource = "kernels" if name == STATE_ROOM else "contents"
        allowed = await ensure_async(self.authorizer.is_authorized(self, user, "read", resource))
        if not allowed:
            raise web.HTTPError(403)
        response = handshake_response(self.request.headers)
        datastore = self.datastore
        session_id = self.get_query_argument("sessionId", None)
        peer = RoomPeer(datastore, name, session_id, user_name_of(self), self)
        socket = WebSocket(
            self.detach(),
            on_message=peer.on_message,
            on_closed=peer.on_closed,
            max_message_size=datastore.limits.max_message_size,
            send_limit=datastore.limits.peer_send_limit,
            keep_alive=keep_alive(self.settings),
            name=name,
            limit=peer.message_limit,
        )
        await peer.run(socket, response)
