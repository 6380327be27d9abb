"""How deep a JSON text nests, found without parsing it.

Python's `json` recurses once per level of nesting and raises `RecursionError` (not a
`ValueError`) near 1000 levels, so JSON from a client is scanned first: a regular expression
skips each string whole (escapes included, in linear time, an unterminated string to the
end) and the brackets outside strings are counted, stopping at the first level past the
limit. Pure: text in, a number out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "json_depth_over"]

MAX_JSON_DEPTH = 64
"""Levels of nesting (arrays and objects) accepted in JSON from a client."""

_STRING = r'"[^"\\]*+(?:\\[\s\S][^"\\]*+)*+(?:"|\\?\Z)'
_TOKEN = "(?P<s>" + _STRING + r")|(?P<o>[\[{]+)|(?P<c>[\]}]+)"
_TEXT_TOKENS = re.compile(_TOKEN)
_BYTES_TOKENS = re.compile(_TOKEN.encode())


def json_depth_over(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `text`, read as JSON, nests deeper than `limit` levels."""
    if isinstance(text, bytes | bytearray):
        opening = text.count(b"[") + text.count(b"{")
        matches: Iterator[re.Match[Any]] = _BYTES_TOKENS.finditer(text)
    else:
        opening = text.count("[") + text.count("{")
        matches = _TEXT_TOKENS.finditer(text)
    if opening <= limit:
        return False  # the common case, at C speed
    depth = 0
    for match in matches:
        kind = match.lastgroup
        if kind == "o":
            depth += match.end() - match.start()
            if depth > limit:
                return True
        elif kind == "c":
            depth -= match.end() - match.start()
    return False
