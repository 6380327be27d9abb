"""Rooms: shared documents, their peers, awareness, batching, broadcast and life cycle.

A room knows nothing of files or sockets: peers are anything with `send` and `close`, and a
room's owner (a document session) hooks in through `on_flush`, `on_save` and `on_close`.
"""

from .manager import RoomManager
from .room import SERVER, Peer, Room, RoomSettings

__all__ = ["SERVER", "Peer", "Room", "RoomManager", "RoomSettings"]
