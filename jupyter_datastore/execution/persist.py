"""Execution records into the store, through a store outage.

A record is written at every change of status. When the store fails (a full disk, a lost
database), the record stays in memory, where `Executor.get` finds it, and is written again
with back-off (`first_delay` doubling to `max_delay` seconds) until the store takes it;
meanwhile every later change is kept for that retry, newest state only, and the kernel's
queue goes on. The outage is reported once, by the `store_fault` event (`what`:
`execution_records`; no room, so for owners only) and one log line, and its end once, by the
event with `recovered: true`.

A new request is different: its caller is waiting, so `write_now` raises `StoreError`
(503) and nothing is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from ..errors import StoreError
from ..events.catalog import Emit, no_emit
from ..events.faults import FaultReport
from ..store.base import Store
from .records import ExecutionRecord

__all__ = ["RecordWriter"]

log = logging.getLogger(__name__)

WHAT = "execution_records"


class RecordWriter:
    def __init__(
        self,
        store: Store,
        *,
        emit: Emit = no_emit,
        on_durable: Callable[[ExecutionRecord], None] = lambda record: None,
        first_delay: float = 0.1,
        max_delay: float = 5.0,
    ) -> None:
        self.store = store
        self.emit = emit
        self.on_durable = on_durable
        """Called with each record once its latest state is in the store."""
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.faults = FaultReport(emit, what=WHAT, subject="execution records", log=log)
        self._pending: dict[str, ExecutionRecord] = {}
        self._wake = asyncio.Event()
        self._retry: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Records kept in memory until the store takes them."""
        return len(self._pending)

    async def write(self, record: ExecutionRecord) -> None:
        """Write a record's current state; during an outage, keep it for the retry."""
        if self._pending:  # the retry writes it, after the ones kept before
            self._pending[record.id] = record
            return
        try:
            await self._put([record])
        except StoreError as exc:
            self._pending[record.id] = record
            self._failed(exc)
            return
        self.faults.succeeded()
        self.on_durable(record)

    async def write_now(self, records: list[ExecutionRecord]) -> None:
        """Write new records in one commit, or raise `StoreError` (the outage is reported)."""
        try:
            await self._put(records)
        except StoreError as exc:
            self._failed(exc)
            raise
        if self._pending:
            self._wake.set()  # the store takes writes again: retry the kept ones now
        else:
            self.faults.succeeded()
        for record in records:
            self.on_durable(record)

    async def close(self) -> None:
        """Stop retrying, after one last try at what is kept."""
        if self._retry is not None:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)
            self._retry = None
        if self._pending:
            try:
                await self._put(self._pending.values())
            except StoreError as exc:
                log.error(
                    "%d execution records are lost with the store's fault: %s",
                    len(self._pending),
                    exc,
                )
            self._pending.clear()

    async def _put(self, records: Iterable[ExecutionRecord]) -> None:
        rows = [record.stored() for record in records]
        if rows:
            await self.store.put_executions(rows)

    @property
    def fault(self) -> str | None:
        """The error of the store outage under way, if one is."""
        return self.faults.fault

    def _failed(self, exc: StoreError) -> None:
        self.faults.failed("put_executions", exc)
        if self._pending and (self._retry is None or self._retry.done()):
            self._retry = asyncio.ensure_future(self._retrying())

    async def _retrying(self) -> None:
        delay = self.first_delay
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            batch, self._pending = self._pending, {}
            try:
                await self._put(batch.values())
            except StoreError as exc:
                self._pending = {**batch, **self._pending}  # changed meanwhile: the newer
                self._failed(exc)
                delay = min(delay * 2, self.max_delay)
                continue
            for record in batch.values():
                if record.id not in self._pending:
                    self.on_durable(record)
            if self._pending:  # changed while the batch was written
                self._wake.set()
                continue
            self.faults.succeeded()
            return
