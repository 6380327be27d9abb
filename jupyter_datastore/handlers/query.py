"""Query parameters and message fields of the REST and WebSocket handlers, read once: each
reader gives a typed value or a `BadRequest` naming the parameter and what it must be."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest

__all__ = ["flag", "number", "whole_number"]


def whole_number(raw: Any, name: str, low: int, high: int) -> int:
    """An integer from `low` to `high`: a string of ASCII digits only (no sign, space or
    `_`), or an int in a JSON message."""
    text = str(raw)[:40]
    digits = isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 20
    if not (digits or (isinstance(raw, int) and not isinstance(raw, bool))):
        raise BadRequest(f'"{name}" must be a whole number, not {text!r}')
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f'"{name}" must be a whole number from {low} to {high}, not {text!r}')
    return value


def number(raw: Any, name: str, low: float, high: float) -> float:
    """A number from `low` to `high`."""
    text = str(raw)[:40]
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BadRequest(f'"{name}" must be a number, not {text!r}') from None
    if isinstance(raw, bool) or not low <= value <= high:
        raise BadRequest(f'"{name}" must be a number from {low:g} to {high:g}, not {text!r}')
    return value


def flag(raw: str | None, name: str, default: bool = False) -> bool:
    """`true` or `false` (absent: `default`)."""
    if raw is None:
        return default
    if raw in ("true", "false"):
        return raw == "true"
    raise BadRequest(f'"{name}" must be true or false, not {raw[:20]!r}')
