"""A room's awareness: who is here and what they show (cursors, user, `autosave`).

The table follows y-protocols' rules (a higher clock wins; `null` removes a client) and
remembers which peer sent each client id, so that when a socket closes its clients are
removed at once instead of lingering for the 30 s awareness timeout.
"""

from __future__ import annotations

import json
from typing import Any

from ..protocol.awareness import NULL_STATE, AwarenessEntry, encode_awareness_update

__all__ = ["AwarenessTable"]


class AwarenessTable:
    def __init__(self) -> None:
        self._entries: dict[int, AwarenessEntry] = {}
        self._owners: dict[int, object] = {}

    def apply(self, owner: object, entries: list[AwarenessEntry]) -> None:
        for entry in entries:
            current = self._entries.get(entry.client_id)
            if (
                current is None
                or entry.clock > current.clock
                or (entry.clock == current.clock and entry.removed and not current.removed)
            ):
                self._entries[entry.client_id] = entry
                self._owners[entry.client_id] = owner

    def snapshot(self) -> bytes | None:
        """An update with every present client, for a peer that just joined."""
        present = [entry for entry in self._entries.values() if not entry.removed]
        return encode_awareness_update(present) if present else None

    def remove_owner(self, owner: object) -> bytes | None:
        """Forget the clients of a closed socket; return the update telling the others."""
        gone = [client for client, who in self._owners.items() if who == owner]
        removed = []
        for client in gone:
            entry = self._entries.pop(client)
            del self._owners[client]
            if not entry.removed:
                removed.append(AwarenessEntry(client, entry.clock + 1, NULL_STATE))
        return encode_awareness_update(removed) if removed else None

    def states(self) -> list[Any]:
        return [json.loads(e.state) for e in self._entries.values() if not e.removed]
