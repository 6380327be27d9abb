"""Execution records through a store that cannot write (a full tmpfs): kept in memory,
written again once the disk has room, the outage reported once and its end once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from jupyter_events.schema import EventSchema
from test_store_faults import fill, small_disk
from yclient import until

from jupyter_datastore.errors import StoreError
from jupyter_datastore.events.catalog import STORE_FAULT, load_schemas
from jupyter_datastore.execution.persist import RecordWriter
from jupyter_datastore.execution.records import ExecutionRecord
from jupyter_datastore.store.sqlite import SQLiteStore

# More than the slack a write-ahead log may have left: each write needs new disk.
BIG = "x = 1\n" * 60_000


def record(execution_id: str) -> ExecutionRecord:
    return ExecutionRecord(id=execution_id, kernel_id="k1", batch_id="b1", code=BIG)


async def test_records_are_kept_through_a_full_disk_and_written_after(tmp_path: Path) -> None:
    emitted: list[tuple[str, dict[str, Any]]] = []
    durable: list[tuple[str, str]] = []
    with small_disk(tmp_path / "disk") as disk:
        store = SQLiteStore(str(disk / "store.db"))
        await store.start()
        writer = RecordWriter(
            store,
            emit=lambda schema, data: emitted.append((schema, data)),
            on_durable=lambda r: durable.append((r.id, r.status)),
            max_delay=0.2,
        )
        try:
            first = record("e1")
            await writer.write_now([first])
            assert durable == [("e1", "queued")]

            filler = fill(disk)
            first.start()
            await writer.write(first)  # the store fails: no error for the kernel's queue
            assert writer.fault is not None
            assert writer.pending == 1
            first.finish("ok", execution_count=1)
            await writer.write(first)  # kept, newest state only
            assert writer.pending == 1
            with pytest.raises(StoreError):  # a new request is refused, not kept
                await writer.write_now([record("e2")])
            assert writer.pending == 1
            await asyncio.sleep(0.5)  # retries fail meanwhile
            stored = await store.get_execution("e1")
            assert stored is not None and stored["status"] == "queued"
            assert [data["recovered"] for _, data in emitted] == [False]

            filler.unlink()
            await until(lambda: writer.fault is None, timeout=10, what="recovery")
            stored = await store.get_execution("e1")
            assert stored is not None and stored["status"] == "ok"
            assert await store.get_execution("e2") is None
            assert durable[-1] == ("e1", "ok")
            assert writer.pending == 0
        finally:
            await writer.close()
            await store.close()

    assert [schema for schema, _ in emitted] == [STORE_FAULT, STORE_FAULT]
    fault, recovered = (data for _, data in emitted)
    assert fault["what"] == recovered["what"] == "execution_records"
    assert fault["operation"] == "put_executions"
    assert fault["room_id"] is None  # the whole store: for owners only
    assert "full" in fault["detail"]
    assert (fault["recovered"], recovered["recovered"]) == (False, True)
    assert recovered["attempts"] >= 3  # the first write, the request, and retries
    schema = EventSchema(next(s for s in load_schemas() if s["$id"] == STORE_FAULT))
    for data in (fault, recovered):
        schema.validate(data)


async def test_a_failed_request_alone_recovers_at_the_next_write(tmp_path: Path) -> None:
    emitted: list[dict[str, Any]] = []
    with small_disk(tmp_path / "disk") as disk:
        store = SQLiteStore(str(disk / "store.db"))
        await store.start()
        writer = RecordWriter(store, emit=lambda schema, data: emitted.append(data))
        try:
            filler = fill(disk)
            for n in range(3):  # one outage, one event, however many requests fail
                with pytest.raises(StoreError):
                    await writer.write_now([record(f"e{n}")])
            assert [data["recovered"] for data in emitted] == [False]
            filler.unlink()
            await writer.write_now([record("e9")])
            assert [data["recovered"] for data in emitted] == [False, True]
            assert emitted[-1]["attempts"] == 3
            assert writer.fault is None
        finally:
            await writer.close()
            await store.close()
