"""Granular edits of a Y.Text: turn its content into new text with as few changes as it takes.

Lines are matched first; a block of changed lines that replaces as many lines is diffed
again character by character, so that two people's edits to nearby parts of one line both
survive a merge. pycrdt indexes Y.Text by UTF-8 byte offset, so offsets are counted in
bytes.
"""

from __future__ import annotations

from difflib import SequenceMatcher

from pycrdt import Text

__all__ = ["apply_text"]

# Character diffs are quadratic in the worst case; longer replaced blocks are swapped whole.
_MAX_CHAR_DIFF = 2000


def _byte_offsets(parts: list[str]) -> list[int]:
    offsets = [0]
    for part in parts:
        offsets.append(offsets[-1] + len(part.encode("utf-8")))
    return offsets


def _replace(text: Text, start: int, end: int, new: str) -> None:
    if end > start:
        del text[start:end]
    if new:
        text.insert(start, new)


def _apply_chars(text: Text, base: int, old: str, new: str) -> None:
    old_chars, new_chars = list(old), list(new)
    offsets = _byte_offsets(old_chars)
    matcher = SequenceMatcher(None, old_chars, new_chars, autojunk=False)
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        if tag != "equal":
            _replace(text, base + offsets[i1], base + offsets[i2], new[j1:j2])


def apply_text(text: Text, old: str, new: str) -> None:
    """Edit `text`, whose content is `old`, into `new` (call inside a transaction)."""
    if old == new:
        return
    old_lines, new_lines = old.splitlines(True), new.splitlines(True)
    offsets = _byte_offsets(old_lines)
    matcher = SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        if tag == "equal":
            continue
        removed, added = "".join(old_lines[i1:i2]), "".join(new_lines[j1:j2])
        start, end = offsets[i1], offsets[i2]
        if tag == "replace" and i2 - i1 == j2 - j1 and len(removed) + len(added) <= _MAX_CHAR_DIFF:
            _apply_chars(text, start, removed, added)
        else:
            _replace(text, start, end, added)
