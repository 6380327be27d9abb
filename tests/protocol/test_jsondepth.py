"""The nesting scan that runs before any JSON from a client is parsed: strings skipped whole."""

from __future__ import annotations

import json
import time

import pytest

from jupyter_datastore.protocol.jsondepth import MAX_JSON_DEPTH, json_depth_over


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("text", [nested(MAX_JSON_DEPTH), '{"a": [[1], {"b": []}]}', "1", ""])
def test_shallow_json_passes(text: str) -> None:
    assert not json_depth_over(text)
    assert not json_depth_over(text.encode())


@pytest.mark.parametrize(
    "text", [nested(MAX_JSON_DEPTH + 1), '{"a":' * 65 + "1" + "}" * 65, "[" * 600_000]
)
def test_deep_json_is_found(text: str) -> None:
    assert json_depth_over(text)
    assert json_depth_over(text.encode())


def test_brackets_inside_strings_do_not_count() -> None:
    inside = json.dumps(["[" * 100, '\\"[[[', "{" * 100])
    assert not json_depth_over(inside)
    assert json.loads(inside)  # the scan and the parser agree on where strings end
    escaped = '["\\\\"' + "[" * 70 + "]" * 70 + "]"  # an escaped backslash ends the string
    assert json_depth_over(escaped)


def test_the_scan_is_linear_for_hostile_strings() -> None:
    start = time.perf_counter()
    for text in ('"\\"' * 200_000, '["' + '\\"' * 300_000, '"' * 600_000, "[1]" * 200_000):
        json_depth_over(text)
    assert time.perf_counter() - start < 2
