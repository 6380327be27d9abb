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

from pycrdt import Doc

from ..errors import DatastoreError
from .base import Retention, Store, StoredDocument

__all__ = ["Check", "Problem", "Step", "check_rows", "compact_all", "stats", "verify"]

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
    return wrong, doc


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
