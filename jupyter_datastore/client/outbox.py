"""What a room client has to send on one connection, bounded.

Each local transaction becomes one update message; a connection that stalls (a slow
network, a server that reads slowly) would otherwise queue one message per keystroke without
end. Past `MAX_PENDING` messages waiting, each run of updates between two other messages
(sync steps, save requests: few, and kept in their place) is merged into one update: Yjs
updates merge without loss, so the server gets the same edits, in fewer messages.
"""

from __future__ import annotations

import asyncio
from collections import deque

from pycrdt import merge_updates

from ..protocol.messages import sync_update

__all__ = ["MAX_PENDING", "Outbox"]

MAX_PENDING = 256
"""Messages waiting before runs of updates are merged."""


class Outbox:
    def __init__(self, limit: int = MAX_PENDING) -> None:
        self.limit = limit
        self._items: deque[tuple[bool, bytes]] = deque()
        """(an update to merge with its neighbours?, its payload), oldest first."""
        self._waiting = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: bytes) -> None:
        """A message sent as it is, in its place (a sync step, a save request)."""
        self._items.append((False, message))
        self._waiting.set()

    def put_update(self, update: bytes) -> None:
        """A document update; merged with the updates next to it once too many wait."""
        self._items.append((True, update))
        self._waiting.set()
        if len(self._items) > self.limit:
            self._merge()

    def _merge(self) -> None:
        merged: deque[tuple[bool, bytes]] = deque()
        run: list[bytes] = []
        for is_update, payload in self._items:
            if is_update:
                run.append(payload)
                continue
            if run:
                merged.append((True, merge_updates(*run)))
                run = []
            merged.append((False, payload))
        if run:
            merged.append((True, merge_updates(*run)))
        self._items = merged

    async def get(self) -> bytes:
        """The next message to send (waits for one)."""
        while not self._items:
            self._waiting.clear()
            await self._waiting.wait()
        is_update, payload = self._items.popleft()
        return sync_update(payload) if is_update else payload
