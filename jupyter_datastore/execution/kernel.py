"""One kernel's queue of executions, run one at a time on a kernel client of our own.

The runner holds its own `AsyncKernelClient` (its own session, so its own ZMQ identity: the
replies to JupyterLab's kernel connections never reach it and the other way round) and three
readers, one per channel, that hand each message to the run it belongs to (by parent id).
Iopub messages are read in batches, every message that is ready at once, and a batch is
written into the document in one transaction: a cell that floods its output costs one Y
transaction per batch, not per message.

A run ends when both its `execute_reply` and its `status: idle` have arrived. While it waits,
the runner checks every half second that the kernel is still the same live process: a kernel
that died (or was restarted under it) ends the run with an error, and the queue goes on once
the kernel is back.

The document's room is held open for the whole run, so the outputs land in the document and
are saved to the file even when every client has gone.

The iopub reader also sees every comm message of the kernel (those of browsers' own
connections too): the ipywidgets models among them are kept in `widgets` (`widgets.py`),
for as long as the kernel's process and this runner's connection to it live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient

from ..events.catalog import EXECUTION, Emit, no_emit
from ..rooms.manager import RoomManager
from ..rooms.room import Room
from .cells import (
    EXECUTOR,
    CellFinder,
    CellOutputs,
    mark_idle,
    output_of,
    set_input_request,
    widget_views_to_text,
)
from .gateway import GatewayChannels, is_gateway_kernel
from .records import ExecutionRecord, InvalidTransition, Status, utc_now
from .widgets import WidgetStates

__all__ = ["ExecutionPolicy", "Job", "KernelRunner", "execution_event"]

log = logging.getLogger(__name__)

Persist = Callable[[ExecutionRecord], Coroutine[Any, Any, None]]

_CHECK_EVERY = 0.5  # seconds between two looks at the kernel while a cell runs
# Most iopub messages written in one transaction, and the longest time spent gathering
# them: a flooding cell must not hold the event loop (and every other room) for long.
_IOPUB_BATCH = 200
_IOPUB_GATHER = 0.002
_KEPT_DISPLAYS = 256  # finished runs whose displays stay updatable
_KEPT_GONE_WIDGETS = 100_000  # forgotten models kept until the documents are told
_COMM_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})
_CAPTURED_TYPES = frozenset({"stream", "display_data", "execute_result", "error", "clear_output"})


@dataclass(frozen=True)
class ExecutionPolicy:
    output_limit: int = 16 * 1024 * 1024
    """Bytes of output kept per cell; more is cut and a notice says how much (0: no limit)."""
    record_timing: bool = True
    """Write JupyterLab's timing metadata (`metadata.execution`) into each cell run."""
    kernel_ready_timeout: float = 60.0
    """Seconds to wait for a kernel to answer (at first, and after it restarted)."""
    keep_records: int = 10_000
    """Finished execution records kept in the store; older ones are deleted at start."""


@dataclass
class Job:
    record: ExecutionRecord
    hint: int = 0
    """Where the cell was in the notebook when it was queued: where to look first."""
    cancelled: bool = False


@dataclass
class _Run:
    job: Job
    msg_id: str
    room: Room | None
    finder: CellFinder | None
    outputs: CellOutputs
    timing: dict[str, str] = field(default_factory=dict)
    reply: dict[str, Any] | None = None
    idle: bool = False
    interrupted: bool = False
    input_parent: dict[str, Any] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def record(self) -> ExecutionRecord:
        return self.job.record

    def check_done(self) -> None:
        if self.reply is not None and self.idle:
            self.done.set()


@dataclass(frozen=True)
class _Shown:
    """Where a finished run showed displays that may still be updated."""

    room_id: str
    finder: CellFinder
    outputs: CellOutputs


class KernelGone(Exception):
    """The kernel died, was restarted under a run, or was shut down."""


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def execution_event(action: str, record: ExecutionRecord) -> dict[str, Any]:
    """The data of an execution event (events/schemas/execution.json) about a record."""
    duration = None
    if action == "finished" and record.started_at and record.finished_at:
        duration = round(_seconds(record.finished_at) - _seconds(record.started_at), 6)
    return {
        "action": action,
        "execution_id": record.id,
        "kernel_id": record.kernel_id,
        "status": record.status,
        "path": record.path,
        "room_id": record.room_id,
        "cell_id": record.cell_id,
        "user": record.user,
        "duration": duration,
        "error": record.error,
        "reason": record.reason,
    }


def _update(model_id: str, state: dict[str, Any]) -> dict[str, Any]:
    """A widget's `update` comm message content, as a front end sends it."""
    return {"comm_id": model_id, "data": {"method": "update", "state": state, "buffer_paths": []}}


def _date(msg: dict[str, Any]) -> str:
    date = msg.get("header", {}).get("date")
    if isinstance(date, datetime):
        return date.isoformat().replace("+00:00", "Z")
    return str(date) if date else utc_now()


class KernelRunner:
    def __init__(
        self,
        kernel_id: str,
        *,
        kernels: Any,
        rooms: RoomManager,
        persist: Persist,
        policy: ExecutionPolicy,
        on_idle: Callable[[KernelRunner], None],
        emit: Emit = no_emit,
        on_outputs: Callable[[str], None] = lambda execution_id: None,
    ) -> None:
        self.kernel_id = kernel_id
        self.kernels = kernels  # jupyter_server's MappingKernelManager
        self.rooms = rooms
        self.persist = persist
        self.policy = policy
        self.emit = emit
        self.on_outputs = on_outputs
        """Told the id of the running execution each time outputs reach its cell."""
        self.queue: deque[Job] = deque()
        self.current: _Run | None = None
        self._on_idle = on_idle
        self._client: AsyncKernelClient | None = None
        self._comm_client: AsyncKernelClient | None = None  # sends comm messages (`_send_comm`)
        self._pid: object = None
        self._readers: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        # Displays that finished runs showed, by record id, so that a later
        # `update_display_data` finds them; the last run of each cell, by record id.
        self._displays: OrderedDict[str, _Shown] = OrderedDict()
        self._last_run: dict[tuple[str | None, str | None], str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.widgets = WidgetStates()
        self._gone_widgets: set[str] = set()
        """Models forgotten since the kernel's widgets were last cleared from documents."""
        self._rooms_run: set[str] = set()
        """The rooms whose cells ran on this kernel (where its widgets may show)."""
        self._widgets_of: object = None  # the kernel process the widget states are of
        self._captured: set[str] = set()  # Output widgets given outputs in this batch
        self._widget_acks: dict[str, asyncio.Future[None]] = {}
        """Updates sent to widgets, by message id, until the kernel is idle after them."""
        self._worker = asyncio.ensure_future(self._work())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the queue ---

    def submit(self, jobs: list[Job]) -> None:
        self.queue.extend(jobs)
        self._wake.set()

    def cancel_queued(self, job: Job) -> bool:
        """Take a job that has not started out of the queue; False once it runs."""
        if job in self.queue:
            self.queue.remove(job)
            return True
        if self.current is None or self.current.job is not job:
            job.cancelled = True  # between the queue and the kernel: it stops before it runs
            return True
        return False

    async def interrupt(self) -> None:
        if self.current is not None:
            self.current.interrupted = True
        await self.kernels.interrupt_kernel(self.kernel_id)

    def answer(self, job: Job, value: str) -> bool:
        """Send an `input()` answer for the running job; False when it is not waiting."""
        run = self.current
        if run is None or run.job is not job or run.input_parent is None or self._client is None:
            return False
        client = self._client
        message = client.session.msg("input_reply", {"value": value}, parent=run.input_parent)
        client.stdin_channel.send(message)
        run.input_parent = None
        record = run.record
        prompt = (record.input_request or {}).get("prompt", "")
        shown = "········" if (record.input_request or {}).get("password") else value
        record.resume()
        echo = {"name": "stdout", "text": f"{prompt}{shown}\n"}  # as a terminal shows it

        def write(cell: Any) -> None:
            set_input_request(cell, None)
            run.outputs.handle(cell, "stream", echo)

        self._write(run, write)
        self._spawn(self.persist(record))
        self.emit(EXECUTION, execution_event("input_answered", record))
        return True

    async def _work(self) -> None:
        while True:
            while not self.queue:
                self._wake.clear()
                self._on_idle(self)
                await self._wake.wait()
            job = self.queue.popleft()
            try:
                await self._run(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("execution %s failed in the server", job.record.id)
                if job.record.active:  # else it has ended, and says how
                    await self.finish_unrun(job, "error", "the server failed to run it")

    async def _run(self, job: Job) -> None:
        record = job.record
        try:
            client = await self._ensure_client()
        except KernelGone as exc:
            if not job.cancelled:  # else `Executor.cancel` has recorded it
                await self.finish_unrun(job, "lost", str(exc))
            self._fail_queue("lost", str(exc))
            return
        if record.room_id:
            self._rooms_run.add(record.room_id)
        hold = self.rooms.hold(record.room_id) if record.room_id else _no_room()
        async with hold as room:
            finder = CellFinder(record.cell_id, job.hint) if record.cell_id and room else None
            code = record.code
            if code is None:
                assert room is not None and finder is not None
                with room.document(EXECUTOR) as doc:
                    cell = finder.find(doc)
                    code = str(cell.get("source", "")) if cell is not None else None
                if code is None:
                    if not job.cancelled:  # else `Executor.cancel` has recorded it
                        reason = f"cell {record.cell_id} was deleted before it ran"
                        await self.finish_unrun(job, "cancelled", reason)
                    return
            if job.cancelled:  # `Executor.cancel` has recorded it
                return
            run = _Run(job, "", room, finder, CellOutputs(self.policy.output_limit))
            self._forget_previous(run)
            run.msg_id = client.execute(
                code, store_history=True, allow_stdin=True, stop_on_error=False
            )
            self.current = run  # stays set if this task is cancelled: `stop` records it lost
            record.start()
            await self.persist(record)
            self.emit(EXECUTION, execution_event("started", record))
            try:
                await self._wait(run)
            except KernelGone as exc:
                self.current = None
                await self._kernel_died(run, str(exc))
                return
            self.current = None
            await self._finished(run)

    async def _wait(self, run: _Run) -> None:
        while not run.done.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(run.done.wait(), _CHECK_EVERY)
            if not run.done.is_set():
                await self._check_kernel()

    async def _finished(self, run: _Run) -> None:
        record, reply = run.record, run.reply or {}
        content = reply.get("content", {})
        status = content.get("status", "error")
        if self.policy.record_timing:
            started = reply.get("metadata", {}).get("started")
            if started:
                run.timing["shell.execute_reply.started"] = str(started)
            run.timing["shell.execute_reply"] = _date(reply)
        count = content.get("execution_count")
        execution_count = count if isinstance(count, int) else None
        if status == "ok":
            record.finish("ok", execution_count=execution_count)
        elif status == "error":
            error = {"ename": str(content.get("ename")), "evalue": str(content.get("evalue"))}
            if run.interrupted:
                record.finish(
                    "interrupted",
                    execution_count=execution_count,
                    error=error,
                    reason="interrupted on request",
                )
            else:
                record.finish("error", execution_count=execution_count, error=error)
        else:  # "aborted": the kernel dropped it after another client's failure
            reason = f"the kernel answered {status!r}"
            record.finish("cancelled", execution_count=execution_count, reason=reason)
        self._write(
            run,
            lambda cell: mark_idle(cell, record.execution_count, run.timing),
        )
        await self._close(run, record.status)
        if record.status in ("error", "interrupted", "cancelled"):
            await self._cancel_batch(
                record.batch_id,
                f"an earlier cell ({record.cell_id}) of its request did not succeed",
            )

    async def _kernel_died(self, run: _Run, reason: str) -> None:
        record = run.record
        record.fail(reason, error={"ename": "KernelDied", "evalue": reason})
        error = {"ename": "KernelDied", "evalue": reason, "traceback": [f"KernelDied: {reason}"]}

        def write(cell: Any) -> None:
            run.outputs.handle(cell, "error", error)
            mark_idle(cell)

        self._write(run, write)
        await self._close(run, "error")
        await self._cancel_batch(
            record.batch_id, "the kernel died while an earlier cell of its request ran"
        )
        self._drop_client()

    async def _close(self, run: _Run, status: str) -> None:
        record = run.record
        record.outputs = run.outputs.result()
        if any(run.outputs.display_ids) and run.finder is not None and record.room_id:
            run.outputs.keep_displays_only()
            self._displays[record.id] = _Shown(record.room_id, run.finder, run.outputs)
            while len(self._displays) > _KEPT_DISPLAYS:
                self._displays.popitem(last=False)
        await self.persist(record)
        self.emit(EXECUTION, execution_event("finished", record))
        log.info("execution %s of cell %s: %s", record.id, record.cell_id, status)

    async def finish_unrun(self, job: Job, status: Status, reason: str) -> None:
        """End a job that never reached the kernel (or whose run the server failed): its
        record `cancelled`, `lost` or `error`, and its cell back to idle."""
        record = job.record
        if status == "cancelled":
            record.cancel(reason)
        elif status == "lost":
            record.lose(reason)
        elif status == "error":
            record.fail(reason)
        else:
            raise InvalidTransition(record.id, record.status, f"end unrun as {status}")
        if record.room_id and record.cell_id:
            await set_idle(self.rooms, record.room_id, [record.cell_id])
        await self.persist(record)
        self.emit(EXECUTION, execution_event("finished", record))

    async def _cancel_batch(self, batch_id: str, reason: str) -> None:
        for job in [job for job in self.queue if job.record.batch_id == batch_id]:
            self.queue.remove(job)
            await self.finish_unrun(job, "cancelled", reason)

    def _fail_queue(self, status: Status, reason: str) -> None:
        jobs, self.queue = list(self.queue), deque()
        for job in jobs:
            self._spawn(self.finish_unrun(job, status, reason))

    # --- the document ---

    def _write(self, run: _Run, change: Callable[[Any], object]) -> None:
        """Apply `change` to the run's cell (None when it has no cell any more)."""
        if run.room is None or run.finder is None:
            change(None)
            return
        with run.room.document(EXECUTOR) as doc:
            change(run.finder.find(doc))

    def _forget_previous(self, run: _Run) -> None:
        """A cell runs again: the displays of its previous run are gone with its outputs."""
        key = (run.record.room_id, run.record.cell_id)
        previous = self._last_run.pop(key, None)
        if previous is not None:
            self._displays.pop(previous, None)
        if run.record.cell_id is not None:
            self._last_run[key] = run.record.id

    def restarted_elsewhere(self) -> None:
        """The kernel was restarted where it runs, by someone else (supernode mode's
        upstream says so): a run under way ends at its next check, the next gets a fresh
        connection."""
        if isinstance(self._client, GatewayChannels):
            self._client.restarted = True
        self.widgets_gone()

    # --- widgets ---

    def _clear_widgets(self) -> None:
        self._gone_widgets |= self.widgets.clear()
        if len(self._gone_widgets) > _KEPT_GONE_WIDGETS:
            self._gone_widgets.clear()

    def widgets_gone(self) -> None:
        """The kernel restarted or died: its widgets are gone, and the outputs that showed
        them, in the notebooks its runs wrote into, show their text instead."""
        self._clear_widgets()
        gone, self._gone_widgets = self._gone_widgets, set()
        if gone:
            for room_id in self._rooms_run:
                self._spawn(self._widget_views_to_text(room_id, gone))

    async def _widget_views_to_text(self, room_id: str, gone: set[str]) -> None:
        try:
            async with self.rooms.hold(room_id) as room:
                with room.document(EXECUTOR) as doc:
                    widget_views_to_text(doc, gone)
        except Exception:  # the room is gone, or its document: nothing left to show them
            log.warning("kernel %s: cannot clear its widgets from %s", self.kernel_id, room_id)

    def current_widgets(self) -> WidgetStates:
        """The widget states, first cleared if the kernel is gone or is another process
        than the one they came from (restarted, by anyone, since they were told)."""
        try:
            process = self._process_id(self._kernel())
        except KernelGone:
            process = None
        client = self._client
        restarted = isinstance(client, GatewayChannels) and client.restarted
        if process is None or process != self._widgets_of or restarted:
            if len(self.widgets):
                log.info(
                    "kernel %s restarted or went: its widget states are cleared", self.kernel_id
                )
            self._clear_widgets()
            self._widgets_of = process
        return self.widgets

    async def update_widget(
        self, model_id: str, patch: dict[str, Any], timeout: float
    ) -> dict[str, Any] | None:
        """Send a state patch to a widget model as a front end does; once the kernel is
        idle after it (its `echo_update` came before), the model as it is then (None if it
        was closed). Raises `asyncio.TimeoutError` when the kernel does not get to it."""
        client = self._client
        if client is None or model_id not in self.current_widgets():
            return None
        message = client.session.msg("comm_msg", _update(model_id, patch))
        msg_id = str(message["header"]["msg_id"])
        acked = self._widget_acks[msg_id] = asyncio.get_running_loop().create_future()
        try:
            self._send_comm(client, message)
            await asyncio.wait_for(acked, timeout)
        finally:
            self._widget_acks.pop(msg_id, None)
        return self.widgets.model(model_id)

    def _on_widget_message(self, msg: dict[str, Any], run: _Run | None) -> bool:
        """Follow the widgets in one iopub message; True when it was an output captured by
        an Output widget (`with out:` in a run: the widget gets it, not the cell)."""
        msg_type = msg["msg_type"]
        if msg_type in _COMM_TYPES:
            self.current_widgets().feed(msg)
        elif msg_type == "status" and msg["content"].get("execution_state") == "idle":
            acked = self._widget_acks.get(msg["parent_header"].get("msg_id", ""))
            if acked is not None and not acked.done():
                acked.set_result(None)
        elif run is not None and msg_type in _CAPTURED_TYPES:
            target = self.widgets.capturing(run.msg_id)
            if target is not None:
                content = msg["content"]
                output = None if msg_type == "clear_output" else output_of(msg_type, content)
                self.widgets.capture(target, output, wait=bool(content.get("wait")))
                self._captured.add(target)
                return True
        return False

    def _send_captured(self) -> None:
        """Give each Output widget that captured outputs its new `outputs`, as a front end
        that ran the cell does: the kernel takes it (once the cell is done: it reads comm
        messages between requests) and echoes it to every window."""
        client = self._client
        for model_id in self._captured:
            model = self.widgets.model(model_id)
            if client is not None and model is not None:
                update = _update(model_id, {"outputs": model["state"].get("outputs", [])})
                self._send_comm(client, client.session.msg("comm_msg", update))
        self._captured.clear()

    def _send_comm(self, client: AsyncKernelClient, message: dict[str, Any]) -> None:
        """Send a comm message to the kernel on a shell socket of its own. Sent on the
        runner's, while its reader waits, a reply arriving that moment can go unnoticed (the
        ZMQ socket's edge-triggered readiness is used up by the send) and the run never
        ends. A comm message has no reply: that socket is never read."""
        if isinstance(client, GatewayChannels):  # a WebSocket: no such trouble
            client.shell_channel.send(message)
            return
        if self._comm_client is None:
            comms = AsyncKernelClient()
            comms.load_connection_info(client.get_connection_info())
            comms.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
            self._comm_client = comms
        self._comm_client.shell_channel.send(message)

    # --- the channels ---

    async def _ensure_client(self) -> AsyncKernelClient:
        cached = self._client
        if isinstance(cached, GatewayChannels) and (cached.restarted or not cached.connected):
            self._drop_client()  # restarted (or its gateway gone) between runs: a fresh one
        if self._client is not None:
            return self._client
        deadline = asyncio.get_running_loop().time() + self.policy.kernel_ready_timeout
        kernel = self._kernel()
        while not await kernel.is_alive():  # restarting after a death
            if asyncio.get_running_loop().time() > deadline:
                raise KernelGone(f"kernel {self.kernel_id} did not come back")
            await asyncio.sleep(0.2)
            kernel = self._kernel()
        client: AsyncKernelClient
        if is_gateway_kernel(kernel):  # behind a Kernel Gateway: its WebSocket, no ZMQ ports
            client = GatewayChannels(
                self.kernel_id, event_logger=getattr(kernel, "event_logger", None)
            )
        else:
            client = AsyncKernelClient()
            client.load_connection_info(kernel.get_connection_info())
        client.start_channels(shell=True, iopub=True, stdin=True, hb=False, control=False)
        try:
            await client.wait_for_ready(timeout=self.policy.kernel_ready_timeout)
        except RuntimeError as exc:
            client.stop_channels()
            raise KernelGone(f"kernel {self.kernel_id} does not answer: {exc}") from exc
        self._client, self._pid = client, self._process_id(kernel)
        self._readers = [
            asyncio.ensure_future(self._read_iopub(client)),
            asyncio.ensure_future(self._read(client.shell_channel, self._on_shell)),
            asyncio.ensure_future(self._read(client.stdin_channel, self._on_stdin)),
        ]
        return client

    def _kernel(self) -> Any:
        if self.kernel_id not in self.kernels:
            raise KernelGone(f"kernel {self.kernel_id} was shut down")
        return self.kernels.get_kernel(self.kernel_id)

    @staticmethod
    def _process_id(kernel: Any) -> object:
        provisioner = getattr(kernel, "provisioner", None)
        return getattr(provisioner, "pid", None) or id(provisioner)

    async def _check_kernel(self) -> None:
        kernel = self._kernel()
        if not await kernel.is_alive():
            raise KernelGone("the kernel died while this cell was running")
        client = self._client
        if isinstance(client, GatewayChannels):  # no pid to compare: what the gateway says
            if not client.connected:
                raise KernelGone("the connection to the kernel's gateway closed")
            if client.restarted:
                raise KernelGone("the kernel was restarted while this cell was running")
        elif self._process_id(kernel) != self._pid:
            raise KernelGone("the kernel was restarted while this cell was running")

    def _drop_client(self) -> None:
        self._clear_widgets()  # what it told may be stale without it
        for task in self._readers:
            task.cancel()
        self._readers = []
        if self._client is not None:
            self._client.stop_channels()
            self._client = None
        if self._comm_client is not None:
            self._comm_client.stop_channels()
            self._comm_client = None

    async def _read(self, channel: Any, handle: Callable[[dict[str, Any]], None]) -> None:
        while True:
            msg = await channel.get_msg()
            try:
                handle(msg)
            except Exception:
                log.exception(
                    "kernel %s: cannot handle a %s message", self.kernel_id, msg.get("msg_type")
                )

    async def _read_iopub(self, client: AsyncKernelClient) -> None:
        channel = client.iopub_channel
        loop = asyncio.get_running_loop()
        while True:
            batch = [await channel.get_msg()]
            until = loop.time() + _IOPUB_GATHER
            with contextlib.suppress(Exception):  # queue.Empty: nothing more ready
                while len(batch) < _IOPUB_BATCH and loop.time() < until:
                    batch.append(await channel.get_msg(timeout=0))
            try:
                self._on_iopub(batch)
            except Exception:
                log.exception("kernel %s: cannot write outputs", self.kernel_id)

    def _on_iopub(self, batch: list[dict[str, Any]]) -> None:
        run = self.current
        mine: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []  # display updates from other requests
        for msg in batch:  # in order: a widget's `msg_id` changes between two outputs
            ours = run is not None and msg["parent_header"].get("msg_id") == run.msg_id
            try:
                if self._on_widget_message(msg, run if ours else None):
                    continue
            except Exception:  # the widgets' trouble is not the run's
                log.exception("kernel %s: cannot follow its widgets", self.kernel_id)
            if ours:
                mine.append(msg)
            elif msg["msg_type"] == "update_display_data":
                updates.append(msg)
        if self._captured:
            self._send_captured()
        if run is not None and mine:
            self._write(run, lambda cell: self._apply(run, cell, mine))
            self.on_outputs(run.record.id)
        for msg in updates:
            self._update_elsewhere(msg)

    def _apply(self, run: _Run, cell: Any, messages: list[dict[str, Any]]) -> None:
        for msg in messages:
            try:
                self._apply_one(run, cell, msg)
            except Exception:  # one bad message must not cost the others (or the idle)
                log.exception(
                    "kernel %s: cannot apply a %s message", self.kernel_id, msg["msg_type"]
                )

    def _apply_one(self, run: _Run, cell: Any, msg: dict[str, Any]) -> None:
        msg_type, content = msg["msg_type"], msg["content"]
        timing = run.timing if self.policy.record_timing else {}
        if msg_type == "status":
            state = content.get("execution_state")
            if state == "busy":
                timing["iopub.status.busy"] = _date(msg)
            elif state == "idle":
                timing["iopub.status.idle"] = _date(msg)
                run.idle = True
                run.check_done()
        elif msg_type == "execute_input":
            timing["iopub.execute_input"] = _date(msg)
        elif msg_type == "update_display_data":
            display_id = (content.get("transient") or {}).get("display_id")
            if isinstance(display_id, str):
                run.outputs.update_display(cell, display_id, content)
                self._update_elsewhere(msg)
        else:
            run.outputs.handle(cell, msg_type, content)

    def _update_elsewhere(self, msg: dict[str, Any]) -> None:
        """An `update_display_data` for displays shown by earlier runs, in any cell."""
        display_id = (msg["content"].get("transient") or {}).get("display_id")
        if not isinstance(display_id, str):
            return
        for shown in list(self._displays.values()):
            if display_id in shown.outputs.display_ids:
                self._spawn(self._update_display(shown, display_id, msg["content"]))

    async def _update_display(
        self, shown: _Shown, display_id: str, content: dict[str, Any]
    ) -> None:
        try:
            async with self.rooms.hold(shown.room_id) as room:
                with room.document(EXECUTOR) as doc:
                    shown.outputs.update_display(shown.finder.find(doc), display_id, content)
        except Exception as exc:
            log.warning("cannot update display %s: %s", display_id, exc)

    def _on_shell(self, msg: dict[str, Any]) -> None:
        run = self.current
        mine = run is not None and msg["parent_header"].get("msg_id") == run.msg_id
        if mine and msg["msg_type"] == "execute_reply":
            assert run is not None
            run.reply = msg
            run.check_done()

    def _on_stdin(self, msg: dict[str, Any]) -> None:
        run = self.current
        if msg["msg_type"] != "input_request":
            return
        if run is None or msg["parent_header"].get("msg_id") != run.msg_id:
            return
        content = msg["content"]
        request = {
            "prompt": str(content.get("prompt", "")),
            "password": bool(content.get("password")),
        }
        run.input_parent = msg["header"]
        record = run.record
        record.await_input(request)
        shown = {**request, "execution_id": record.id}
        self._write(run, lambda cell: set_input_request(cell, shown))
        self._spawn(self.persist(record))
        self.emit(EXECUTION, execution_event("input_requested", record))

    # --- life cycle ---

    async def stop(self, reason: str) -> None:
        """Stop: the running execution and the queue are recorded as lost."""
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        run, self.current = self.current, None
        if run is not None:
            run.record.lose(reason)
            self._write(run, mark_idle)
            await self._close(run, "lost")
        jobs, self.queue = list(self.queue), deque()
        for job in jobs:
            await self.finish_unrun(job, "lost", reason)
        self._drop_client()


async def set_idle(rooms: RoomManager, room_id: str, cell_ids: list[str]) -> None:
    """Cells of a document stop showing `[*]` (runs that ended without the kernel)."""
    try:
        async with rooms.hold(room_id) as room:
            with room.document(EXECUTOR) as doc:
                for cell_id in cell_ids:
                    mark_idle(CellFinder(cell_id).find(doc))
    except Exception as exc:
        log.warning("cannot reset cells %s of %s: %s", cell_ids, room_id, exc)


@contextlib.asynccontextmanager
async def _no_room() -> AsyncIterator[None]:
    yield None
