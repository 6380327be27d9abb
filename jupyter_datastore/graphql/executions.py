"""Server-side runs of notebook cells over GraphQL, decided as REST decides them
(`handlers/executions.py`): running, cancelling and answering input need the runner role on
the notebook, reading a record the viewer role. A record of a notebook the caller may not
view is not found (its path is not told), and is left out of lists."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, get_args

import strawberry
from strawberry.scalars import JSON

from ..auth import Role
from ..errors import BadRequest
from ..execution.records import ExecutionRecord, Status
from ..execution.service import ExecuteRequest
from .context import Caller, Info
from .limits import page_size
from .paging import Connection, Edge, PageInfo
from .streams import Pipe

__all__ = ["Mutation", "Query", "Subscription"]

STATUSES: tuple[str, ...] = get_args(Status)


@strawberry.type(description="The exception a failed cell raised.")
class ExecutionError:
    ename: str = strawberry.field(description="The exception's class name.")
    evalue: str = strawberry.field(description="The exception's message.")


@strawberry.type(description="What the running code asks for, with `input()` or `getpass()`.")
class InputRequest:
    prompt: str
    password: bool = strawberry.field(description="The answer is a password (not shown).")


@strawberry.type(
    description="One cell's run on the server (as GET /api/datastore/executions/{id})."
)
class Execution:
    id: strawberry.ID
    path: str | None = strawberry.field(description="The notebook's path.")
    cell_id: str | None
    kernel_id: str
    batch_id: str = strawberry.field(description="The same for the cells of one request.")
    user: str | None = strawberry.field(description="Who asked for it.")
    status: str = strawberry.field(
        description="queued, running, awaiting_input, ok, error, cancelled, interrupted or lost"
    )
    execution_count: int | None
    queued_at: str = strawberry.field(description="ISO 8601, UTC.")
    started_at: str | None = strawberry.field(description="ISO 8601, UTC.")
    finished_at: str | None = strawberry.field(description="ISO 8601, UTC.")
    duration: float | None = strawberry.field(
        description="Seconds from its start to its end, once finished."
    )
    outputs: list[JSON] = strawberry.field(
        description="The nbformat outputs: so far while it runs, all of them once finished."
    )
    error: ExecutionError | None = strawberry.field(description="Set when the code raised.")
    reason: str | None = strawberry.field(
        description="Why it was cancelled, lost or interrupted, or failed outside the code."
    )
    pending_input: InputRequest | None = strawberry.field(
        description="What the code waits for while awaiting_input (answer with answerInput)."
    )
    finished: bool = strawberry.field(description="It has ended: its status will not change.")


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def execution(record: ExecutionRecord, outputs: list[dict[str, Any]] | None = None) -> Execution:
    """The GraphQL view of a record; `outputs` instead of the record's own when given."""
    duration = None
    if record.started_at and record.finished_at and not record.active:
        duration = round(_seconds(record.finished_at) - _seconds(record.started_at), 6)
    error = record.error
    asked = record.input_request
    return Execution(
        id=strawberry.ID(record.id),
        path=record.path,
        cell_id=record.cell_id,
        kernel_id=record.kernel_id,
        batch_id=record.batch_id,
        user=record.user,
        status=record.status,
        execution_count=record.execution_count,
        queued_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        duration=duration,
        outputs=[JSON(output) for output in (record.outputs if outputs is None else outputs)],
        error=ExecutionError(ename=str(error.get("ename", "")), evalue=str(error.get("evalue", "")))
        if error
        else None,
        reason=record.reason,
        pending_input=InputRequest(
            prompt=str(asked.get("prompt", "")), password=bool(asked.get("password"))
        )
        if asked and record.status == "awaiting_input"
        else None,
        finished=not record.active,
    )


async def _visible_record(caller: Caller, execution_id: str) -> ExecutionRecord:
    """The record, if the caller may view its notebook; else not found, as if unknown."""
    return await _record_for(caller, execution_id, Role.VIEWER, "read an execution")


async def _record_for(
    caller: Caller, execution_id: str, needed: Role, operation: str
) -> ExecutionRecord:
    """As REST decides (`Executor.get_for`): not found for who may not view its notebook,
    Forbidden for a role short of `needed`."""
    return await caller.datastore.executor.get_for(caller.user, execution_id, needed, operation)


@strawberry.type
class Query:
    @strawberry.field(
        description="Execution records, newest first (the newest 1000, as GET "
        "/api/datastore/executions), of the notebooks the caller may view: of one notebook "
        "(`path`), in one status (`status`). Paged: `after` is a previous page's endCursor "
        "(an execution id)."
    )
    async def executions(
        self,
        info: Info,
        path: str | None = None,
        status: str | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Execution]:
        caller = info.context
        size = page_size(first)
        if status is not None and status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        executor = caller.datastore.executor
        records = await executor.find(
            path=caller.datastore.paths.file(path) if path is not None else None
        )
        visible = [
            r for r in records if (status is None or r.status == status) and caller.may_view(r.path)
        ]
        start = 0
        if after is not None:
            ids = [r.id for r in visible]
            if after not in ids:
                raise BadRequest(f"after: {after!r} is not a cursor of this list")
            start = ids.index(after) + 1
        page = visible[start : start + size]
        return Connection(
            edges=[Edge(cursor=r.id, node=execution(executor.live(r.id) or r)) for r in page],
            page_info=PageInfo(
                has_next_page=start + size < len(visible),
                end_cursor=page[-1].id if page else None,
            ),
        )

    @strawberry.field(description="One execution record, with its outputs.")
    async def execution(self, info: Info, id: strawberry.ID) -> Execution:
        return execution(await _visible_record(info.context, str(id)))


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Run cells of a notebook on its kernel, in order (as POST "
        "/api/datastore/executions): the records, queued. Needs the runner role."
    )
    async def run_cells(self, info: Info, path: str, cell_ids: list[str]) -> list[Execution]:
        caller = info.context
        datastore = caller.datastore
        request = ExecuteRequest(
            cell_ids=cell_ids, path=datastore.paths.file(path), user=caller.user
        )
        # The executor checks the cells, then the runner role on the notebook (Forbidden).
        return [execution(r) for r in await datastore.executor.submit(request)]

    @strawberry.mutation(
        description="Cancel a queued execution, or interrupt a running one (conflict once it "
        "has ended). Needs the runner role."
    )
    async def cancel_execution(self, info: Info, id: strawberry.ID) -> Execution:
        caller = info.context
        await _record_for(caller, str(id), Role.RUNNER, "cancel an execution")
        return execution(await caller.datastore.executor.cancel(str(id)))

    @strawberry.mutation(
        description="Answer what an execution waits for (`pendingInput`); conflict when it "
        "waits for nothing. Needs the runner role. The answer is not recorded."
    )
    async def answer_input(self, info: Info, id: strawberry.ID, value: str) -> Execution:
        caller = info.context
        await _record_for(caller, str(id), Role.RUNNER, "answer an input prompt")
        return execution(await caller.datastore.executor.answer(str(id), value))


@dataclass
class _Watch:
    """What changes of one execution put in a subscription's pipe: a snapshot of the record
    at each change of its status; None when outputs arrived (one waits at most: the reader
    takes the outputs as they are when it gets there)."""

    pipe: Pipe[ExecutionRecord | None] = field(default_factory=Pipe)
    record: ExecutionRecord | None = None
    """The live record (the executor changes it in place), once read."""
    status: str | None = None
    """Its status in the last snapshot put."""
    outputs_waiting: bool = False

    def changed(self) -> None:
        record = self.record
        if record is None:
            return
        if record.status != self.status:
            self.status = record.status
            self.pipe.put(dataclasses.replace(record, outputs=list(record.outputs)))
            if not record.active:
                self.pipe.end()
        elif not self.outputs_waiting:
            self.outputs_waiting = True
            self.pipe.put(None)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="An execution as it is now, then again at each change of its status and "
        "each time outputs arrive (`outputs`: all of them so far; output changes that come "
        "faster than the subscriber reads are merged). Ends once it has finished."
    )
    async def execution_progress(
        self, info: Info, id: strawberry.ID
    ) -> AsyncGenerator[Execution, None]:
        caller = info.context
        executor = caller.datastore.executor
        execution_id = str(id)
        watch = _Watch()
        unwatch = executor.watch(execution_id, watch.changed)  # before the read: none missed
        try:
            record = await _visible_record(caller, execution_id)
            watch.record, watch.status = record, record.status
            now = execution(record)
            yield now
            if not record.active:
                return
            last_outputs = list(record.outputs)
            current = record
            async for item in watch.pipe:
                if item is None:
                    watch.outputs_waiting = False
                    if not current.active:
                        continue
                else:
                    current = item
                live = executor.live(execution_id) if current.active else None
                outputs = live.outputs if live is not None else current.outputs
                if item is None and outputs == last_outputs:
                    continue
                last_outputs = list(outputs)
                yield execution(current, outputs=last_outputs)
        finally:
            unwatch()
