"""Awareness updates, with bytes alone."""

from __future__ import annotations

import pytest
from pycrdt import Awareness, Doc

from jupyter_datastore.protocol.awareness import (
    AwarenessEntry,
    decode_awareness_update,
    encode_awareness_update,
)
from jupyter_datastore.protocol.lib0 import DecodeError


def test_round_trip_and_null_means_removed() -> None:
    entries = [AwarenessEntry(1, 4, '{"user":"a"}'), AwarenessEntry(2**40, 9, "null")]
    decoded = decode_awareness_update(
        encode_awareness_update(entries), max_entries=8, max_state=100
    )
    assert decoded == entries
    assert [e.removed for e in decoded] == [False, True]


def test_pycrdts_awareness_reads_what_we_write() -> None:
    awareness = Awareness(Doc())
    awareness.apply_awareness_update(
        encode_awareness_update([AwarenessEntry(77, 1, '{"cursor": 3}')]), origin="test"
    )
    assert awareness.states[77] == {"cursor": 3}


def test_limits_and_trailing_bytes() -> None:
    two = encode_awareness_update([AwarenessEntry(1, 1, "{}"), AwarenessEntry(2, 1, "{}")])
    with pytest.raises(DecodeError, match="entries"):
        decode_awareness_update(two, max_entries=1, max_state=100)
    with pytest.raises(DecodeError, match="unexpected bytes"):
        decode_awareness_update(two + b"\x00", max_entries=8, max_state=100)
    with pytest.raises(DecodeError, match="not JSON"):
        decode_awareness_update(
            encode_awareness_update([AwarenessEntry(1, 1, "{")]), max_entries=8, max_state=100
        )
