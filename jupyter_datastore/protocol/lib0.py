"""lib0 binary encoding, as used by Yjs and y-protocols: bounded reads, exact writes.

Every read checks the remaining length first and raises `DecodeError` instead of reading
past the end, so a truncated or hostile buffer can never make us allocate or loop on
lengths it merely claims.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = [
    "DecodeError",
    "Reader",
    "any_bytes",
    "var_bytes",
    "var_int",
    "var_string",
    "var_uint",
]

# lib0 reads variable-length unsigned integers up to 2**53 (a JS safe integer).
_MAX_VAR_UINT_BYTES = 8
_BITS31 = 0x7FFFFFFF


class DecodeError(ValueError):
    """The bytes are not a well-formed lib0 value (truncated, overlong or out of range)."""


class Reader:
    """Reads lib0 values from a buffer, never past its end."""

    __slots__ = ("_data", "pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self.pos

    def done(self) -> bool:
        return self.pos >= len(self._data)

    def read_var_uint(self) -> int:
        data = self._data
        pos = self.pos
        end = len(data)
        num = 0
        shift = 0
        for _ in range(_MAX_VAR_UINT_BYTES):
            if pos >= end:
                raise DecodeError("truncated variable-length integer")
            byte = data[pos]
            pos += 1
            num |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos
                return num
            shift += 7
        raise DecodeError("variable-length integer is longer than 53 bits")

    def read_bytes(self, length: int) -> bytes:
        if length > len(self._data) - self.pos:
            raise DecodeError(f"length {length} runs past the end of the message")
        start = self.pos
        self.pos = start + length
        return self._data[start : self.pos]

    def read_var_bytes(self) -> bytes:
        return self.read_bytes(self.read_var_uint())

    def read_var_string(self) -> str:
        raw = self.read_var_bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("string is not valid UTF-8") from exc


_SMALL_UINTS = tuple(bytes((n,)) for n in range(0x80))


def var_uint(num: int) -> bytes:
    """Encode a non-negative integer as a lib0 varuint."""
    if num < 0x80:
        return _SMALL_UINTS[num]
    if num < 0x4000:
        return bytes((0x80 | (num & 0x7F), num >> 7))
    if num < 0x200000:
        return bytes((0x80 | (num & 0x7F), 0x80 | ((num >> 7) & 0x7F), num >> 14))
    out = bytearray()
    while num >= 0x80:
        out.append(0x80 | (num & 0x7F))
        num >>= 7
    out.append(num)
    return bytes(out)


def var_int(num: int) -> bytes:
    """Encode a signed integer as a lib0 varint (sign in bit 6 of the first byte)."""
    negative = num < 0
    num = -num if negative else num
    out = bytearray()
    out.append((0x80 if num > 0x3F else 0) | (0x40 if negative else 0) | (num & 0x3F))
    num >>= 6
    while num > 0:
        out.append((0x80 if num > 0x7F else 0) | (num & 0x7F))
        num >>= 7
    return bytes(out)


def var_bytes(data: bytes) -> bytes:
    return var_uint(len(data)) + data


def var_string(text: str) -> bytes:
    """Length-prefixed UTF-8; the prefix counts bytes, not characters."""
    raw = text.encode("utf-8")
    return var_uint(len(raw)) + raw


def any_bytes(value: Any) -> bytes:
    """Encode a JSON-like value the way lib0's `writeAny` does for the same JS value.

    Integral numbers within 31 bits use the compact varint form, every other number is a
    float64: JavaScript reads both as a Number, never as a BigInt.
    """
    out = bytearray()
    _write_any(out, value)
    return bytes(out)


def _write_any(out: bytearray, value: Any) -> None:
    if value is None:
        out.append(126)
    elif value is True:
        out.append(120)
    elif value is False:
        out.append(121)
    elif isinstance(value, str):
        out.append(119)
        out += var_string(value)
    elif isinstance(value, int):
        if -_BITS31 <= value <= _BITS31:
            out.append(125)
            out += var_int(value)
        else:
            out.append(123)
            out += struct.pack(">d", float(value))
    elif isinstance(value, float):
        if value.is_integer() and -_BITS31 <= value <= _BITS31:
            out.append(125)
            out += var_int(int(value))
        else:
            out.append(123)
            out += struct.pack(">d", value)
    elif isinstance(value, dict):
        out.append(118)
        out += var_uint(len(value))
        for key, item in value.items():
            out += var_string(str(key))
            _write_any(out, item)
    elif isinstance(value, (list, tuple)):
        out.append(117)
        out += var_uint(len(value))
        for item in value:
            _write_any(out, item)
    elif isinstance(value, (bytes, bytearray)):
        out.append(116)
        out += var_bytes(bytes(value))
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as a Yjs value")
