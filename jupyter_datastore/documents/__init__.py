"""Documents: Y documents <-> files through the ContentsManager, in jupyter_ydoc's schema.

A document knows nothing of sockets: it loads a room's document, saves it, and merges in
changes made to its file on disk.
"""

from .contents import FileIO
from .kinds import KINDS, DocumentKind, kind_of
from .roomid import GLOBAL_AWARENESS, RoomId
from .service import Documents, WatchPolicy
from .session import DocumentSession, FileIds, SavePolicy

__all__ = [
    "GLOBAL_AWARENESS",
    "KINDS",
    "DocumentKind",
    "DocumentSession",
    "Documents",
    "FileIO",
    "FileIds",
    "RoomId",
    "SavePolicy",
    "WatchPolicy",
    "kind_of",
]
