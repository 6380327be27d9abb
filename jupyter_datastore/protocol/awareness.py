"""y-protocols awareness updates: a varuint count of (client id, clock, JSON state) entries.

Each state is a varstring holding JSON; the string `null` removes the client. States are
checked to be valid JSON here because every other peer will `JSON.parse` them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .lib0 import DecodeError, Reader, var_string, var_uint

__all__ = ["AwarenessEntry", "decode_awareness_update", "encode_awareness_update"]

NULL_STATE = "null"


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
    payload: bytes, *, max_entries: int, max_state: int
) -> list[AwarenessEntry]:
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
