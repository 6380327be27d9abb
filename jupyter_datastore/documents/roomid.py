"""Room ids: the name of a room, parsed once where it comes in.

A document's room is named `format:type:fileId`, as jupyter-collaboration names it
(`json:notebook:<file id>`): `RoomId`. A few rooms hold no document of their own and keep
the names they have, recognised here and nowhere else:

    JupyterLab:globalAwareness   JupyterLab's presence room (`GLOBAL_AWARENESS`)
    datastore:state              the live model of the server's state (`STATE_ROOM`)
    32 hex digits                a fork or a timeline of a document room (`is_fork_id`)

Errors, the same on every endpoint that takes a room id (REST paths and bodies, the room
WebSocket, nbmodel's `document_id`):

- an id of the wrong shape (not three parts, a file id with other characters, a kind of
  document not served) is a bad request: `BadRequest`, HTTP 400, WebSocket close 4400;
- an id that parses but names no file, or no fork, is `NotFound` (404, 4404), raised where
  the file or fork is looked up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import BadRequest
from .kinds import DocumentKind, kind_of

__all__ = ["GLOBAL_AWARENESS", "STATE_ROOM", "RoomId", "is_fork_id"]

GLOBAL_AWARENESS = "JupyterLab:globalAwareness"
"""JupyterLab's presence room: awareness only, its document stays empty."""
STATE_ROOM = "datastore:state"
"""The read-only room of the server's state (kernels, sessions, ...)."""

_FORK_ID = re.compile(r"^[0-9a-f]{32}$")
_FILE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def is_fork_id(name: str) -> bool:
    """Whether `name` has the shape of a fork's or timeline's id (`uuid4().hex`)."""
    return bool(_FORK_ID.match(name))


@dataclass(frozen=True)
class RoomId:
    """The id of a document's room: `format:type:fileId`, `str()` gives it back."""

    format: str
    type: str
    file_id: str
    """The file's id from jupyter_server_fileid: stable across renames."""

    @classmethod
    def parse(cls, text: str) -> RoomId:
        """The id `text` names; `BadRequest` if it has the wrong shape (see the module)."""
        parts = text.split(":", 2)
        if len(parts) != 3:
            raise BadRequest(f"{text[:80]!r} is not a document room id (format:type:fileId)")
        file_format, file_type, file_id = parts
        kind_of(file_format, file_type)
        if not _FILE_ID.match(file_id):
            raise BadRequest(f"malformed file id in room id {text[:80]!r}")
        return cls(file_format, file_type, file_id)

    @classmethod
    def try_parse(cls, text: str) -> RoomId | None:
        """The id `text` names, or None: for room ids the server made (events), not a
        client's request."""
        try:
            return cls.parse(text)
        except BadRequest:
            return None

    @classmethod
    def notebook(cls, file_id: str) -> RoomId:
        return cls("json", "notebook", file_id)

    @property
    def kind(self) -> DocumentKind:
        return kind_of(self.format, self.type)

    def __str__(self) -> str:
        return f"{self.format}:{self.type}:{self.file_id}"
