"""lib0 values, with bytes alone."""

from __future__ import annotations

import struct

import pytest

from jupyter_datastore.protocol.lib0 import (
    DecodeError,
    Reader,
    any_bytes,
    var_bytes,
    var_int,
    var_string,
    var_uint,
)


@pytest.mark.parametrize(
    ("number", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (2**21, b"\x80\x80\x80\x01"),
    ],
)
def test_var_uint_bytes(number: int, encoded: bytes) -> None:
    assert var_uint(number) == encoded
    assert Reader(encoded).read_var_uint() == number


def test_var_uint_round_trips_up_to_53_bits() -> None:
    for number in (2**28 - 1, 2**35 + 5, 2**53 - 1):
        reader = Reader(var_uint(number))
        assert reader.read_var_uint() == number
        assert reader.done()


def test_truncated_and_overlong_var_uints_are_refused() -> None:
    with pytest.raises(DecodeError, match="truncated"):
        Reader(b"\x80\x80").read_var_uint()
    with pytest.raises(DecodeError, match="53 bits"):
        Reader(b"\xff" * 9).read_var_uint()
    with pytest.raises(DecodeError):
        Reader(b"").read_var_uint()


def test_lengths_are_checked_before_reading() -> None:
    reader = Reader(var_uint(10) + b"abc")
    with pytest.raises(DecodeError, match="past the end"):
        reader.read_var_bytes()
    # A huge claimed length allocates nothing and fails the same way.
    with pytest.raises(DecodeError, match="past the end"):
        Reader(var_uint(2**50)).read_var_bytes()


def test_var_string_prefix_counts_utf8_bytes_not_characters() -> None:
    assert var_string("é😀") == b"\x06" + "é😀".encode()
    assert Reader(var_string("é😀")).read_var_string() == "é😀"
    with pytest.raises(DecodeError, match="UTF-8"):
        Reader(var_bytes(b"\xff\xfe")).read_var_string()


@pytest.mark.parametrize(
    ("number", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (-1, b"\x41"),
        (63, b"\x3f"),
        (64, b"\x80\x01"),
        (-64, b"\xc0\x01"),
    ],
)
def test_var_int_bytes(number: int, encoded: bytes) -> None:
    assert var_int(number) == encoded


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (None, b"\x7e"),
        (True, b"\x78"),
        (False, b"\x79"),
        ("a", b"\x77\x01a"),
        (5, b"\x7d\x05"),
        (5.0, b"\x7d\x05"),  # JS has one number type: an integral float is written as an int
        (1.5, b"\x7b" + struct.pack(">d", 1.5)),
        (2**40, b"\x7b" + struct.pack(">d", 2.0**40)),  # beyond 31 bits: a float, never a BigInt
        ([1, "x"], b"\x75\x02\x7d\x01\x77\x01x"),
        ({"k": None}, b"\x76\x01\x01k\x7e"),
        (b"\x01\x02", b"\x74\x02\x01\x02"),
    ],
)
def test_any_bytes(value: object, encoded: bytes) -> None:
    assert any_bytes(value) == encoded


def test_any_refuses_unknown_types() -> None:
    with pytest.raises(TypeError):
        any_bytes(object())
