"""Live models of open documents: `Notebook` (with `Cell` views) and `TextFile`.

They read and write the synced pycrdt doc through jupyter_ydoc's schema (what JupyterLab
reads and writes), so each edit is a change every other client sees at once. Edits are
sent as they are made; `await synced()` returns once the server holds them durably.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from jupyter_ydoc import YNotebook, YUnicode
from jupyter_ydoc.utils import cast_all
from pycrdt import Map, Text

from .errors import ExecutionFailed, ServerError
from .room import Room

if TYPE_CHECKING:
    from .client import Client, Execution

__all__ = ["Cell", "Notebook", "TextFile"]

CellRef: TypeAlias = "int | str | Cell"
"""A cell: by index (negative counts from the end), by id, or a `Cell`."""
D = TypeVar("D", bound="_Document")


class _Document:
    def __init__(self, client: Client, path: str, room: Room) -> None:
        self.client = client
        self.path = path
        self.room = room

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} ({self.room_id})>"

    @property
    def room_id(self) -> str:
        """`{format}:{type}:{file id}`."""
        return self.room.name

    @property
    def reloads(self) -> int:
        """How many times the document was reopened from the server because it lost its
        store (a new session) or refused an edit made here (one our role does not allow):
        the content is then the server's, not merged with ours."""
        return self.room.reloads

    @property
    def role(self) -> str | None:
        """Our role on the file (viewer, editor, runner, owner), as the room last said."""
        return self.room.role

    def on_reload(self, callback: Callable[[], None]) -> None:
        self.room.on_reload.append(callback)

    async def synced(self, timeout: float = 30.0) -> None:
        """Wait until the server holds every edit made here so far.

        Raises `EditsDiscarded` if a reload dropped edits the server never had."""
        await asyncio.wait_for(self.room.flush(), timeout)

    @property
    def connected(self) -> bool:
        """Connected and synced now (else reconnecting)."""
        return self.room.connected

    async def save(self, timeout: float = 30.0) -> str:
        """Save to the file now: "success", or "skipped" when the file already holds it."""
        status = await asyncio.wait_for(self.room.save(), timeout)
        if status == "failed":
            raise ServerError(f"{self.path}: the server could not save it (see its log)")
        return status

    async def wait_for(self: D, predicate: Callable[[D], bool], timeout: float = 30.0) -> None:
        """Wait until `predicate(self)` holds, checked at every change."""
        await self.room.wait_for(lambda: predicate(self), timeout)

    async def close(self) -> None:
        """Leave the room, once the server holds our edits (waits up to 10 s for that)."""
        await self.room.close()

    async def __aenter__(self: D) -> D:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Notebook(_Document):
    """A notebook, live. `cells` are views that read the current doc."""

    def __init__(self, client: Client, path: str, room: Room) -> None:
        super().__init__(client, path, room)
        self.ynotebook = YNotebook(room.doc)
        room.on_reload.append(self._rebind)

    def _rebind(self) -> None:
        self.ynotebook = YNotebook(self.room.doc)

    @property
    def cells(self) -> list[Cell]:
        return [Cell(self, str(ycell.get("id"))) for ycell in self.ynotebook.ycells]

    def cell(self, ref: CellRef) -> Cell:
        return Cell(self, str(self._find(ref)[1].get("id")))

    def _find(self, ref: CellRef) -> tuple[int, Map[Any]]:
        ycells = self.ynotebook.ycells
        if isinstance(ref, Cell):
            ref = ref.id
        if isinstance(ref, int):
            index = ref + len(ycells) if ref < 0 else ref
            if not 0 <= index < len(ycells):
                raise IndexError(f"no cell at index {ref} in {self.path}")
            return index, ycells[index]
        for index, ycell in enumerate(ycells):
            if ycell.get("id") == ref:
                return index, ycell
        raise KeyError(f"no cell with id {ref!r} in {self.path}")

    def insert(
        self,
        index: int,
        source: str = "",
        cell_type: str = "code",
        *,
        cell_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Cell:
        """A new cell at `index` (as JupyterLab makes it); `len(cells)` appends."""
        if cell_type not in ("code", "markdown", "raw"):
            raise ValueError(f"cell_type must be code, markdown or raw, not {cell_type!r}")
        cell: dict[str, Any] = {"cell_type": cell_type, "source": source}
        cell["metadata"] = metadata or {}
        if cell_id is not None:
            cell["id"] = cell_id
        if cell_type == "code":
            cell.update(execution_count=None, outputs=[])
        ycell = self.ynotebook.create_ycell(cell)
        self.ynotebook.ycells.insert(index, ycell)
        return Cell(self, str(ycell["id"]))

    def append(self, source: str = "", cell_type: str = "code", **options: Any) -> Cell:
        return self.insert(len(self.ynotebook.ycells), source, cell_type, **options)

    def move(self, ref: CellRef, to: int) -> None:
        """Move a cell so that it ends at index `to`. As JupyterLab does (Yjs 13 has no
        move), the cell is deleted and a copy inserted, in one transaction."""
        index, ycell = self._find(ref)
        copy = ycell.to_py() or {}
        copy.pop("execution_state", None)
        with self.room.doc.transaction():
            del self.ynotebook.ycells[index]
            self.ynotebook.ycells.insert(to, self.ynotebook.create_ycell(copy))

    def delete(self, ref: CellRef) -> None:
        index, _ = self._find(ref)
        del self.ynotebook.ycells[index]

    def to_dict(self) -> dict[str, Any]:
        """The notebook as nbformat JSON, as it would be saved."""
        return dict(self.ynotebook.get())

    async def execute(
        self,
        cells: Iterable[CellRef] | None = None,
        *,
        kernel: str | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> list[Execution]:
        """Run cells (default: every code cell) in order on the notebook's kernel, on the
        server, and return their finished records; outputs also land in the document.

        A cell that fails cancels those after it. `check=True` raises `ExecutionFailed`
        then. On timeout, the cells still queued or running are cancelled."""
        refs = list(cells) if cells is not None else [c.id for c in self.cells if c.is_code]
        cell_ids = [self.cell(ref).id for ref in refs]
        await self.synced()  # the server runs the source it holds: it must hold ours
        submitted = await self.client.submit(cell_ids, room_id=self.room_id, kernel=kernel)
        finished = await self.wait(submitted, timeout=timeout)
        failed = [e for e in finished if not e.ok]
        if check and failed:
            first = failed[0]
            what = first.error or {"ename": first.status, "evalue": first.reason or ""}
            detail = f"cell {first.cell_id}: {what.get('ename')}: {what.get('evalue')}"
            raise ExecutionFailed(detail, finished)
        return finished

    async def wait(
        self,
        executions: Iterable[Execution],
        *,
        timeout: float | None = None,
        on_finished: Callable[[Execution], None] | None = None,
    ) -> list[Execution]:
        """Wait for executions of this notebook's cells to finish, in order (`on_finished`
        is told of each); cancel those left on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        pending, finished = list(executions), []
        try:
            for execution in pending:
                left = None if deadline is None else max(0.0, deadline - loop.time())
                wake = self._wake_when_idle(execution.cell_id)
                finished.append(await self.client.wait(execution.id, timeout=left, wake=wake))
                if on_finished is not None:
                    on_finished(finished[-1])
        except asyncio.TimeoutError:
            for execution in reversed(pending[len(finished) :]):  # the running one last
                with contextlib.suppress(Exception):
                    await self.client.cancel(execution.id)
            raise
        return finished

    def _wake_when_idle(self, cell_id: str | None) -> Callable[[float], Awaitable[None]]:
        def idle() -> bool:
            with contextlib.suppress(LookupError):
                return cell_id is None or self.cell(cell_id).execution_state != "running"
            return True

        async def wake(pause: float) -> None:
            with contextlib.suppress(asyncio.TimeoutError):
                await self.room.wait_for(idle, pause)

        return wake


class Cell:
    """A view of one cell, by id: every read sees the current document."""

    def __init__(self, notebook: Notebook, cell_id: str) -> None:
        self.notebook = notebook
        self.id = cell_id

    def __repr__(self) -> str:
        return f"<Cell {self.id} {self.cell_type}>"

    def _ycell(self) -> Map[Any]:
        return self.notebook._find(self.id)[1]

    def to_dict(self) -> dict[str, Any]:
        """The cell as nbformat JSON."""
        cell = self._ycell().to_py() or {}
        cell.pop("execution_state", None)
        return dict(cast_all(cell, float, int))

    @property
    def index(self) -> int:
        return self.notebook._find(self.id)[0]

    @property
    def cell_type(self) -> str:
        return str(self._ycell().get("cell_type"))

    @property
    def is_code(self) -> bool:
        return self.cell_type == "code"

    @property
    def source(self) -> str:
        return str(self._ycell().get("source", ""))

    def set_source(self, source: str) -> None:
        """Replace the source with granular text edits (others' cursors stay put)."""
        self.notebook.ynotebook.set_cell(self.index, source=source)

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return list(self.to_dict().get("outputs", []))

    @property
    def execution_count(self) -> int | None:
        return self.to_dict().get("execution_count")

    @property
    def execution_state(self) -> str | None:
        """`running` while the server runs or queues it (JupyterLab's `[*]`), else `idle`."""
        state = self._ycell().get("execution_state")
        return None if state is None else str(state)

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.to_dict().get("metadata", {}))


class TextFile(_Document):
    """A text file, live. Indexes count characters."""

    def __init__(self, client: Client, path: str, room: Room) -> None:
        super().__init__(client, path, room)
        self.yunicode = YUnicode(room.doc)
        room.on_reload.append(self._rebind)

    def _rebind(self) -> None:
        self.yunicode = YUnicode(self.room.doc)

    @property
    def text(self) -> str:
        return str(self.yunicode.get())

    def set(self, text: str) -> None:
        """Make the text `text`, by granular edits of what differs."""
        self.yunicode.set(text)

    def insert(self, index: int, text: str) -> None:
        self.replace(index, index, text)

    def replace(self, start: int, end: int, text: str) -> None:
        """Replace characters `start` to `end` (excluded) by `text`."""
        current = self.text
        # pycrdt's Text counts UTF-8 bytes.
        first, last = len(current[:start].encode()), len(current[:end].encode())
        ytext = self.room.doc.get("source", type=Text)
        with self.room.doc.transaction():
            if last > first:
                del ytext[first:last]
            if text:
                ytext.insert(first, text)
