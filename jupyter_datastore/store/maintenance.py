"""Looking after a store from outside a server: stats, compaction, checks and export.

Everything goes through the `Store` interface, so it works on every backend, and on a
SQLite store that a server is using at the same time (each step is its own short
transaction, as the server's are). `jupyter-datastore store ...` (cli.py) drives these.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pycrdt import Doc

from ..errors import DatastoreError
from .base import Retention, Store, StoredDocument

if TYPE_CHECKING:
    from ..documents.kinds import DocumentKind

__all__ = ["Problem", "compact_all", "export", "file_paths", "stats", "verify"]

Step = Callable[[str, str], None]
"""Called after each document: its name, and how it went in a few words."""


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


def kind_of_room(name: str) -> DocumentKind | None:
    """The kind of a document room `format:type:fileId`; None for forks and others.

    Imported here: the document kinds bring nbformat and jupyter_server's contents (3 s of
    imports), which `stats` and `compact` do not need."""
    from ..documents.kinds import kind_of

    parts = name.split(":", 2)
    if len(parts) != 3:
        return None
    try:
        return kind_of(parts[0], parts[1])
    except DatastoreError:
        return None


def _check_document(name: str, stored: StoredDocument) -> list[str]:
    """What is wrong with one document's rows, in plain words."""
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
            return wrong
    kind = kind_of_room(name)
    if kind is not None:
        try:
            kind.read(doc)
        except Exception as exc:
            wrong.append(f"the document does not read as a {kind.format}:{kind.type}: {exc}")
    return wrong


async def verify(store: Store, step: Step) -> list[Problem]:
    """Every problem found, the backend's own checks first; an empty list: sound."""
    problems = [Problem(None, detail) for detail in await store.check_integrity()]
    for info in await store.documents():
        try:
            stored = await store.load(info.name)
            wrong = _check_document(info.name, stored) if stored is not None else []
        except DatastoreError as exc:
            wrong = [exc.detail]
        problems += [Problem(info.name, detail) for detail in wrong]
        step(info.name, "; ".join(wrong) or "ok")
    return problems


def file_paths(fileid_db: str | None, root: str) -> dict[str, str]:
    """File id -> path under `root`, from jupyter_server_fileid's database (its `Files`
    table; its managers keep absolute or root-relative paths), if there is one."""
    if not fileid_db or not os.path.exists(fileid_db):
        return {}
    try:
        with sqlite3.connect(f"file:{fileid_db}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT id, path FROM Files").fetchall()
    except sqlite3.Error:
        return {}
    paths = {}
    for file_id, path in rows:
        if os.path.isabs(path):
            relative = os.path.relpath(path, root)
            path = relative if not relative.startswith("..") else os.path.basename(path)
        paths[str(file_id)] = str(path)
    return paths


async def export(
    store: Store, folder: Path, paths: dict[str, str], *, force: bool, step: Step
) -> list[tuple[str, Path]]:
    """Write each document's current content into `folder`; (document, file written)."""
    written: list[tuple[str, Path]] = []
    for info in await store.documents():
        kind = kind_of_room(info.name)
        stored = await store.load(info.name)
        if kind is None or stored is None or not stored.updates:
            step(info.name, "skipped (not a document)")
            continue
        file_id = info.name.split(":", 2)[2]
        relative = paths.get(file_id) or f"{file_id}{_suffix(kind)}"
        target = (folder / relative.lstrip("/")).resolve()
        if folder.resolve() not in target.parents:
            step(info.name, f"skipped (path {relative} leaves the folder)")
            continue
        if target.exists() and not force:
            step(info.name, f"skipped ({target} exists; --force overwrites)")
            continue
        doc: Doc[Any] = Doc()
        doc.apply_update(stored.state() or b"")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(kind.encode(kind.read(doc)))
        written.append((info.name, target))
        step(info.name, f"-> {target}")
    return written


def _suffix(kind: DocumentKind) -> str:
    return ".ipynb" if kind.type == "notebook" else ".txt" if kind.format == "text" else ".bin"
