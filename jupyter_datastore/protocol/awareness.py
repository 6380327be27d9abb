"""y-protocols awareness updates: a varuint count of (client id, clock, JSON state) entries.

Each state is a varstring holding JSON; the string `null` removes the client. States are
checked to be valid JSON here because every other peer will `JSON.parse` them. Every length
is checked against a limit before anything is read: the whole update, the number of entries,
each state's bytes and its JSON nesting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .jsondepth import MAX_JSON_DEPTH, json_depth_over
from .lib0 import DecodeError, Reader, var_string, var_uint

__all__ = [
    "MAX_AWARENESS_ENTRIES",
    "MAX_AWARENESS_STATE",
    "MAX_AWARENESS_UPDATE",
    "AwarenessEntry",
    "decode_awareness_update",
    "encode_awareness_update",
]

NULL_STATE = "null"
MAX_AWARENESS_ENTRIES = 256
"""Entries in one update. A y-websocket client sends its own entry, but also echoes the
entries of others that changed (on joining: everyone's), so this is about a room's size."""
MAX_AWARENESS_STATE = 64 * 1024
"""Bytes of one entry's JSON state (JupyterLab's: a user and cursors, well under 2 kB)."""
MAX_AWARENESS_UPDATE = 1024 * 1024
"""Bytes of one awareness update from a peer (the server's limit; see `parse_message`)."""


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: str
    """The state as JSON text, `null` when the client left."""

    @property
    def removed(self) -> bool:
        return self.state == NULL_STATE


def decode_awareness_update(
    payload: bytes,
    *,
    max_entries: int = MAX_AWARENESS_ENTRIES,
    max_state: int = MAX_AWARENESS_STATE,
    max_bytes: int | None = None,
) -> list[AwarenessEntry]:
    """The entries of an update; `DecodeError` saying why not (`max_bytes` None: no limit on
    the whole update beyond the others)."""
    if max_bytes is not None and len(payload) > max_bytes:
        raise DecodeError(f"awareness update of {len(payload)} bytes is over {max_bytes}")
    reader = Reader(payload)
    count = reader.read_var_uint()
    if count > max_entries:
        raise DecodeError(f"awareness update has {count} entries, more than {max_entries}")
    entries = []
    for _ in range(count):
        client_id = reader.read_var_uint()
        clock = reader.read_var_uint()
        length = reader.read_var_uint()
        if length > max_state:
            raise DecodeError(f"awareness state of {length} bytes is over {max_state}")
        raw = reader.read_bytes(length)
        if json_depth_over(raw, MAX_JSON_DEPTH):
            raise DecodeError(f"awareness state nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            state = raw.decode("utf-8")
            json.loads(state)
        except ValueError as exc:
            raise DecodeError("awareness state is not JSON") from exc
        entries.append(AwarenessEntry(client_id, clock, state))
    if not reader.done():
        raise DecodeError("unexpected bytes after the awareness entries")
    return entries


def encode_awareness_update(entries: list[AwarenessEntry]) -> bytes:
    parts = [var_uint(len(entries))]
    for entry in entries:
        parts += (var_uint(entry.client_id), var_uint(entry.clock), var_string(entry.state))
    return b"".join(parts)
