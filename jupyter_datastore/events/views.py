"""Per-user views of the event log: which events a user may see, replayed or live.

Every event that leaves the server for a user (`GET /api/events`, `/api/events/subscribe`,
batched or not) passes `EventViews.visible_to(user)`. An event's *scope* is decided once per
event from its data (no database query: the lookups are in memory) and kept for a while:

- owners (a configured owner, or owner on the root) see every event;
- `permission` (the audit trail): owner on the event's `path`;
- `notification`: its recipients (and owners);
- `document`, `execution`, `contents_service`: viewer on the event's `path` (and on its
  `from_path` / `source_path` when a file moved);
- `peer`, `store_fault`: viewer on the path of the event's `room_id`; a fork's room stands
  for its root document; a store fault of no room (the whole store) is for owners;
- `fork`: viewer on the path of the fork's root document;
- `kernel_status`, `kernel_actions`: viewer on the path of the notebook whose session runs
  the kernel (learnt from sessions and execution events); a kernel no session is known to
  run (yet) concerns the root: viewers on the root;
- `gateway_client` and every other server schema without a `path` (server-wide news such
  as gateway errors): owners only; one with a `path`: viewer on that path;
- events posted by clients under their own schemas: viewer on the root, or on the event's
  `path` when it names one.

A room whose file id is unknown, or an event whose document cannot be found, is for owners.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..auth import Permissions, Role
from ..auth.paths import lexical_path
from ..documents.roomid import RoomId, is_fork_id
from ..errors import DatastoreError
from ..store.base import StoredEvent
from .bus import EventBus, Visible
from .catalog import (
    CONTENTS_SERVICE,
    DOCUMENT,
    EXECUTION,
    FORK,
    KERNEL_ACTIONS,
    KERNEL_STATUS,
    NOTIFICATION,
    PEER,
    PERMISSION,
    STORE_FAULT,
)

__all__ = ["EventViews", "Scope"]

_SCOPES_KEPT = 8192  # events whose scope is remembered (live delivery to many subscribers)
_PATHS_KEPT = 65_536  # file ids and kernel ids whose path is remembered


@dataclass(frozen=True)
class Scope:
    """Who may see an event: owners always; else `needed` on every path of `paths`, or
    being one of `recipients`. No paths and no recipients: owners only."""

    paths: tuple[str, ...] = ()
    needed: Role = Role.VIEWER
    recipients: frozenset[str] = frozenset()


OWNERS_ONLY = Scope()
ROOT = Scope(("",))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class _Bounded(OrderedDict[str, str]):
    """A dictionary that forgets its oldest entries past `size`."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def keep(self, key: str, value: str) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class EventViews:
    """The scopes of events, and the per-user predicates the event handlers hand to the bus.

    `path_of_file(file_id)`, `path_of_room(room_id)` (open documents), `root_of_fork(id)`
    and `sessions()` (jupyter_server's sessions as the state mirror holds them) are in-memory
    lookups given by the datastore, `real_path` the server's path check (links resolved; the
    scope of an event is decided once); a file id's path is asked of the file id manager once and
    kept, and corrected by the document and contents events that report moves.
    """

    def __init__(
        self,
        bus: EventBus,
        permissions: Permissions,
        *,
        path_of_file: Callable[[str], str | None],
        path_of_room: Callable[[str], str | None],
        root_of_fork: Callable[[str], str | None],
        sessions: Callable[[], dict[str, Any]],
        real_path: Callable[[str], str] = lexical_path,
    ) -> None:
        self.bus = bus
        self.permissions = permissions
        self._path_of_file = path_of_file
        self._path_of_room = path_of_room
        self._root_of_fork = root_of_fork
        self._sessions = sessions
        self._real_path = real_path
        """The one path check (auth/paths.py): the path a role is decided on."""
        self._scopes: OrderedDict[int, Scope] = OrderedDict()
        self._files = _Bounded(_PATHS_KEPT)  # file id -> path
        self._kernels = _Bounded(_PATHS_KEPT)  # kernel id -> notebook path

    # --- per user ---

    def visible_to(self, user: str | None) -> Visible:
        """The predicate of one user's view (roles are read at each event: a changed rule
        applies to the next event)."""

        def visible(event: StoredEvent) -> bool:
            return self.may_see(user, event)

        return visible

    def may_see(self, user: str | None, event: StoredEvent) -> bool:
        scope = self.scope(event)  # first: deciding it learns where files and kernels are
        role = self.permissions.role
        if role(user, "") >= Role.OWNER:
            return True
        if user is not None and user in scope.recipients:
            return True
        if not scope.paths:
            return False
        return all(role(user, path) >= scope.needed for path in scope.paths)

    # --- per event ---

    def scope(self, event: StoredEvent) -> Scope:
        found = self._scopes.get(event.id)
        if found is None:
            found = self._scopes[event.id] = self._decide(event)
            while len(self._scopes) > _SCOPES_KEPT:
                self._scopes.popitem(last=False)
        return found

    def _decide(self, event: StoredEvent) -> Scope:
        data, schema_id = event.data, event.schema_id
        self._learn(schema_id, data)
        decide = _DECIDERS.get(schema_id)
        if decide is not None:
            return decide(self, data)
        path = _text(data.get("path"))
        if path is not None:
            return self._paths(path)
        return OWNERS_ONLY if self.bus.is_server_schema(schema_id) else ROOT

    def _normal(self, path: str) -> str | None:
        """The real path rules are decided on; None for one that leaves the root (or is
        malformed): only owners see such an event."""
        try:
            return self._real_path(path)
        except DatastoreError:
            return None

    def _paths(self, *paths: Any, needed: Role = Role.VIEWER) -> Scope:
        given = [self._normal(p) for p in paths if isinstance(p, str)]
        if not given or None in given:
            return OWNERS_ONLY
        return Scope(tuple(p for p in given if p is not None), needed)

    def _permission(self, data: dict[str, Any]) -> Scope:
        return self._paths(data.get("path"), needed=Role.OWNER)

    def _notification(self, data: dict[str, Any]) -> Scope:
        recipients = data.get("recipients")
        names = recipients if isinstance(recipients, list) else []
        return Scope(recipients=frozenset(n for n in names if isinstance(n, str)))

    def _document(self, data: dict[str, Any]) -> Scope:
        return self._paths(data.get("path"), data.get("from_path"))

    def _contents(self, data: dict[str, Any]) -> Scope:
        return self._paths(data.get("path"), data.get("source_path"))

    def _execution(self, data: dict[str, Any]) -> Scope:
        path = _text(data.get("path"))
        if path is None:
            path = self.room_path(_text(data.get("room_id")))
        if path is None:
            return self._kernel(data)
        return self._paths(path)

    def _room(self, data: dict[str, Any]) -> Scope:
        room_id = _text(data.get("room_id"))
        if room_id is None:
            return OWNERS_ONLY
        if RoomId.try_parse(room_id) is None and not is_fork_id(room_id):
            return ROOT  # a room of no document (awareness, the state room)
        return self._paths(self.room_path(room_id))

    def _fork(self, data: dict[str, Any]) -> Scope:
        info = data.get("fork_info")
        root = _text(info.get("root_roomid")) if isinstance(info, dict) else None
        return self._paths(self.room_path(root or _text(data.get("fork_roomid"))))

    def _kernel(self, data: dict[str, Any]) -> Scope:
        kernel_id = _text(data.get("kernel_id"))
        path = self.kernel_path(kernel_id) if kernel_id else None
        return ROOT if path is None else self._paths(path)

    # --- lookups ---

    def room_path(self, room_id: str | None) -> str | None:
        """The path of a document room, or of a fork's root document."""
        if room_id is None:
            return None
        if is_fork_id(room_id):
            root = self._root_of_fork(room_id)
            return None if root is None or is_fork_id(root) else self.room_path(root)
        open_path = self._path_of_room(room_id)
        if open_path is not None:
            return open_path
        room = RoomId.try_parse(room_id)
        if room is None:
            return None
        file_id = room.file_id
        path = self._files.get(file_id)
        if path is None:
            path = self._path_of_file(file_id)
            if path is not None:
                self._files.keep(file_id, path)
        return path

    def kernel_path(self, kernel_id: str) -> str | None:
        path = self._kernels.get(kernel_id)
        if path is not None:
            return path
        for session in self._sessions().values():
            kernel = session.get("kernel") if isinstance(session, dict) else None
            found = _text(session.get("path")) if isinstance(kernel, dict) else None
            if found is not None and kernel is not None and kernel.get("id") == kernel_id:
                self._kernels.keep(kernel_id, found)
                return found
        return None

    def _learn(self, schema_id: str, data: dict[str, Any]) -> None:
        """Keep what events tell of where documents and kernels are."""
        path, room_id = _text(data.get("path")), _text(data.get("room_id"))
        learns = schema_id in (DOCUMENT, EXECUTION) and path is not None
        room = RoomId.try_parse(room_id) if learns and room_id is not None else None
        if room is not None:
            self._files.keep(room.file_id, str(path))
        kernel_id = _text(data.get("kernel_id"))
        if schema_id == EXECUTION and path is not None and kernel_id is not None:
            self._kernels.keep(kernel_id, path)
        if schema_id == CONTENTS_SERVICE and data.get("action") in ("rename", "delete"):
            gone = _text(data.get("source_path")) or path
            normal = None if gone is None else self._normal(gone)
            if normal is not None:
                self._forget(normal)

    def _forget(self, path: str) -> None:
        """Forget the file ids under a path that moved (asked again when next needed)."""
        prefix = path.rstrip("/") + "/"
        for file_id, known in list(self._files.items()):
            if known == path or known.startswith(prefix):
                del self._files[file_id]


_DECIDERS: dict[str, Callable[[EventViews, dict[str, Any]], Scope]] = {
    PERMISSION: EventViews._permission,
    NOTIFICATION: EventViews._notification,
    DOCUMENT: EventViews._document,
    CONTENTS_SERVICE: EventViews._contents,
    EXECUTION: EventViews._execution,
    PEER: EventViews._room,
    STORE_FAULT: EventViews._room,
    FORK: EventViews._fork,
    KERNEL_STATUS: EventViews._kernel,
    KERNEL_ACTIONS: EventViews._kernel,
}
