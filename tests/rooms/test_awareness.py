"""A room's awareness table: whose clients are whose (what GraphQL's `documents` shows of
each peer comes from their own connections' states)."""

from __future__ import annotations

import json

from jupyter_datastore.protocol.awareness import NULL_STATE, AwarenessEntry
from jupyter_datastore.rooms.awareness import AwarenessTable


def entry(client: int, clock: int, state: object) -> AwarenessEntry:
    return AwarenessEntry(client, clock, json.dumps(state))


def test_a_peers_states_are_its_own_clients_present_ones() -> None:
    table = AwarenessTable()
    alice, bob = object(), object()
    table.apply(alice, [entry(1, 1, {"user": {"name": "alice"}})], "alice")
    table.apply(bob, [entry(2, 1, {"user": {"name": "bob"}}), entry(3, 1, {"x": 1})], "bob")
    assert table.states_of(alice) == [{"user": {"name": "alice"}}]
    assert table.states_of(bob) == [{"user": {"name": "bob"}}, {"x": 1}]
    table.apply(bob, [AwarenessEntry(3, 2, NULL_STATE)], "bob")  # bob's second client left
    assert table.states_of(bob) == [{"user": {"name": "bob"}}]
    table.remove_owner(alice)
    assert table.states_of(alice) == [] and table.states_of(object()) == []
