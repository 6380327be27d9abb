"""A room's awareness: who is here and what they show (cursors, user, `autosave`).

The table follows y-protocols' rules (a higher clock wins; `null` removes a client) and
binds each client id to the peer (socket) that introduced it: only that peer may update or
remove it, so nobody can show another person's name or cursor. When the socket closes its
clients are removed at once instead of lingering for the 30 s awareness timeout.

An entry for a client id another peer owns is dropped, alone: the rest of the message is
taken and the sender stays, because y-websocket clients echo the entries of others that
changed (all of them on joining), so such entries are the normal case, not an attack.
One exception: a peer of the same named user may take over a client id (a reconnecting
tab keeps its client id while its old socket may not be known to be closed yet). Echoes
also arrive for clients that just left: a removal of an unknown client id is dropped, and
so is an entry of a recently removed client no newer than its removal, unless the same
named user sends it (the last `_GONE` removals are remembered).

A peer introduces at most `MAX_CLIENTS_PER_PEER` client ids; one more is a `BadRequest`
(the room closes that peer only, with 4400) and changes nothing.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from ..errors import BadRequest
from ..protocol.awareness import NULL_STATE, AwarenessEntry, encode_awareness_update

__all__ = ["MAX_CLIENTS_PER_PEER", "AwarenessTable"]

MAX_CLIENTS_PER_PEER = 8
"""Client ids one socket may introduce (a JupyterLab tab uses one per document)."""
_GONE = 4096


class AwarenessTable:
    def __init__(self, max_clients: int = MAX_CLIENTS_PER_PEER) -> None:
        self.max_clients = max_clients
        self._entries: dict[int, AwarenessEntry] = {}
        self._owners: dict[int, tuple[object, str | None]] = {}
        """Who introduced each client id: the peer, and its user (None: no name)."""
        self._gone: OrderedDict[int, tuple[int, str | None]] = OrderedDict()
        """Recently removed client ids: the removal's clock, and whose the client was."""

    def apply(
        self, owner: object, entries: list[AwarenessEntry], user: str | None = None
    ) -> list[AwarenessEntry]:
        """Take `owner`'s entries; return them (what to relay), without those of client ids
        another peer owns. `BadRequest`, changing nothing, past `max_clients`."""
        mine = [entry for entry in entries if self._may_set(owner, user, entry)]
        new = {e.client_id for e in mine if self._owners.get(e.client_id, (None,))[0] is not owner}
        if new:
            held = sum(1 for who, _ in self._owners.values() if who is owner)
            if held + len(new) > self.max_clients:
                raise BadRequest(
                    f"a connection may show at most {self.max_clients} awareness client ids"
                )
        for entry in mine:
            self._owners[entry.client_id] = (owner, user)
            self._gone.pop(entry.client_id, None)
            current = self._entries.get(entry.client_id)
            if (
                current is None
                or entry.clock > current.clock
                or (entry.clock == current.clock and entry.removed and not current.removed)
            ):
                self._entries[entry.client_id] = entry
        return mine

    def _may_set(self, owner: object, user: str | None, entry: AwarenessEntry) -> bool:
        held = self._owners.get(entry.client_id)
        if held is not None:
            return held[0] is owner or (user is not None and held[1] == user)
        if entry.removed:
            return False  # nothing to remove (an echo of a removal)
        gone = self._gone.get(entry.client_id)
        if gone is not None and entry.clock <= gone[0]:
            return user is not None and gone[1] == user  # else an echo of the departed
        return True

    def present(self) -> list[AwarenessEntry]:
        """Every present client's entry."""
        return [entry for entry in self._entries.values() if not entry.removed]

    def snapshot(self) -> bytes | None:
        """An update with every present client, for a peer that just joined."""
        present = self.present()
        return encode_awareness_update(present) if present else None

    def remove_owner(self, owner: object) -> bytes | None:
        """Forget the clients of a closed socket; return the update telling the others."""
        gone = [client for client, (who, _) in self._owners.items() if who is owner]
        removed = []
        for client in gone:
            entry = self._entries.pop(client)
            _, user = self._owners.pop(client)
            self._gone[client] = (entry.clock + 1, user)
            if len(self._gone) > _GONE:
                self._gone.popitem(last=False)
            if not entry.removed:
                removed.append(AwarenessEntry(client, entry.clock + 1, NULL_STATE))
        return encode_awareness_update(removed) if removed else None

    def states_of(self, owner: object) -> list[Any]:
        """The present states of the clients `owner` (a peer) introduced."""
        clients = [client for client, (who, _) in self._owners.items() if who is owner]
        entries = [self._entries[c] for c in clients if c in self._entries]
        return [json.loads(e.state) for e in entries if not e.removed]

    def states(self) -> list[Any]:
        return [json.loads(e.state) for e in self._entries.values() if not e.removed]
