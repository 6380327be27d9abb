"""Rooms: shared documents, their peers, awareness, batching, broadcast and life cycle.

A room knows nothing of files or sockets: peers are anything with `send` and `close`; a
room's owner (a document session), given when the room is made, hears of its flushes, saves
and closing (`RoomOwner`), and others follow its durable changes with `Room.follow`.
"""

from .manager import RoomManager
from .room import NO_OWNER, SERVER, Peer, Room, RoomOwner, RoomSettings

__all__ = ["NO_OWNER", "SERVER", "Peer", "Room", "RoomManager", "RoomOwner", "RoomSettings"]
