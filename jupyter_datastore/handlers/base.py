"""Where exceptions become HTTP responses: one place, one JSON shape.

Every error body is `{"error": code, "detail": text, "message": text}`; `message` is the
field JupyterLab's client shows. A `DatastoreError` gets its own status; tornado's
`HTTPError` keeps its status; anything else is a 500 whose detail points at the server log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler

from ..auth import Role
from ..auth.live import Watched
from ..datastore import Datastore
from ..documents.roomid import RoomId, is_fork_id
from ..errors import BadRequest, DatastoreError, NotFound, error_body
from ..protocol.jsondepth import MAX_JSON_DEPTH, json_depth_over
from .websocket import WebSocket, keep_alive

__all__ = ["DatastoreHandler", "authorized_to", "read_json", "user_name_of"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def authorized_to(action: str) -> Callable[[F], F]:
    """jupyter_server's `@authorized` for an explicit action (such as "execute"), typed."""
    return cast(Callable[[F], F], authorized(action))


def read_json(raw: str | bytes, what: str) -> Any:
    """The one reader of JSON from a client (request bodies, query parameters, WebSocket
    messages): a 400 saying what is wrong, also for nesting deeper than `MAX_JSON_DEPTH`,
    which is refused before parsing (Python's parser would recurse into a RecursionError)."""
    if json_depth_over(raw, MAX_JSON_DEPTH):
        raise BadRequest(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"{what} is not JSON: {exc}") from exc


def user_name_of(handler: Any) -> str | None:
    """The authenticated user's name (jupyter_server's identity), if it has one."""
    name = getattr(handler.current_user, "username", None)
    return name if isinstance(name, str) and name else None


class DatastoreHandler(APIHandler):
    @property
    def datastore(self) -> Datastore:
        return cast(Datastore, self.settings["datastore"])

    @property
    def user_name(self) -> str | None:
        return user_name_of(self)

    def require(self, path: str, needed: Role, operation: str) -> None:
        """The caller's role on `path` must be at least `needed` (else 403, and audited)."""
        self.datastore.permissions.require(self.user_name, path, needed, operation)

    def real_path(self, raw: str | None) -> str:
        """The real path inside the root a client's path names ("" is the root; see
        auth/paths.py): every role is decided on it."""
        return self.datastore.paths.real(raw or "")

    def file_path(self, raw: str) -> str:
        """`real_path` of a file: 400 for the root itself."""
        return self.datastore.paths.file(raw)

    def may(self, path: str | None, needed: Role) -> bool:
        return self.datastore.permissions.role(self.user_name, path or "") >= needed

    def path_of_room(self, room: RoomId | str) -> str:
        """The path of the file a document room holds: 400 for a malformed room id, 404
        for an unknown file id or fork id (a fork's id stands for no file of its own)."""
        if isinstance(room, str):
            if is_fork_id(room):
                raise NotFound(f"no fork or timeline {room}")
            room = RoomId.parse(room)
        path = self.datastore.ids.path(room.file_id)
        if path is None:
            raise NotFound(f"no file has id {room.file_id}")
        return path

    def room_visible(self, name: str) -> bool:
        """Whether the caller may know of a room: a document's (or its fork's) if they may
        view the file; any other (state, presence) if they may view every document."""
        datastore = self.datastore
        if datastore.permissions.sees_everything(self.user_name):
            return True
        try:
            path = self.path_of_room(datastore.root_room(name))
        except DatastoreError:
            return False
        return self.may(path, Role.VIEWER)

    def stream_socket(
        self,
        *,
        on_message: Callable[[bytes | str], None],
        on_closed: Callable[[], None],
        name: str,
        max_message_size: int,
        recheck: Callable[[], None] = lambda: None,
    ) -> WebSocket:
        """This request's stream as our WebSocket (`websocket.py`), for a socket that
        streams to one user (events, notifications): its login is checked again while it
        is open (`auth/live.py`), and a lost one closes it with 4403; `recheck` is called
        after each look that found the login still good (rules or users changed)."""
        datastore = self.datastore
        watched = Watched(
            self.user_name,
            self,
            lambda exc: socket.close(exc.close_code, exc.reason()),
            recheck,
        )

        def closed() -> None:
            datastore.live.discard(watched)
            on_closed()

        socket = WebSocket(
            self.detach(),
            on_message=on_message,
            on_closed=closed,
            max_message_size=max_message_size,
            send_limit=datastore.limits.peer_send_limit,
            keep_alive=keep_alive(self.settings),
            name=name,
        )
        datastore.live.add(watched)
        return socket

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        await self.datastore.ready()

    def get_json_object(self) -> dict[str, Any]:
        """The request body as a JSON object, or a 400 saying what is wrong with it."""
        body = read_json(self.request.body or b"null", "the request body")
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, DatastoreError):
            log.info(
                "%s %s -> %d %s", self.request.method, self.request.path, value.status, value.detail
            )
        else:
            super().log_exception(typ, value, tb)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, DatastoreError):
            status_code = exc.status
        super().send_error(status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(error_body(exc, status_code)))
