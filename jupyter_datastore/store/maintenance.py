"""Looking after a store from outside a server: stats, compaction and checks of its rows.

Everything goes through the `Store` interface, so it works on every backend, and on a
SQLite store that a server is using at the same time (each step is its own short
transaction, as the server's are). The store knows no kinds of document: the checks of a
document's content and the export into files are `jupyter_datastore.maintenance`'s, and
`jupyter-datastore store ...` (cli.py) drives both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, get_state, get_update

from ..errors import DatastoreError
from ..protocol.lib0 import DecodeError, Reader, var_uint
from .base import Retention, Store, StoredDocument, merge

__all__ = [
    "Check",
    "Problem",
    "Step",
    "check_rows",
    "compact_all",
    "not_integrated",
    "stats",
    "verify",
]

Step = Callable[[str, str], None]
"""Called after each document: its name, and how it went in a few words."""
Check = Callable[[str, "Doc[Any]"], list[str]]
"""What is wrong with a document (its name, its content), beyond its rows."""


@dataclass(frozen=True)
class Problem:
    document: str | None
    """The document it concerns (None: the store as a whole)."""
    detail: str

    def __str__(self) -> str:
        return f"{self.document}: {self.detail}" if self.document else self.detail


async def stats(store: Store, top: int = 10) -> dict[str, Any]:
    documents = await store.documents()
    largest = sorted(documents, key=lambda d: d.size, reverse=True)[:top]
    return {
        "location": store.location(),
        "session_id": store.session_id,
        "size_on_disk": await store.size_on_disk(),
        "documents": len(documents),
        "rows": sum(d.rows for d in documents),
        "bytes": sum(d.size for d in documents),
        "largest": [
            {"name": d.name, "rows": d.rows, "bytes": d.size, "last_seq": d.last_seq}
            for d in largest
        ],
        **await store.counts(),
    }


@dataclass
class Compacted:
    rows_before: int = 0
    rows_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    failed: list[Problem] = field(default_factory=list)


async def compact_all(store: Store, retention: Retention, step: Step) -> Compacted:
    before = {d.name: d for d in await store.documents()}
    result = Compacted()
    for name in before:
        try:
            removed = await store.compact(name, retention)
            step(name, f"{removed} rows merged")
        except DatastoreError as exc:
            result.failed.append(Problem(name, exc.detail))
            step(name, f"failed: {exc.detail}")
    after = {d.name: d for d in await store.documents()}
    result.rows_before = sum(d.rows for d in before.values())
    result.bytes_before = sum(d.size for d in before.values())
    result.rows_after = sum(d.rows for d in after.values())
    result.bytes_after = sum(d.size for d in after.values())
    return result


def check_rows(stored: StoredDocument) -> tuple[list[str], Doc[Any] | None]:
    """What is wrong with one document's rows, in plain words, and the document they make
    (None when an update does not apply)."""
    wrong: list[str] = []
    seqs = [seq for seq, _ in stored.updates]
    if seqs and seqs[0] < 1:
        wrong.append(f"a sequence number below 1 ({seqs[0]})")
    for marker in ("saved_seq", "saving_seq"):
        seq = getattr(stored, marker)
        if seq is not None and seqs and seq > seqs[-1]:
            wrong.append(f"{marker} {seq} is after the last update ({seqs[-1]})")
        elif seq is not None and seqs and seq not in seqs and seq >= seqs[0]:
            wrong.append(f"{marker} {seq} falls inside a stored row, not at its end")
    doc: Doc[Any] = Doc()
    for seq, update in stored.updates:
        try:
            doc.apply_update(update)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # pyo3 panics are BaseException
            wrong.append(f"update {seq} is not a valid Yjs update ({exc})")
            return wrong, None
    try:
        wrong += not_integrated(stored.updates, doc)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3 panics are BaseException
        wrong.append(f"its rows do not merge into one update ({exc})")
    return wrong, doc


# Yjs keeps an update whose dependencies it has not seen (the change before it from the same
# client, or an item of another client it is inserted next to or deletes) *pending*: applying
# it raises nothing, and the document silently lacks it. A lost row in the middle of a
# document's rows hides that way, unless what the rows hold is compared with what the
# document integrated. pycrdt exposes neither a document's pending structs nor its pending
# delete set, so these helpers find them from the outside: `get_update` (what an update holds
# beyond a state vector) and `get_state` (a state vector that stops at a client's first gap,
# as Yjs's does), reading only the header of the first client's structs and the delete set.

_ALL = 0xFFFFFFFF
"""A clock past every change (yrs clocks are 32-bit): a state vector entry that leaves none
of that client's changes in a diff."""

Ranges = list[tuple[int, int]]
"""Clock ranges [start, end) of one client."""


def not_integrated(rows: list[tuple[int, bytes]], doc: Doc[Any]) -> list[str]:
    """What the rows hold that `doc` (the rows applied in order) did not integrate, in plain
    words: changes waiting for changes that no row holds (a lost or overwritten row), and
    deletions of items that no row holds. Empty when every row applied in full."""
    if not rows:
        return []
    merged = merge([update for _, update in rows])
    have = _state_vector(doc.get_state())
    # Each call shows the first client (of those not masked yet) with changes the document
    # lacks; it is then masked with a clock past everything. Usually a single call: none.
    mask = dict(have)
    waiting: list[int] = []
    while (first := _first_group(merged, mask)) is not None:
        waiting.append(first[0])
        mask[first[0]] = _ALL
    everyone = dict.fromkeys(mask, _ALL)  # every client with changes in the rows
    wrong: list[str] = []
    for client in waiting:
        reached = have.get(client, 0)
        gaps, pending = _pending_ranges(merged, client, reached, everyone)
        count = sum(end - start for start, end in pending)
        what = (
            f"clock {_ranges(gaps)} of the same client, which no row holds"
            if gaps
            else "changes of other clients that no row holds"
        )
        only = {**everyone, client: reached}
        seq = next((s for s, u in rows if _first_group(u, only)), None)
        wrong.append(
            f"{count} changes of client {client} (clock {_ranges(pending)}) are waiting for "
            f"{what}: a row before seq {seq} (the first that did not apply in full) is lost "
            "or was overwritten"
        )
    for client, ranges in _deletes_beyond(_delete_set(merged, everyone), have, waiting).items():
        count = sum(end - start for start, end in ranges)
        seq = next(
            (s for s, u in rows if client in _deletes_beyond(_delete_set(u, everyone), have, [])),
            None,
        )
        wrong.append(
            f"deletions of {count} items of client {client} (clock {_ranges(ranges)}) that no "
            f"row holds, first in seq {seq}: a row before it is lost or was overwritten"
        )
    return wrong


def _state_vector(state: bytes) -> dict[int, int]:
    reader = Reader(state)
    return {reader.read_var_uint(): reader.read_var_uint() for _ in range(reader.read_var_uint())}


def _encode_state_vector(state: dict[int, int]) -> bytes:
    return var_uint(len(state)) + b"".join(var_uint(c) + var_uint(k) for c, k in state.items())


def _first_group(update: bytes, state: dict[int, int]) -> tuple[int, int] | None:
    """The client and first clock of the first client's changes in `update` beyond `state`
    (None: there are none)."""
    reader = Reader(get_update(update, _encode_state_vector(state)))
    if reader.read_var_uint() == 0:
        return None
    reader.read_var_uint()  # how many structs
    return reader.read_var_uint(), reader.read_var_uint()


def _pending_ranges(
    merged: bytes, client: int, reached: int, everyone: dict[int, int]
) -> tuple[Ranges, Ranges]:
    """The clock ranges of `client` after `reached` (where the document stopped) that no
    row holds (gaps), and those that rows hold after them (pending)."""
    gaps: Ranges = []
    pending: Ranges = []
    start = reached
    while (first := _first_group(merged, {**everyone, client: start})) is not None:
        clock = first[1]
        if clock > start:
            gaps.append((start, clock))
        # Its changes from `clock` on, behind a filler (one GC struct over 0..clock-1): the
        # state vector of the two stops at the next gap.
        rest = get_update(merged, _encode_state_vector({**everyone, client: clock}))
        if clock:
            filler = var_uint(1) + var_uint(1) + var_uint(client) + b"\0\0" + var_uint(clock)
            rest = merge([filler + b"\0", rest])
        end = _state_vector(get_state(rest)).get(client, clock)
        if end <= clock:  # not expected; never loop on it
            break
        pending.append((clock, end))
        start = end
    return gaps, pending


def _delete_set(update: bytes, everyone: dict[int, int]) -> dict[int, Ranges]:
    """The update's delete set, client -> ranges (empty if `everyone` lacks one of the
    update's clients: a diff keeps the whole delete set, after the structs it leaves)."""
    reader = Reader(get_update(update, _encode_state_vector(everyone)))
    if reader.read_var_uint() != 0:
        return {}
    deletes: dict[int, Ranges] = {}
    try:
        for _ in range(reader.read_var_uint()):
            client = reader.read_var_uint()
            ranges = deletes.setdefault(client, [])
            for _ in range(reader.read_var_uint()):
                clock = reader.read_var_uint()
                ranges.append((clock, clock + reader.read_var_uint()))
    except DecodeError:
        return {}
    return deletes


def _deletes_beyond(
    deletes: dict[int, Ranges], have: dict[int, int], waiting: list[int]
) -> dict[int, Ranges]:
    """The deletions of items past what the document holds, but for clients whose changes
    are waiting (their own report covers them)."""
    beyond: dict[int, Ranges] = {}
    for client, ranges in deletes.items():
        reached = have.get(client, 0)
        lacking = [(max(start, reached), end) for start, end in ranges if end > reached]
        if lacking and client not in waiting:
            beyond[client] = lacking
    return beyond


def _ranges(ranges: Ranges, shown: int = 5) -> str:
    text = ", ".join(f"{s}..{e - 1}" if e - s > 1 else str(s) for s, e in ranges[:shown])
    return text + (f" and {len(ranges) - shown} more" if len(ranges) > shown else "")


async def verify(store: Store, step: Step, check: Check | None = None) -> list[Problem]:
    """Every problem found, the backend's own checks first; an empty list: sound. `check`
    looks further into each document whose rows make one."""
    problems = [Problem(None, detail) for detail in await store.check_integrity()]
    for info in await store.documents():
        try:
            stored = await store.load(info.name)
            wrong, doc = check_rows(stored) if stored is not None else ([], None)
            if doc is not None and check is not None:
                wrong += check(info.name, doc)
        except DatastoreError as exc:
            wrong = [exc.detail]
        problems += [Problem(info.name, detail) for detail in wrong]
        step(info.name, "; ".join(wrong) or "ok")
    return problems
