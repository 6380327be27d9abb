"""Server-side execution: run notebook cells by id, outputs into the shared document.

A request names a notebook (path or room id) and cells; the cells are checked (they exist,
they are code, their source is the one the caller saw when a hash is given), their kernel is
found (the notebook's session kernel, started with its session when there is none), and
then, in one transaction, every cell is shown queued (`[*]`, outputs cleared, as JupyterLab
does on run) and a record per cell is stored as `queued` before the request is answered.
Each kernel runs its queue in order (`kernel.py`); what ran is the cell's source when its
turn came.

Records outlive the server: at start, records a crash left `queued` or `running` become
`lost`, with the reason, and their cells stop showing `[*]`.

When the store fails, a request is refused (`StoreError`, 503) and its cells go back to
idle: nothing is queued that is not stored. Records of executions under way stay in memory
and are written again until the store takes them (`persist.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import posixpath
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pycrdt import Map

from ..auth.roles import Role
from ..documents import FileIds, FileIO
from ..documents.roomid import RoomId
from ..errors import BadRequest, Conflict, Forbidden, NotFound, StoreError, Unavailable
from ..events.catalog import EXECUTION, Emit, no_emit
from ..rooms.manager import RoomManager
from ..store.base import Store
from .cells import EXECUTOR, CellFinder, find_cells, mark_running
from .kernel import ExecutionPolicy, Job, KernelRunner, execution_event, set_idle
from .persist import RecordWriter
from .records import ACTIVE, ExecutionRecord
from .widgets import empty_snapshot

__all__ = ["ExecuteRequest", "Executor", "source_hash"]

log = logging.getLogger(__name__)

MAX_CELLS = 10_000
MAX_INPUT = 1 << 20  # characters of an answer to input()
WIDGET_UPDATE_TIMEOUT = 10.0
"""Seconds a widget update waits for the kernel (busy running a cell, it gets to it later)."""


def source_hash(source: str) -> str:
    """The hash a caller sends to say which source it means to run: SHA-256 hex of UTF-8."""
    return hashlib.sha256(source.encode()).hexdigest()


@dataclass(frozen=True)
class ExecuteRequest:
    cell_ids: Sequence[str]
    path: str | None = None
    room_id: str | None = None
    kernel_id: str | None = None
    kernel_name: str | None = None
    source_hashes: dict[str, str] | None = None
    user: str | None = None


Authorize = Callable[[str | None, str, Role, str], None]
"""`authorize(user, path, needed, operation)`: raises `Forbidden` when the role falls short."""


def allow_all(user: str | None, path: str, needed: Role, operation: str) -> None:
    """An `Authorize` that allows everything (the executor used on its own)."""


@dataclass(frozen=True)
class _Target:
    room_id: str
    path: str


class Executor:
    def __init__(
        self,
        *,
        rooms: RoomManager,
        ids: FileIds,
        io: FileIO,
        store: Store,
        kernels: Any,
        sessions: Any,
        policy: ExecutionPolicy,
        emit: Emit = no_emit,
        authorize: Authorize = allow_all,
    ) -> None:
        self.rooms = rooms
        self.authorize = authorize
        """Raises unless the user may do the operation on the path (the permission layer)."""
        self.ids = ids
        self.io = io
        self.store = store
        self.kernels = kernels  # jupyter_server's MappingKernelManager
        self.sessions = sessions  # jupyter_server's SessionManager
        self.policy = policy
        self.emit = emit
        self.runners: dict[str, KernelRunner] = {}
        self.jobs: dict[str, Job] = {}
        self._session_locks: dict[str, asyncio.Lock] = {}
        self._recovery: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._collected: set[str] = set()  # results being handed out right now
        self.writer = RecordWriter(store, emit=emit, on_durable=self._durable)
        self._watchers: dict[str, list[Callable[[], None]]] = {}
        """Who is told of each change of an execution (its status, its outputs), by id."""

    # --- life cycle ---

    async def start(self) -> None:
        await self.store.prune_executions(self.policy.keep_records)
        stranded = await self.store.list_executions(statuses=sorted(ACTIVE), limit=1_000_000)
        records = [ExecutionRecord.from_stored(data) for data in stranded]
        for record in records:
            record.lose(f"the server stopped while it was {record.status.replace('_', ' ')}")
        await self.store.put_executions([record.stored() for record in records])
        for record in records:
            self.emit(EXECUTION, execution_event("finished", record))
        if records:
            log.warning("%d executions were cut short by the server stopping", len(records))
            self._recovery = asyncio.ensure_future(self._reset_cells(records))

    async def _reset_cells(self, records: list[ExecutionRecord]) -> None:
        """Cells shown `[*]` for records that will not run go back to idle."""
        by_room: dict[str, list[str]] = {}
        for record in records:
            if record.room_id and record.cell_id:
                by_room.setdefault(record.room_id, []).append(record.cell_id)
        for room_id, cell_ids in by_room.items():
            await set_idle(self.rooms, room_id, cell_ids)

    async def stop(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
        runners, self.runners = list(self.runners.values()), {}
        await asyncio.gather(*(r.stop("the server stopped") for r in runners))
        await self.writer.close()

    # --- requests ---

    async def submit(self, request: ExecuteRequest) -> list[ExecutionRecord]:
        cell_ids = _check_cell_ids(request.cell_ids)
        target = await self._target(request.path, request.room_id)
        self.authorize(request.user, target.path, Role.RUNNER, "execute")
        async with self.rooms.hold(target.room_id) as room:
            with room.document() as doc:
                self._check_cells(find_cells(doc, cell_ids), cell_ids, request.source_hashes)
                kernelspec = _kernelspec_name(doc.get("meta", type=Map))
            kernel_id = await self._kernel_for(target, request, kernelspec)
            batch = str(uuid.uuid4())
            jobs = []
            with room.document(EXECUTOR) as doc:
                # Checked again: the cells may have changed while a kernel started.
                cells = find_cells(doc, cell_ids)
                self._check_cells(cells, cell_ids, request.source_hashes)
                for cell_id in cell_ids:
                    index, cell = cells[cell_id]
                    mark_running(cell)
                    record = ExecutionRecord(
                        id=str(uuid.uuid4()),
                        kernel_id=kernel_id,
                        batch_id=batch,
                        room_id=target.room_id,
                        path=target.path,
                        cell_id=cell_id,
                        user=request.user,
                    )
                    jobs.append(Job(record, hint=index))
        await self._enqueue(kernel_id, jobs)
        return [job.record for job in jobs]

    async def submit_code(
        self,
        kernel_id: str,
        code: str,
        *,
        cell_id: str | None = None,
        room_id: str | None = None,
        path: str | None = None,
        user: str | None = None,
    ) -> ExecutionRecord:
        """Run given code on a kernel; its outputs go into the cell when one is named and found."""
        if kernel_id not in self.kernels:
            raise NotFound(f"no kernel has id {kernel_id}")
        target: _Target | None = None
        if room_id is not None:  # a room that does not parse or exist is the caller's error
            target = await self._target(None, room_id)
        elif path is not None and cell_id is not None:
            try:
                target = await self._target(path, None)
            except (BadRequest, NotFound) as exc:  # nbmodel runs it without a document
                log.info("execution on %s: no document at %s: %s", kernel_id, path, exc)
        document = target.path if target is not None else path
        if document is not None:
            self.authorize(user, document, Role.RUNNER, "execute")
        await self.check_kernel_use(user, kernel_id, document)
        record = ExecutionRecord(
            id=str(uuid.uuid4()),
            kernel_id=kernel_id,
            batch_id=str(uuid.uuid4()),
            code=code,
            user=user,
        )
        if target is not None and cell_id is not None:
            async with self.rooms.hold(target.room_id) as room:
                with room.document(EXECUTOR) as doc:
                    cell = CellFinder(cell_id).find(doc)
                    if cell is not None:
                        mark_running(cell)
                        record.room_id, record.path = target.room_id, target.path
            record.cell_id = cell_id
        await self._enqueue(kernel_id, [Job(record)])
        return record

    async def _enqueue(self, kernel_id: str, jobs: list[Job]) -> None:
        """Store the queued records (one commit), then hand them to their kernel's queue.
        A store that fails is the caller's 503, and the cells are idle again."""
        try:
            await self.writer.write_now([job.record for job in jobs])
        except StoreError:
            await self._reset_cells([job.record for job in jobs])
            raise
        for job in jobs:
            self.jobs[job.record.id] = job
            self._emit(EXECUTION, execution_event("queued", job.record))
        self._runner(kernel_id).submit(jobs)

    def live(self, execution_id: str) -> ExecutionRecord | None:
        """The record of an execution the server holds in memory (queued, under way, or
        just finished), with the outputs it has so far; None when only the store has it."""
        job = self.jobs.get(execution_id)
        if job is None:
            return None
        record = job.record
        runner = self.runners.get(record.kernel_id)
        run = runner.current if runner is not None else None
        if run is not None and run.job is job:
            record.outputs = run.outputs.result()
        return record

    def watch(self, execution_id: str, on_change: Callable[[], None]) -> Callable[[], None]:
        """Call `on_change` at each change of an execution: its status (as the execution
        events tell it) and each batch of outputs it shows. Returns the call that stops it."""
        watchers = self._watchers.setdefault(execution_id, [])
        watchers.append(on_change)

        def unwatch() -> None:
            if on_change in watchers:
                watchers.remove(on_change)
            if not watchers and self._watchers.get(execution_id) is watchers:
                del self._watchers[execution_id]

        return unwatch

    def _changed(self, execution_id: str) -> None:
        for on_change in list(self._watchers.get(execution_id, ())):
            try:
                on_change()
            except Exception:  # a watcher's failure is not the execution's
                log.exception("a watcher of execution %s failed", execution_id)

    def _emit(self, schema_id: str, data: dict[str, Any]) -> None:
        """Emit an event; an execution's is told to its watchers too."""
        self.emit(schema_id, data)
        if schema_id == EXECUTION:
            self._changed(str(data["execution_id"]))

    async def get(self, execution_id: str) -> ExecutionRecord:
        record = self.live(execution_id)
        if record is not None:
            return record
        data = await self.store.get_execution(execution_id)
        if data is None:
            raise NotFound(f"no execution has id {execution_id}")
        return ExecutionRecord.from_stored(data)

    async def get_for(
        self, user: str | None, execution_id: str, needed: Role, operation: str
    ) -> ExecutionRecord:
        """The record for `user`, whose role on its notebook must be at least `needed`
        (Forbidden). One who may not view the notebook is told it is not found, as for an
        unknown id: a record does not tell its notebook's path to them. A record of no
        notebook (code run on a kernel) is decided on the root."""
        record = await self.get(execution_id)
        path = record.path or ""
        try:
            self.authorize(user, path, Role.VIEWER, operation)
        except Forbidden:
            raise NotFound(f"no execution has id {execution_id}") from None
        self.authorize(user, path, needed, operation)
        return record

    async def find(
        self, *, path: str | None = None, kernel_id: str | None = None, limit: int = 1000
    ) -> list[ExecutionRecord]:
        room = None
        if path is not None:
            file_id = self.ids.file_id(path)
            if file_id is None:
                return []
            room = _notebook_room(file_id)
        stored = await self.store.list_executions(room=room, kernel_id=kernel_id, limit=limit)
        records = [ExecutionRecord.from_stored(data) for data in stored]
        return [self.jobs[r.id].record if r.id in self.jobs else r for r in records]

    async def answer(self, execution_id: str, value: str) -> ExecutionRecord:
        if len(value) > MAX_INPUT:
            raise BadRequest(f"an answer to input() is at most {MAX_INPUT} characters")
        record = await self.get(execution_id)
        job = self.jobs.get(execution_id)
        runner = self.runners.get(record.kernel_id)
        if job is None or runner is None or not runner.answer(job, value):
            raise Conflict(f"execution {execution_id} is {record.status}, not awaiting input")
        return record

    async def collect(
        self, execution_id: str, record: ExecutionRecord | None = None
    ) -> ExecutionRecord:
        """Hand out a finished record once (jupyter-server-nbmodel's result semantics):
        `NotFound` if it is unknown or was collected before. `record`: as `get` just gave
        it, so that it is not read from the store again."""
        if record is None or record.id != execution_id:
            record = await self.get(execution_id)
        if record.collected or execution_id in self._collected:
            raise NotFound(f"the result of {execution_id} was already collected")
        if not record.active:
            self._collected.add(execution_id)  # before any await: two GETs, one result
            record.collected = True
            await self._persist(record)
            self._collected.discard(execution_id)
        return record

    def awaiting_input(self, kernel_id: str) -> ExecutionRecord | None:
        runner = self.runners.get(kernel_id)
        run = runner.current if runner is not None else None
        if run is not None and run.record.status == "awaiting_input":
            return run.record
        return None

    async def cancel(self, execution_id: str) -> ExecutionRecord:
        """Cancel a queued execution, or interrupt a running one."""
        record = await self.get(execution_id)
        job = self.jobs.get(execution_id)
        runner = self.runners.get(record.kernel_id)
        if job is None or runner is None or not record.active:
            raise Conflict(f"execution {execution_id} has already ended ({record.status})")
        if runner.cancel_queued(job):
            await runner.finish_unrun(job, "cancelled", "cancelled on request")
        else:
            await runner.interrupt()
        return record

    # --- widgets ---

    async def kernel_of(self, path: str) -> str:
        """The kernel of a notebook's session (NotFound when it has none)."""
        session = await self._session_of(path)
        if session is None:
            raise NotFound(f"{path} has no kernel (no session runs it)")
        return str(session["kernel"]["id"])

    def widgets_of(self, kernel_id: str) -> dict[str, Any]:
        """The widget-state JSON of the ipywidgets models the kernel has (empty when none
        of this server's runs used it: its messages are followed from the first run)."""
        runner = self.runners.get(kernel_id)
        return runner.current_widgets().snapshot() if runner is not None else empty_snapshot()

    async def set_widget_state(
        self,
        kernel_id: str,
        model_id: str,
        patch: Any,
        *,
        timeout: float = WIDGET_UPDATE_TIMEOUT,
    ) -> dict[str, Any]:
        """Update a widget model's state in the kernel, as a front end does; the model once
        the kernel has handled it (and echoed it to every front end)."""
        if not isinstance(patch, dict) or not patch:
            raise BadRequest('"state" must be a non-empty JSON object of the values to set')
        private = sorted(key for key in patch if key.startswith("_"))
        if private:
            raise BadRequest(f"a model's own keys cannot be set: {', '.join(private[:10])}")
        runner = self.runners.get(kernel_id)
        if runner is None or model_id not in runner.current_widgets():
            raise NotFound(f"kernel {kernel_id} has no widget model {model_id}")
        try:
            model = await runner.update_widget(model_id, patch, timeout)
        except asyncio.TimeoutError:
            raise Unavailable(
                f"kernel {kernel_id} did not handle the update within {timeout:g} s (busy?);"
                " it is sent, and applies when the kernel gets to it"
            ) from None
        if model is None:
            raise NotFound(f"widget model {model_id} was closed")
        return model

    # --- helpers ---

    def kernel_state(self, kernel_id: str, state: str) -> None:
        """A kernel's new state (the kernel watcher's): restarting or dead, its widgets go."""
        runner = self.runners.get(kernel_id)
        if runner is not None and state in ("restarting", "dead"):
            runner.widgets_gone()

    def restarted_elsewhere(self, kernel_id: str) -> None:
        """See `KernelRunner.restarted_elsewhere`."""
        runner = self.runners.get(kernel_id)
        if runner is not None:
            runner.restarted_elsewhere()

    def _runner(self, kernel_id: str) -> KernelRunner:
        runner = self.runners.get(kernel_id)
        if runner is None:
            runner = self.runners[kernel_id] = KernelRunner(
                kernel_id,
                kernels=self.kernels,
                rooms=self.rooms,
                persist=self._persist,
                policy=self.policy,
                on_idle=self._runner_idle,
                emit=self._emit,
                on_outputs=self._changed,
            )
        return runner

    def _runner_idle(self, runner: KernelRunner) -> None:
        if runner.kernel_id not in self.kernels and self.runners.get(runner.kernel_id) is runner:
            del self.runners[runner.kernel_id]
            task = asyncio.ensure_future(runner.stop("the kernel was shut down"))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def _persist(self, record: ExecutionRecord) -> None:
        await self.writer.write(record)

    def _durable(self, record: ExecutionRecord) -> None:
        """A finished record that the store holds is read from there from now on."""
        if not record.active:
            self.jobs.pop(record.id, None)

    async def _target(self, path: str | None, room_id: str | None) -> _Target:
        if (path is None) == (room_id is None):
            raise BadRequest('give either "path" or "room_id"')
        if room_id is not None:
            room = RoomId.parse(room_id)
            if (room.format, room.type) != ("json", "notebook"):
                raise BadRequest(f"{room_id} is not a notebook room (json:notebook:<file id>)")
            found = self.ids.path(room.file_id)
            if found is None:
                raise NotFound(f"no file has id {room.file_id}")
            return _Target(str(room), found)
        assert path is not None
        if not path.endswith(".ipynb"):
            raise BadRequest(f"{path} is not a notebook (.ipynb)")
        known = self.ids.file_id(path)
        if known is not None and _notebook_room(known) in self.rooms.rooms:
            return _Target(_notebook_room(known), path)  # open: no need to look on disk
        if not await self.io.exists(path):
            raise NotFound(f"no notebook at {path}")
        file_id, _ = self.ids.index(path)
        return _Target(_notebook_room(file_id), path)

    @staticmethod
    def _check_cells(
        cells: dict[str, tuple[int, Map[Any]]], cell_ids: list[str], hashes: dict[str, str] | None
    ) -> None:
        for cell_id in cell_ids:
            found = cells.get(cell_id)
            if found is None:
                raise NotFound(f"the notebook has no cell with id {cell_id!r}")
            cell = found[1]
            cell_type = str(cell.get("cell_type", "code"))
            if cell_type != "code":
                raise BadRequest(f"cell {cell_id!r} is a {cell_type} cell; only code cells run")
            expected = (hashes or {}).get(cell_id)
            if expected is not None and expected != source_hash(str(cell.get("source", ""))):
                raise Conflict(f"the source of cell {cell_id!r} has changed since it was read")

    async def _kernel_for(
        self, target: _Target, request: ExecuteRequest, notebook_kernel: str | None
    ) -> str:
        if request.kernel_id is not None:
            if request.kernel_id not in self.kernels:
                raise NotFound(f"no kernel has id {request.kernel_id}")
            await self.check_kernel_use(request.user, request.kernel_id, target.path)
            return request.kernel_id
        lock = self._session_locks.setdefault(target.path, asyncio.Lock())
        async with lock:
            session = await self._session_of(target.path)
            wanted = request.kernel_name
            if session is not None:
                kernel = session.get("kernel") or {}
                if wanted is None or kernel.get("name") == wanted:
                    return str(kernel["id"])
                raise Conflict(
                    f"the session of {target.path} runs kernel {kernel.get('name')!r}, not"
                    f" {wanted!r}: give its kernel id, or change the session's kernel first"
                )
            name = wanted or notebook_kernel or self.kernels.default_kernel_name
            # Checked first: a failed start leaves jupyter_server logging and half-registered.
            if name not in self.kernels.kernel_spec_manager.find_kernel_specs():
                if wanted is None:
                    raise NotFound(
                        f"the notebook asks for kernel {name!r}, which this server does not"
                        ' have: give "kernel": {"name": ...}'
                    )
                raise NotFound(f"no kernel spec named {name!r}")
            model = await self.sessions.create_session(
                path=target.path,
                name=posixpath.basename(target.path),
                type="notebook",
                kernel_name=name,
            )
            log.info("started kernel %s for %s", model["kernel"]["id"], target.path)
            return str(model["kernel"]["id"])

    async def kernel_paths(self, kernel_id: str) -> list[str]:
        """The notebooks whose sessions run a kernel; the root alone when none does (so
        using a kernel that serves no notebook needs the role on the root)."""
        paths = [
            str(session.get("path") or "")
            for session in await self.sessions.list_sessions()
            if (session.get("kernel") or {}).get("id") == kernel_id
        ]
        return paths or [""]

    async def check_kernel_use(self, user: str | None, kernel_id: str, path: str | None) -> None:
        """Code on a kernel needs runner on every notebook the kernel serves; a request that
        names a notebook and a kernel must name the notebook's own kernel, if it has one."""
        if path is not None:
            session = await self._session_of(path)
            own = (session or {}).get("kernel", {}).get("id")
            if own is not None and own != kernel_id:
                raise Conflict(
                    f"{path} runs on kernel {own}, not {kernel_id}: name its own kernel, or none"
                )
        await self.check_kernel_role(user, kernel_id, Role.RUNNER, "run code on a kernel")

    async def check_kernel_role(
        self, user: str | None, kernel_id: str, needed: Role, operation: str
    ) -> None:
        """`needed` on every notebook the kernel serves (what one shows, all may show)."""
        for served in await self.kernel_paths(kernel_id):
            try:
                self.authorize(user, served, needed, operation)
            except Forbidden:  # said without the notebook's path, which the user may not know
                raise Forbidden(
                    f"kernel {kernel_id} serves a notebook on which you are not a {needed.label}"
                ) from None

    async def _session_of(self, path: str) -> dict[str, Any] | None:
        for session in await self.sessions.list_sessions():
            if session.get("path") == path and session.get("kernel"):
                kernel_id = session["kernel"].get("id")
                if kernel_id in self.kernels:
                    return dict(session)
        return None


def _notebook_room(file_id: str) -> str:
    return str(RoomId.notebook(file_id))


def _check_cell_ids(cell_ids: Any) -> list[str]:
    if not isinstance(cell_ids, list | tuple) or not cell_ids:
        raise BadRequest('"cell_ids" must be a non-empty list of cell ids')
    if len(cell_ids) > MAX_CELLS:
        raise BadRequest(f"at most {MAX_CELLS} cells per request")
    if not all(isinstance(c, str) and c for c in cell_ids):
        raise BadRequest('"cell_ids" must hold non-empty strings')
    if len(set(cell_ids)) != len(cell_ids):
        raise BadRequest('"cell_ids" names a cell twice')
    return list(cell_ids)


def _kernelspec_name(meta: Map[Any]) -> str | None:
    """The kernel a notebook asks for (`metadata.kernelspec.name`), if it names one."""
    metadata = json.loads(str(meta)).get("metadata")
    kernelspec = metadata.get("kernelspec") if isinstance(metadata, dict) else None
    name = kernelspec.get("name") if isinstance(kernelspec, dict) else None
    return name if isinstance(name, str) and name else None
