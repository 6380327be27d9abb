"""Which rows of a document's log to merge: a pure plan, the same for every backend.

A row is an update and the time it was stored; the boundary after each row is a point in
the document's history. Compaction keeps the history useful and the store small:

- rows older than `Retention.history` are merged into one (the document's base);
- within the history, the rows of each `Retention.step` are merged into one, so a burst of
  typing is one point in time, not a thousand;
- the rows of the step now under way are left alone (they are still being written);
- a boundary that a save refers to (`keep`) is never merged away: the state the file holds
  must stay a prefix of the log.

Merging consecutive rows keeps every Yjs item and id, so clients that synced before a
compaction merge cleanly after it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from .base import Retention

__all__ = ["Run", "plan"]

Run = tuple[int, int]
"""The first and last sequence number of rows to merge into one."""


def plan(
    rows: Sequence[tuple[int, float]], keep: Collection[int], retention: Retention, now: float
) -> list[Run]:
    """Runs of two or more consecutive rows to merge; `rows` are (seq, time) in seq order."""
    runs: list[Run] = []
    start: int | None = None
    last = 0
    count = 0
    bucket: object = None
    current = _bucket(now, retention, now)

    def close() -> None:
        nonlocal start, count
        if start is not None and count > 1:
            runs.append((start, last))
        start, count = None, 0

    for seq, time in rows:
        key = _bucket(time, retention, now)
        if isinstance(key, int) and isinstance(current, int) and key >= current:
            # the step under way, and anything after it: left alone
            close()
            continue
        if start is not None and key != bucket:
            close()
        if start is None:
            start, bucket = seq, key
        last, count = seq, count + 1
        if seq in keep:
            close()
    close()
    return runs


def _bucket(time: float, retention: Retention, now: float) -> object:
    """Rows of one bucket merge together: all beyond the history, else one per step."""
    if now - time >= retention.history:
        return "base"
    if retention.step <= 0:
        return ("row", time)  # no thinning: every row stays a point, until the history ends
    return int(max(time, now - retention.history) // retention.step)
