"""Documents over GraphQL: the open documents and their peers, a notebook's cells, edits
of cells as the caller's own changes, undo and redo, saving, and a notebook's changes live.

Decided as REST and the room WebSocket decide: viewer on a document to read it or watch it,
editor to change, save, undo or redo. A document the caller may not view is left out of
`documents`, and a path they name gets the refusal REST gives for it.

An edit here is the caller's change, made exactly as one from a client of theirs: in the
room's live document, in a transaction of their undo history (`Room.document(user=...)`),
so that REST undo, the room's per-user undo and `undo` here take it back, and it is
broadcast to every peer of the room (persisted first, as any change). The room is opened
for the edit if it is not open (held while the edit is made, then freed when idle, as
usual).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import strawberry
from pycrdt import Array, ArrayEvent, Doc, Map, MapEvent, Text
from strawberry.scalars import JSON

from ..auth import Role
from ..datastore import Datastore
from ..documents.kinds import KINDS, kind_of
from ..documents.notebook import new_output
from ..documents.roomid import RoomId
from ..documents.text import apply_text
from ..errors import BadRequest, Conflict, DatastoreError, Forbidden, NotFound, Unavailable
from ..rooms import Room
from .context import Caller, Info
from .streams import Pipe

__all__ = ["CellWatcher", "Mutation", "Query", "Subscription"]

log = logging.getLogger(__name__)

GRAPHQL = "graphql"
"""The room origin of the changes made through GraphQL (each attributed to its caller)."""
MAX_UNDO_STEPS = 100
"""As REST: a room keeps at most 100 steps per user."""
_NOTEBOOK = kind_of("json", "notebook")


# --- types ---


@strawberry.type(description="Someone connected to an open document (all their connections).")
class Peer:
    name: str | None = strawberry.field(
        description="The user's name (null: a connection that names no one)."
    )
    display_name: str | None = strawberry.field(
        description="The name their client shows (from its awareness), if it shows one."
    )
    color: str | None = strawberry.field(
        description="Their cursor color (from their client's awareness), if it shows one."
    )
    connections: int = strawberry.field(description="Their connections to the document.")


@strawberry.type(description="A document open on the server now (its room), and who is in it.")
class Document:
    path: str
    file_id: str
    room_id: str = strawberry.field(description="The room's id: format:type:fileId.")
    peer_count: int = strawberry.field(description="Connections to the room.")
    peers: list[Peer]


@strawberry.type(description="A notebook cell, as the live document (or the file) holds it.")
class Cell:
    id: str
    cell_type: str = strawberry.field(description="code, markdown or raw")
    source: str
    outputs: JSON = strawberry.field(description="The outputs, as nbformat writes them.")
    execution_count: int | None
    execution_state: str | None = strawberry.field(
        description="A code cell's state in the open document: running (its run is under "
        "way: JupyterLab shows [*]) or idle; null when read from the file."
    )
    metadata: JSON


@strawberry.type(description="A notebook's cells.")
class Notebook:
    path: str
    live: bool = strawberry.field(
        description="Read from the open document (true) or from the file (false)."
    )
    cells: list[Cell]


@strawberry.enum(description="The kind of a cell a notebook can hold.")
class CellType(Enum):
    CODE = "code"
    MARKDOWN = "markdown"
    RAW = "raw"


@strawberry.enum(description="What changed in a cell.")
class CellChangeKind(Enum):
    INSERTED = "inserted"
    MOVED = "moved"
    DELETED = "deleted"
    SOURCE = "source"
    OUTPUTS = "outputs"
    METADATA = "metadata"
    EXECUTION_COUNT = "execution_count"


@strawberry.type(description="One change of one cell of a notebook, as it happened.")
class CellChange:
    kind: CellChangeKind
    cell_id: str
    index: int = strawberry.field(
        description="The cell's position after the change (deleted: where it was)."
    )
    cell_type: str | None = strawberry.field(
        default=None, description="Given for an inserted cell."
    )
    source: str | None = strawberry.field(
        default=None, description="The new source (source, inserted)."
    )
    outputs: JSON | None = strawberry.field(
        default=None, description="The new outputs (outputs, inserted)."
    )
    execution_count: int | None = strawberry.field(
        default=None, description="The new count (execution_count, inserted; null: none)."
    )
    metadata: JSON | None = strawberry.field(
        default=None, description="The new metadata (metadata, inserted)."
    )


@strawberry.type(description="The caller's undo history in a document after an undo or redo.")
class UndoResult:
    steps: int = strawberry.field(description="Steps undone or redone (fewer: it ran out).")
    can_undo: bool
    can_redo: bool


@strawberry.type(description="A fork of a document: a copy edited apart (see the fork API).")
class Fork:
    id: str
    room_id: str = strawberry.field(description="The room the fork was made from.")
    title: str
    description: str
    synchronize: bool = strawberry.field(description="Whether it follows its root's changes.")


@strawberry.type(description="A point in a document's stored history (a timeline's point).")
class HistoryPoint:
    seq: int = strawberry.field(description="The document's state after update `seq`.")
    time: float = strawberry.field(description="When it was stored (Unix seconds).")


# --- reading ---


def _number(value: Any) -> int | None:
    """An execution count as Y holds it (a float once synced), as an int."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _cell(cell: dict[str, Any], execution_state: Any = None) -> Cell:
    return Cell(
        id=str(cell.get("id", "")),
        cell_type=str(cell.get("cell_type", "code")),
        source=str(cell.get("source", "")),
        outputs=cell.get("outputs", []),
        execution_count=_number(cell.get("execution_count")),
        execution_state=execution_state if isinstance(execution_state, str) else None,
        metadata=cell.get("metadata", {}),
    )


def _peers(room: Room) -> list[Peer]:
    """The room's peers, one per user, with what their clients show of them."""
    found: dict[str | None, Peer] = {}
    for connection, user in list(room.peers.items()):
        peer = found.setdefault(user, Peer(name=user, display_name=None, color=None, connections=0))
        peer.connections += 1
        for state in room.awareness.states_of(connection):
            shown = state.get("user") if isinstance(state, dict) else None
            if isinstance(shown, dict):
                name = shown.get("display_name") or shown.get("name")
                color = shown.get("color")
                peer.display_name = name if isinstance(name, str) else peer.display_name
                peer.color = color if isinstance(color, str) else peer.color
    return list(found.values())


def _open_room(datastore: Datastore, name: str) -> Room | None:
    """The room `name` if it is open now and holds a document."""
    room = datastore.rooms.opened(name)
    return room if room is not None and name in datastore.documents.sessions else None


def _notebook_path(caller: Caller, path: str, needed: Role, operation: str) -> str:
    """The real path of a notebook the caller has `needed` on (the role is decided first,
    as REST's gate does; then a path that names no notebook is a bad request)."""
    real = caller.require(path, needed, operation)
    if not real.endswith(".ipynb"):
        raise BadRequest(f"{real or '/'} is not a notebook (.ipynb)")
    return real


def _known_room(datastore: Datastore, real: str) -> str | None:
    """The notebook room of `real` if its file has an id (none: never opened)."""
    file_id = datastore.ids.file_id(real)
    return None if file_id is None else str(RoomId.notebook(file_id))


# --- changing cells, as the caller ---


def _cells(doc: Doc[Any]) -> Array[Any]:
    cells: Array[Any] = doc.get("cells", type=Array)
    return cells


def _index_of(cells: Array[Any], cell_id: str) -> int:
    for index, cell in enumerate(cells):
        if isinstance(cell, Map) and cell.get("id") == cell_id:
            return index
    raise NotFound(f"the notebook has no cell with id {cell_id!r}")


def _check_index(index: int, size: int, what: str) -> None:
    if not 0 <= index <= size:
        raise BadRequest(f"{what} must be from 0 to {size}, not {index}")


def _y_cell(cell: dict[str, Any]) -> Map[Any]:
    """A cell as jupyter_ydoc's schema holds it (a copy keeps every key it had)."""
    ycell: dict[str, Any] = {
        **cell,
        "source": Text(str(cell.get("source", ""))),
        "metadata": Map(cell.get("metadata") or {}),
    }
    if cell.get("cell_type") == "code":
        ycell["outputs"] = Array([new_output(o) for o in cell.get("outputs") or []])
    return Map(ycell)


def _read_cell(doc: Doc[Any], index: int) -> Cell:
    return _cell(_data(_cells(doc)[index]))


async def _edit(
    caller: Caller, path: str, operation: str, change: Callable[[Doc[Any]], Any]
) -> Any:
    """Make `change` in the notebook's live document as the caller's own change; its result
    once the change is durable (and sent to every peer)."""
    datastore = caller.datastore
    real = _notebook_path(caller, path, Role.EDITOR, operation)
    name = await datastore.documents.notebook_room(real)
    async with datastore.rooms.hold(name) as room:
        if room.fault is not None:
            raise Unavailable(room.fault)
        if room.read_only is not None:
            raise Conflict(f"the document takes no changes: {room.read_only}")
        with room.document(GRAPHQL, user=caller.user) as doc:
            result = change(doc)
        await room.flushed()
    return result


# --- watching a notebook's cells ---


def _data(cell: Any) -> dict[str, Any]:
    """A Y cell as plain data ({} for what is no cell)."""
    data = cell.to_py() if isinstance(cell, Map) else None
    return data if isinstance(data, dict) else {}


def _cell_id(cell: Any) -> str:
    return str(cell.get("id", "")) if isinstance(cell, Map) else ""


@dataclass
class _Seen:
    """What one transaction of the watched copy changed, read in its observer."""

    delta: list[dict[str, Any]] | None
    """The cells list's change, inserted cells as their ids (None: not changed)."""
    touched: list[tuple[int, str | None, frozenset[str]]]
    """Changes inside cells: the cell's index, the key changed under it (None: the cell's
    own keys, given as the third item)."""


class CellWatcher:
    """A copy of a notebook that turns each update into the `CellChange`s it makes: a
    pycrdt observer on the copy's cells, which follow the room's durable changes."""

    def __init__(self, state: bytes) -> None:
        self.doc: Doc[Any] = Doc()
        self.doc.apply_update(state)
        self.cells = _cells(self.doc)
        self.ids = [_cell_id(cell) for cell in self.cells]
        self._seen = _Seen(None, [])
        self._subscription = self.cells.observe_deep(self._observe)

    def close(self) -> None:
        self.cells.unobserve(self._subscription)

    def _observe(self, events: list[Any]) -> None:
        for event in events:
            path = list(event.path)
            if not path and isinstance(event, ArrayEvent):
                delta: list[dict[str, Any]] = event.delta  # type: ignore[attr-defined]
                self._seen.delta = [
                    {"insert": [_cell_id(c) for c in d["insert"]]} if "insert" in d else dict(d)
                    for d in delta
                ]
            elif path and isinstance(path[0], int):
                key = path[1] if len(path) > 1 and isinstance(path[1], str) else None
                keys: frozenset[str] = frozenset()
                if key is None and isinstance(event, MapEvent):
                    keys = frozenset(event.keys)  # type: ignore[attr-defined]
                self._seen.touched.append((path[0], key, keys))

    def apply(self, update: bytes) -> list[CellChange]:
        self._seen = _Seen(None, [])
        self.doc.apply_update(update)
        seen, before = self._seen, self.ids
        self.ids = [_cell_id(cell) for cell in self.cells]
        deleted: dict[str, int] = {}
        inserted: dict[str, int] = {}
        old = new = 0
        for step in seen.delta or []:
            if "retain" in step:
                old, new = old + step["retain"], new + step["retain"]
            elif "delete" in step:
                for offset in range(step["delete"]):
                    deleted[before[old + offset]] = old + offset
                old += step["delete"]
            elif "insert" in step:
                for cell_id in step["insert"]:
                    inserted[cell_id] = new
                    new += 1
        changes = [
            CellChange(kind=CellChangeKind.DELETED, cell_id=cell_id, index=index)
            for cell_id, index in deleted.items()
            if cell_id not in inserted
        ]
        for cell_id, index in inserted.items():
            if cell_id in deleted:
                changes.append(self._change(CellChangeKind.MOVED, index))
            else:
                changes.append(self._change(CellChangeKind.INSERTED, index))
        done: set[tuple[int, CellChangeKind]] = set()
        for index, key, keys in seen.touched:
            if index >= len(self.ids) or self.ids[index] in inserted:
                continue
            for kind in _kinds(key, keys):
                if (index, kind) not in done:
                    done.add((index, kind))
                    changes.append(self._change(kind, index))
        return changes

    def _change(self, kind: CellChangeKind, index: int) -> CellChange:
        data = _data(self.cells[index])
        every = kind == CellChangeKind.INSERTED
        return CellChange(
            kind=kind,
            cell_id=str(data.get("id", "")),
            index=index,
            cell_type=str(data.get("cell_type", "code")) if every else None,
            source=str(data.get("source", "")) if every or kind == CellChangeKind.SOURCE else None,
            outputs=data.get("outputs") if every or kind == CellChangeKind.OUTPUTS else None,
            execution_count=_number(data.get("execution_count"))
            if every or kind == CellChangeKind.EXECUTION_COUNT
            else None,
            metadata=data.get("metadata") if every or kind == CellChangeKind.METADATA else None,
        )


_KEYS = {
    "source": CellChangeKind.SOURCE,
    "outputs": CellChangeKind.OUTPUTS,
    "metadata": CellChangeKind.METADATA,
    "execution_count": CellChangeKind.EXECUTION_COUNT,
}


def _kinds(key: str | None, keys: frozenset[str]) -> list[CellChangeKind]:
    """What a change inside a cell is: under `key`, or of the cell's own `keys`."""
    if key is not None:
        return [_KEYS[key]] if key in _KEYS else []
    return [kind for name, kind in _KEYS.items() if name in keys]


# --- the root types ---


@strawberry.type
class Query:
    @strawberry.field(
        description="The documents open now (their rooms) that the caller may view, with "
        "who is connected to each."
    )
    def documents(self, info: Info) -> list[Document]:
        caller = info.context
        datastore = caller.datastore
        everything = caller.sees_everything
        found = []
        for name, session in list(datastore.documents.sessions.items()):
            room = datastore.rooms.opened(name)
            if room is None or not (everything or caller.may_view(session.path)):
                continue
            found.append(
                Document(
                    path=session.path,
                    file_id=session.file_id,
                    room_id=name,
                    peer_count=len(room.peers),
                    peers=_peers(room),
                )
            )
        return sorted(found, key=lambda document: document.path)

    @strawberry.field(
        description="A notebook's cells: from its open document (with the edits not saved "
        "yet) when it is open, else from its file."
    )
    async def notebook(self, info: Info, path: str) -> Notebook:
        caller = info.context
        datastore = caller.datastore
        real = _notebook_path(caller, path, Role.VIEWER, "read")
        name = _known_room(datastore, real)
        room = _open_room(datastore, name) if name is not None else None
        states: dict[str, Any] = {}  # transient: not in the content a file gets
        if room is not None:
            with room.document() as doc:
                content = _NOTEBOOK.read(doc)
                states = {
                    _cell_id(c): c.get("execution_state") for c in _cells(doc) if isinstance(c, Map)
                }
        else:
            content = (await datastore.io.read(real, _NOTEBOOK)).content
        cells = [_cell(c, states.get(str(c.get("id", "")))) for c in content["cells"]]
        return Notebook(path=real, live=room is not None, cells=cells)

    @strawberry.field(description="The forks of a document (of each kind it was opened as).")
    def forks(self, info: Info, path: str) -> list[Fork]:
        caller = info.context
        datastore = caller.datastore
        real = caller.require(path, Role.VIEWER, "read forks")
        file_id = datastore.ids.file_id(real)
        if file_id is None:
            return []  # never opened: no forks
        found = []
        for file_format, file_type in KINDS:
            root = str(RoomId(file_format, file_type, file_id))
            for fork_id, fork in datastore.forks.of(root).items():
                found.append(
                    Fork(
                        id=fork_id,
                        room_id=root,
                        title=str(fork.get("title", "")),
                        description=str(fork.get("description", "")),
                        synchronize=bool(fork.get("synchronize", False)),
                    )
                )
        return found

    @strawberry.field(
        description="A notebook's stored points in time, oldest first (a timeline's points)."
    )
    async def history(self, info: Info, path: str) -> list[HistoryPoint]:
        caller = info.context
        datastore = caller.datastore
        real = _notebook_path(caller, path, Role.VIEWER, "read history")
        name = _known_room(datastore, real)
        if name is None:
            if not await datastore.io.exists(real):
                raise NotFound(f"no notebook at {real}")
            return []  # never opened: no history
        room = _open_room(datastore, name)
        if room is not None:
            await room.flushed()
        points = await datastore.store.history(name)
        return [HistoryPoint(seq=point.seq, time=point.time) for point in points]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Set a cell's source, as the caller's own edit.")
    async def set_cell_source(self, info: Info, path: str, cell_id: str, source: str) -> Cell:
        def change(doc: Doc[Any]) -> Cell:
            cells = _cells(doc)
            index = _index_of(cells, cell_id)
            cell = cells[index]
            text = cell.get("source")
            if isinstance(text, Text):
                apply_text(text, str(text), source)
            else:
                cell["source"] = Text(source)
            return _read_cell(doc, index)

        return await _edit(info.context, path, "edit", change)  # type: ignore[no-any-return]

    @strawberry.mutation(description="Insert a new cell at `index` (0: first); its id.")
    async def insert_cell(
        self, info: Info, path: str, index: int, cell_type: CellType, source: str = ""
    ) -> str:
        cell_id = str(uuid.uuid4())

        def change(doc: Doc[Any]) -> str:
            cells = _cells(doc)
            _check_index(index, len(cells), "index")
            cell: dict[str, Any] = {"id": cell_id, "cell_type": cell_type.value, "source": source}
            if cell_type == CellType.CODE:
                cell |= {"outputs": [], "execution_count": None, "execution_state": "idle"}
            cells.insert(index, _y_cell(cell))
            return cell_id

        return await _edit(info.context, path, "edit", change)  # type: ignore[no-any-return]

    @strawberry.mutation(
        description="Move a cell to `index` (its position once moved), as JupyterLab moves "
        "one: a copy of it, with its id, replaces it."
    )
    async def move_cell(self, info: Info, path: str, cell_id: str, index: int) -> Cell:
        def change(doc: Doc[Any]) -> Cell:
            cells = _cells(doc)
            current = _index_of(cells, cell_id)
            _check_index(index, len(cells) - 1, "index")
            if current != index:
                copy = _y_cell(_data(cells[current]))
                del cells[current]
                cells.insert(index, copy)
            return _read_cell(doc, index)

        return await _edit(info.context, path, "edit", change)  # type: ignore[no-any-return]

    @strawberry.mutation(description="Delete a cell; its id.")
    async def delete_cell(self, info: Info, path: str, cell_id: str) -> str:
        def change(doc: Doc[Any]) -> str:
            cells = _cells(doc)
            del cells[_index_of(cells, cell_id)]
            return cell_id

        return await _edit(info.context, path, "edit", change)  # type: ignore[no-any-return]

    @strawberry.mutation(
        description="Save a notebook to its file now, as Ctrl-S does: success, skipped, held "
        "(the file's home is away) or failed."
    )
    async def save(self, info: Info, path: str) -> str:
        caller = info.context
        datastore = caller.datastore
        real = _notebook_path(caller, path, Role.EDITOR, "save")
        name = await datastore.documents.notebook_room(real)
        async with datastore.rooms.hold(name) as room:
            return await room.owner.on_save()

    @strawberry.mutation(
        description="Undo the caller's own last changes in an open notebook (any client's "
        "of theirs); other people's stay."
    )
    async def undo(self, info: Info, path: str, steps: int = 1) -> UndoResult:
        return await _undo(info.context, path, steps, redo=False)

    @strawberry.mutation(description="Redo the caller's own last undone changes.")
    async def redo(self, info: Info, path: str, steps: int = 1) -> UndoResult:
        return await _undo(info.context, path, steps, redo=True)


async def _undo(caller: Caller, path: str, steps: int, *, redo: bool) -> UndoResult:
    if not 1 <= steps <= MAX_UNDO_STEPS:
        raise BadRequest(f"steps must be from 1 to {MAX_UNDO_STEPS}, not {steps}")
    datastore = caller.datastore
    real = _notebook_path(caller, path, Role.EDITOR, "redo" if redo else "undo")
    name = _known_room(datastore, real)
    if name is None:
        raise NotFound(f"{real} is not open (undo history lives in open documents)")
    room = datastore.rooms.history_room(name, caller.user)
    assert caller.user is not None  # history_room refuses a request that names no one
    status = room.redo(caller.user, steps) if redo else room.undo(caller.user, steps)
    await room.flushed()
    return UndoResult(steps=status.steps, can_undo=status.can_undo, can_redo=status.can_redo)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="A notebook's cell changes as they happen (whoever makes them): sources, "
        "outputs, metadata and counts set, cells inserted, moved and deleted. Keeps the "
        "notebook open while subscribed."
    )
    async def document_changes(self, info: Info, path: str) -> AsyncGenerator[CellChange, None]:
        caller = info.context
        datastore = caller.datastore
        real = _notebook_path(caller, path, Role.VIEWER, "watch")
        name = await datastore.documents.notebook_room(real)
        pipe: Pipe[CellChange] = Pipe()
        async with datastore.rooms.hold(name) as room:
            watcher = CellWatcher(room.state())

            ended: list[DatastoreError] = []

            def end(error: DatastoreError) -> None:
                ended.append(error)
                pipe.end(error)

            def follow(update: bytes) -> None:
                # Called by the room's flusher: nothing may be raised back into it.
                if ended:
                    return
                if not caller.may_view(real):
                    who = caller.user or "an anonymous user"
                    end(Forbidden(f"{who} may no longer view this notebook"))
                    return
                try:
                    changes = watcher.apply(update)
                except Exception:
                    log.exception("cannot follow the changes of %s", real)
                    end(DatastoreError("the notebook's changes cannot be followed (see the log)"))
                    return
                for change in changes:
                    pipe.put(change)

            stop = room.follow(follow)
            try:
                async for change in pipe:
                    yield change
            finally:
                stop()
                watcher.close()
