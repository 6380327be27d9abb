"""Cell outputs as JupyterLab shows them: stream text with terminal control characters, and a
per-cell size budget.

`StreamText` models one stream output (stdout or stderr) the way a terminal or JupyterLab
renders it: ordinary characters are typed at a cursor and overwrite what is under it, `\\r`
sends the cursor back to the start of the line, `\\b` deletes the character before the cursor
and `\\n` ends the line. Each chunk a kernel sends becomes a single edit of the rendered text,
so the shared notebook's Y.Text can be updated in place instead of being rewritten.

Control characters only ever reach back to the start of the current line, so everything up to
the last newline is final. It is kept apart, as committed parts plus their byte length, and only
the current line is a mutable string: feeding a chunk costs time in proportion to the chunk and
the current line, never to the whole (possibly many megabytes long) output.

Offsets are UTF-8 byte offsets, because that is how pycrdt indexes a Y.Text.

`OutputBudget` counts the bytes a cell's outputs take and says which ones still fit, so that a
runaway loop cannot grow a notebook without bound; `output_size` estimates an output's bytes.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["OutputBudget", "StreamText", "TextEdit", "human_size", "output_size"]

# Runs of carriage returns or backspaces; newlines are handled before these are looked for.
_CONTROL = re.compile(r"\r+|\x08+")
_LINE_END = re.compile(r"\r+\n")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True)
class TextEdit:
    """One change of a text: at byte `start`, remove `delete` bytes, then insert `insert`."""

    start: int
    delete: int
    insert: str


def _utf8_len(text: str) -> int:
    # str.isascii() is O(1) in CPython: ASCII-only strings are flagged as such.
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _clean(text: str) -> str:
    """`text` with lone surrogates (which UTF-8 cannot encode) replaced by U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def _common_prefix(a: str, b: str, start: int) -> int:
    """The length of the common prefix of `a` and `b`, knowing that it is at least `start`.

    Halving a window of slice comparisons costs O(len) at C speed, where a loop over
    characters would run in Python.
    """
    lo, hi = start, min(len(a), len(b))
    if a[lo:hi] == b[lo:hi]:
        return hi
    hi -= 1  # a[:hi + 1] != b[:hi + 1]; the answer is in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _write(line: str, col: int, run: str) -> tuple[str, int]:
    """Type `run` (no control characters) at `col`, overwriting what is there."""
    end = col + len(run)
    if col == len(line):
        return line + run, end
    return line[:col] + run + line[end:], end


def _type(line: str, col: int, text: str, touched: int) -> tuple[str, int, int]:
    """Apply `text` (no newline) to `line` with the cursor at `col`.

    Returns the new line, the new cursor and `touched` lowered to the first position that
    may have changed.
    """
    if not text:
        return line, col, touched
    if "\r" not in text:
        if "\x08" not in text:
            line, end = _write(line, col, text)
            return line, end, min(touched, col)
        # Without a carriage return the cursor cannot go further back than one character per
        # backspace: work on that end of the line only, so that a long line is not copied
        # at every step.
        base = max(col - text.count("\x08"), 0)
        if base:
            work, col, inner = _type(line[base:], col - base, text, max(touched - base, 0))
            return line[:base] + work, col + base, min(touched, inner + base)
    pos = 0
    for match in _CONTROL.finditer(text):
        begin = match.start()
        if begin > pos:
            touched = min(touched, col)
            line, col = _write(line, col, text[pos:begin])
        if text[begin] == "\r":
            col = 0
        else:
            back = min(match.end() - begin, col)
            if back:
                touched = min(touched, col - back)
                line = line[: col - back] + line[col:]
                col -= back
        pos = match.end()
    if pos < len(text):
        touched = min(touched, col)
        line, col = _write(line, col, text[pos:])
    return line, col, touched


class StreamText:
    """The rendered text of one stream output, fed chunk by chunk.

    Semantics (those of JupyterLab's carriage return and backspace handling, with a cursor):
    ordinary characters overwrite the character under the cursor or are appended; `\\r` moves
    the cursor to the start of the line; `\\b` deletes the character before the cursor, never
    crossing a newline; `\\n` ends the line, keeping all of it, even what is right of the cursor.
    The cursor is kept between chunks, so `\\r` and `\\n` split over two chunks act as `\\r\\n`.
    """

    def __init__(self, text: str = "") -> None:
        text = _clean(text)
        cut = text.rfind("\n") + 1
        committed = text[:cut]
        self._parts: list[str] = [committed] if committed else []
        self._committed_bytes = _utf8_len(committed)
        self._line = text[cut:]
        self._line_bytes = _utf8_len(self._line)
        self._col = len(self._line)

    @property
    def text(self) -> str:
        """The whole rendered text."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        committed = self._parts[0] if self._parts else ""
        return committed + self._line

    @property
    def size(self) -> int:
        """The UTF-8 length of `text`."""
        return self._committed_bytes + self._line_bytes

    def feed(self, chunk: str) -> TextEdit | None:
        """Apply a chunk of raw stream text; return the edit from the old text to the new one.

        The edit starts at the first character that differs, removes the rest of the old text
        and inserts the rest of the new one; it is None when the text did not change (a lone
        `\\r`, say). It never starts inside the committed text, nor inside a character.
        """
        if not chunk:
            return None
        chunk = _clean(chunk)
        old = self._line
        first_newline = chunk.find("\n")
        head = chunk if first_newline < 0 else chunk[:first_newline]
        line, col, touched = _type(old, self._col, head, len(old))
        committed = ""
        if first_newline >= 0:
            pieces = [line, "\n"]
            last_newline = chunk.rfind("\n")
            middle = chunk[first_newline + 1 : last_newline + 1]
            if "\r" in middle:
                # Carriage returns just before a newline change nothing (Windows line ends).
                middle = middle.replace("\r\n", "\n")
                if "\r\n" in middle:
                    middle = _LINE_END.sub("\n", middle)
            if "\r" in middle or "\x08" in middle:
                for whole in middle[:-1].split("\n"):
                    if "\r" in whole or "\x08" in whole:
                        whole = _type("", 0, whole, 0)[0]
                    pieces.append(whole)
                    pieces.append("\n")
            elif middle:
                pieces.append(middle)
            committed = "".join(pieces)
            line, col, _ = _type("", 0, chunk[last_newline + 1 :], 0)
        self._col = col
        new_tail = committed + line if committed else line
        # old[:touched] is untouched, so the two agree at least that far.
        same = _common_prefix(old, new_tail, min(touched, len(new_tail)))
        if same == len(old) == len(new_tail):
            return None
        old_bytes = self._line_bytes
        if same == len(old):
            same_bytes = old_bytes
        elif same <= len(old) // 2:
            same_bytes = _utf8_len(old[:same])
        else:
            same_bytes = old_bytes - _utf8_len(old[same:])
        insert = new_tail[same:]
        edit = TextEdit(self._committed_bytes + same_bytes, old_bytes - same_bytes, insert)
        total = self._committed_bytes + same_bytes + _utf8_len(insert)
        if committed:
            self._parts.append(committed)
            self._committed_bytes += _utf8_len(committed)
        self._line = line
        self._line_bytes = total - self._committed_bytes
        return edit


def output_size(output: dict[str, Any]) -> int:
    """About how many bytes an nbformat output takes.

    A stream output counts the UTF-8 length of its text; any other output the UTF-8 length of
    its compact JSON encoding.
    """
    if output.get("output_type") == "stream":
        text = output.get("text")
        if isinstance(text, list) and all(isinstance(part, str) for part in text):
            text = "".join(text)
        if isinstance(text, str):
            return len(text.encode("utf-8", "surrogatepass"))
    try:
        encoded = json.dumps(output, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        encoded = repr(output)
    return len(encoded.encode("utf-8", "surrogatepass"))


def human_size(size: int) -> str:
    """A short human size in powers of 1024: "512 B", "1.5 KB", "10 MB", "56.7 MB"."""
    if size < 1024:
        return f"{max(size, 0)} B"
    value = float(size)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if round(value, 1) < 1024 or unit == "GB":
            break
    text = f"{value:,.1f}"
    if text.endswith(".0"):
        text = text[:-2]
    return f"{text} {unit}"


class OutputBudget:
    """How many bytes of output a cell may still add, and what was left out.

    A `limit` of 0 or less means no limit.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.dropped_outputs = 0
        self.dropped_bytes = 0

    @property
    def unlimited(self) -> bool:
        return self.limit <= 0

    def admit(self, size: int) -> bool:
        """Count an output of `size` bytes if it fits; count it as dropped if it does not."""
        size = max(size, 0)
        if self.unlimited or self.used + size <= self.limit:
            self.used += size
            return True
        self.drop(size, outputs=1)
        return False

    def room(self) -> int:
        """Bytes still free (`sys.maxsize` when unlimited)."""
        if self.unlimited:
            return sys.maxsize
        return max(self.limit - self.used, 0)

    def release(self, size: int) -> None:
        """An output was removed or shrunk by `size` bytes."""
        self.used = max(self.used - max(size, 0), 0)

    def drop(self, size: int, outputs: int = 0) -> None:
        """Count `size` bytes (and `outputs` whole outputs) as not shown."""
        self.dropped_bytes += max(size, 0)
        self.dropped_outputs += max(outputs, 0)

    def reset(self) -> None:
        """The outputs were cleared: nothing is used and nothing was dropped."""
        self.used = 0
        self.dropped_outputs = 0
        self.dropped_bytes = 0

    @property
    def exceeded(self) -> bool:
        """Whether anything was dropped since the last reset."""
        return self.dropped_outputs > 0 or self.dropped_bytes > 0

    def notice(self) -> str:
        """The text that marks what was cut ("" when nothing was)."""
        if not self.exceeded:
            return ""
        size = human_size(self.dropped_bytes)
        if self.dropped_outputs:
            plural = "" if self.dropped_outputs == 1 else "s"
            what = f"{self.dropped_outputs:,} more output{plural} ({size}) not shown"
        else:
            what = f"{size} more not shown"
        if self.unlimited:
            return f"[output truncated: {what}]"
        return (
            f"[output truncated: {what}; the limit is {human_size(self.limit)} of output per cell]"
        )
