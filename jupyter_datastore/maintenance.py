"""Looking after a store's documents as documents: their content checked, exported as files.

What needs no kind of document (stats, compaction, the rows' checks) is the store's own
(`store/maintenance.py`); this adds what needs the document kinds of `documents/`.
`jupyter-datastore store verify|export` (cli.py) drives these.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pycrdt import Doc

from .store import maintenance
from .store.base import Store
from .store.maintenance import Problem, Step

if TYPE_CHECKING:
    from .documents.kinds import DocumentKind
    from .documents.roomid import RoomId

__all__ = ["export", "file_paths", "kind_of_room", "room_of", "verify"]


def room_of(name: str) -> RoomId | None:
    """The room id of a document's rows (`format:type:fileId`); None for forks and others.

    Imported here: the document kinds bring nbformat and jupyter_server's contents (3 s of
    imports), which `stats` and `compact` do not need."""
    from .documents.roomid import RoomId

    return RoomId.try_parse(name)


def kind_of_room(name: str) -> DocumentKind | None:
    """The kind of a document room; None for forks and others."""
    room = room_of(name)
    return None if room is None else room.kind


def _check_kind(name: str, doc: Doc[Any]) -> list[str]:
    """Whether a document reads as its kind says."""
    kind = kind_of_room(name)
    if kind is not None:
        try:
            kind.read(doc)
        except Exception as exc:
            return [f"the document does not read as a {kind.format}:{kind.type}: {exc}"]
    return []


async def verify(store: Store, step: Step) -> list[Problem]:
    """Every problem found: the backend's own checks, each document's rows and content."""
    return await maintenance.verify(store, step, _check_kind)


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
        room = room_of(info.name)
        stored = await store.load(info.name)
        if room is None or stored is None or not stored.updates:
            step(info.name, "skipped (not a document)")
            continue
        kind, file_id = room.kind, room.file_id
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
