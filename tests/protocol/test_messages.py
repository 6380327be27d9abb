"""y-websocket and RAW messages, with bytes alone; pycrdt's own encoder is the reference."""

from __future__ import annotations

import json

import pytest
from pycrdt import Doc, Text, YMessageType, YSyncMessageType, create_sync_message

from jupyter_datastore.protocol.lib0 import Reader, var_bytes, var_string, var_uint
from jupyter_datastore.protocol.messages import (
    AwarenessMessage,
    ProtocolError,
    QueryAwareness,
    SaveRequest,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    awareness_message,
    parse_message,
    parse_raw_reply,
    raw_message,
    save_request,
    sync_step1,
    sync_step2,
    sync_update,
)


def a_doc() -> Doc:
    doc: Doc = Doc()
    doc.get("text", type=Text).insert(0, "hello")
    return doc


def test_our_sync_messages_match_pycrdts() -> None:
    doc = a_doc()
    assert sync_step1(doc.get_state()) == create_sync_message(doc)
    update = doc.get_update()
    assert sync_update(update) == bytes(
        [YMessageType.SYNC, YSyncMessageType.SYNC_UPDATE]
    ) + var_bytes(update)
    assert sync_step2(update) == bytes(
        [YMessageType.SYNC, YSyncMessageType.SYNC_STEP2]
    ) + var_bytes(update)


def test_parse_each_message_kind() -> None:
    doc = a_doc()
    assert parse_message(sync_step1(doc.get_state())) == SyncStep1(doc.get_state())
    assert parse_message(sync_step2(b"\x00\x00")) == SyncStep2(b"\x00\x00")
    assert parse_message(sync_update(doc.get_update())) == SyncUpdate(doc.get_update())
    assert parse_message(b"\x03") == QueryAwareness()
    save = var_uint(2) + var_string("save") + var_uint(300)
    assert parse_message(save) == SaveRequest(300)
    entry = var_uint(1) + var_uint(42) + var_uint(3) + var_string('{"user": {"name": "A"}}')
    message = awareness_message(entry)
    parsed = parse_message(message)
    assert isinstance(parsed, AwarenessMessage)
    assert parsed.raw == message
    assert [(e.client_id, e.clock, json.loads(e.state)) for e in parsed.entries] == [
        (42, 3, {"user": {"name": "A"}})
    ]


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (b"", "empty"),
        (b"\x09", "unknown message type 9"),
        (b"\x00\x05" + var_bytes(b""), "unknown sync step 5"),
        (b"\x00\x02" + var_uint(9) + b"abc", "past the end"),
        (b"\x00", "truncated"),
        (b"\x00\x00" + var_bytes(b"\x03\x01"), "state vector"),
        (b"\x00\x00" + var_bytes(b"\x00\x07"), "after the state vector"),
        (sync_update(b"\x00\x00") + b"\x00", "unexpected bytes"),
        (var_uint(2) + var_string("delete-everything"), "unknown RAW command"),
        (var_uint(2) + var_string("save"), "truncated"),
        (
            b"\x01" + var_bytes(var_uint(1) + var_uint(1) + var_uint(1) + var_string("{")),
            "not JSON",
        ),
        (b"\x01" + var_bytes(var_uint(10_000)), "entries"),
    ],
)
def test_malformed_frames_say_why(frame: bytes, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        parse_message(frame)


def test_oversize_awareness_state_is_refused() -> None:
    state = json.dumps({"x": "y" * 100})
    entry = var_uint(1) + var_uint(1) + var_uint(1) + var_string(state)
    with pytest.raises(ProtocolError, match="over 64"):
        parse_message(awareness_message(entry), max_awareness_state=64)


def test_raw_message_is_json_after_the_type() -> None:
    message = raw_message({"type": "save", "responseTo": 3, "status": "success"})
    reader = Reader(message)
    assert reader.read_var_uint() == 2
    assert json.loads(reader.read_var_string()) == {
        "type": "save",
        "responseTo": 3,
        "status": "success",
    }
    assert reader.done()


def test_raw_replies_are_read_back_and_bad_ones_refused() -> None:
    reply = {"type": "refused", "reason": "read-only"}
    assert parse_raw_reply(raw_message(reply)) == reply
    assert parse_message(save_request(9)) == SaveRequest(9)
    for bad in (b"", b"\x02", b"\x02\x03[1]", b"\x00\x00", b"\x02\x05{nope"):
        with pytest.raises(ProtocolError):
            parse_raw_reply(bad)


def test_awareness_limits_are_checked_on_the_bytes() -> None:
    entry = var_uint(1) + var_uint(1) + var_uint(1) + var_string(json.dumps({"x": "y" * 100}))
    frame = awareness_message(entry)
    assert parse_message(frame, max_awareness_update=len(entry))
    with pytest.raises(ProtocolError, match="over 10"):
        parse_message(frame, max_awareness_update=10)
    deep = "[" * 65 + "]" * 65
    nested = var_uint(1) + var_uint(1) + var_uint(1) + var_string(deep)
    with pytest.raises(ProtocolError, match="deeper than 64"):
        parse_message(awareness_message(nested))
