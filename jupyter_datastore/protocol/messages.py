"""The y-websocket v1 messages, plus Jupyter's RAW messages: bytes in, typed messages out.

Wire format (lib0): a varuint message type, then a body.

    0 SYNC       varuint step (0 SyncStep1 | 1 SyncStep2 | 2 Update), varbytes payload
    1 AWARENESS  varbytes awareness update (see `awareness.py`)
    2 RAW        varstring command; `save` is followed by a varuint request id
    3 QUERY_AWARENESS  (empty body)

`parse_message` accepts exactly one whole message per frame and raises `ProtocolError`
for anything else (empty, truncated, trailing bytes, unknown type or step).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .awareness import (
    MAX_AWARENESS_ENTRIES,
    MAX_AWARENESS_STATE,
    AwarenessEntry,
    decode_awareness_update,
)
from .lib0 import DecodeError, Reader, var_bytes, var_string, var_uint

__all__ = [
    "AwarenessMessage",
    "Message",
    "MessageType",
    "ProtocolError",
    "QueryAwareness",
    "SaveRequest",
    "SyncStep",
    "SyncStep1",
    "SyncStep2",
    "SyncUpdate",
    "awareness_message",
    "decode_state_vector",
    "encode_state_vector",
    "parse_message",
    "raw_message",
    "sync_step1",
    "sync_step2",
    "sync_update",
]


class MessageType(IntEnum):
    SYNC = 0
    AWARENESS = 1
    RAW = 2
    QUERY_AWARENESS = 3


class SyncStep(IntEnum):
    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


class ProtocolError(ValueError):
    """A frame that is not one well-formed message; `detail` says what is wrong."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SyncStep1:
    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessMessage:
    entries: list[AwarenessEntry]
    raw: bytes
    """The whole message as received, forwarded to the other peers unchanged."""


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    pass


@dataclass(frozen=True, slots=True)
class SaveRequest:
    request_id: int


Message = SyncStep1 | SyncStep2 | SyncUpdate | AwarenessMessage | QueryAwareness | SaveRequest


def parse_message(
    data: bytes,
    *,
    max_awareness_entries: int = MAX_AWARENESS_ENTRIES,
    max_awareness_state: int = MAX_AWARENESS_STATE,
    max_awareness_update: int | None = None,
) -> Message:
    """Parse one frame into one message, or raise `ProtocolError` saying why not.

    `max_awareness_update`: bytes of an awareness update (None: bounded by the frame only;
    the server passes `MAX_AWARENESS_UPDATE`, a client reading the server need not)."""
    if not data:
        raise ProtocolError("empty message")
    reader = Reader(data)
    try:
        kind = reader.read_var_uint()
        message: Message
        if kind == MessageType.SYNC:
            message = _parse_sync(reader)
        elif kind == MessageType.AWARENESS:
            entries = decode_awareness_update(
                reader.read_var_bytes(),
                max_entries=max_awareness_entries,
                max_state=max_awareness_state,
                max_bytes=max_awareness_update,
            )
            message = AwarenessMessage(entries, data)
        elif kind == MessageType.RAW:
            message = _parse_raw(reader)
        elif kind == MessageType.QUERY_AWARENESS:
            message = QueryAwareness()
        else:
            raise ProtocolError(f"unknown message type {kind}")
    except DecodeError as exc:
        raise ProtocolError(f"malformed message: {exc}") from exc
    if not reader.done():
        raise ProtocolError(f"{reader.remaining} unexpected bytes after the message")
    return message


def _parse_sync(reader: Reader) -> Message:
    step = reader.read_var_uint()
    payload = reader.read_var_bytes()
    if step == SyncStep.STEP1:
        _check_state_vector(payload)
        return SyncStep1(payload)
    if step == SyncStep.STEP2:
        return SyncStep2(payload)
    if step == SyncStep.UPDATE:
        return SyncUpdate(payload)
    raise ProtocolError(f"unknown sync step {step}")


def decode_state_vector(payload: bytes) -> dict[int, int]:
    """A state vector: a varuint count of (client varuint, clock varuint) pairs."""
    reader = Reader(payload)
    count = reader.read_var_uint()
    if count > reader.remaining // 2:
        raise ProtocolError(f"state vector claims {count} clients in {reader.remaining} bytes")
    clocks = {}
    for _ in range(count):
        client = reader.read_var_uint()
        clocks[client] = reader.read_var_uint()
    if not reader.done():
        raise ProtocolError("unexpected bytes after the state vector")
    return clocks


def encode_state_vector(clocks: dict[int, int]) -> bytes:
    return var_uint(len(clocks)) + b"".join(var_uint(c) + var_uint(k) for c, k in clocks.items())


def _check_state_vector(payload: bytes) -> None:
    try:
        decode_state_vector(payload)
    except DecodeError as exc:
        raise ProtocolError(f"malformed state vector: {exc}") from exc


def _parse_raw(reader: Reader) -> Message:
    command = reader.read_var_string()
    if command == "save":
        return SaveRequest(reader.read_var_uint())
    raise ProtocolError(f"unknown RAW command {command[:40]!r}")


def sync_step1(state_vector: bytes) -> bytes:
    return b"\x00\x00" + var_bytes(state_vector)


def sync_step2(update: bytes) -> bytes:
    return b"\x00\x01" + var_bytes(update)


def sync_update(update: bytes) -> bytes:
    return b"\x00\x02" + var_bytes(update)


def awareness_message(update: bytes) -> bytes:
    return b"\x01" + var_bytes(update)


def raw_message(payload: dict[str, object]) -> bytes:
    """A RAW message carrying JSON, e.g. a save reply or a conflict notice."""
    return var_uint(MessageType.RAW) + var_string(json.dumps(payload))


def save_request(request_id: int) -> bytes:
    """A client's RAW save command (JupyterLab's Ctrl-S)."""
    return var_uint(MessageType.RAW) + var_string("save") + var_uint(request_id)


def parse_raw_reply(data: bytes) -> dict[str, Any]:
    """What a client reads from the server's RAW messages: a JSON object (`raw_message`)."""
    try:
        reader = Reader(data)
        if reader.read_var_uint() != MessageType.RAW:
            raise ProtocolError("not a RAW message")
        payload = json.loads(reader.read_var_string())
    except (DecodeError, ValueError) as exc:
        raise ProtocolError(f"malformed RAW reply: {exc}") from exc
    if not isinstance(payload, dict):
        raise ProtocolError("a RAW reply must be a JSON object")
    return payload
