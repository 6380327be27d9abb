"""The `Store` over SQL, written once for every backend: reads, writes, filters, compaction.

A backend gives four ways to run statements and keeps what is its own (connections,
threads, locks): `_query` (one read), `_run` (one write, committed when it returns), and
`_read` / `_write`, which drive a `schema.Steps` generator in one snapshot or one
transaction. The statements come from `schema.py`, spelled by the backend's `Dialect`.
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import abstractmethod
from collections.abc import Sequence
from functools import partial
from typing import Any

from ..errors import StoreError
from ..execution.records import ACTIVE
from .base import (
    RAW,
    DocumentInfo,
    HistoryPoint,
    NewEvent,
    Retention,
    Store,
    StoredDocument,
    StoredEvent,
    decode_row,
    encode_row,
    merge,
)
from .compaction import Run, plan
from .schema import Dialect, Many, Statement, Steps, new_epoch

__all__ = ["SQLStore"]

_DOC_ROW = "SELECT id, epoch FROM documents WHERE name = ?"

APPEND = "INSERT INTO updates (doc, seq, data, time) VALUES (?, ?, ?, ?)"
RECORDS = ("events", "executions", "notifications", "permissions", "forks")
"""The tables `counts` reports."""


class _Changed(Exception):
    """The rows to swap changed since they were read: the compaction is abandoned."""


def one(query: str, *args: Any) -> Steps:
    """One statement, as steps."""
    return (yield (query, args))


def one_many(query: str, rows: Sequence[Sequence[Any]]) -> Steps:
    """One statement for each row of parameters, as steps."""
    yield Many(query, rows)


class SQLStore(Store):
    dialect: Dialect

    def __init__(self) -> None:
        self.session_id = ""
        self._doc_ids: dict[str, int] = {}
        """Ids of documents known committed; a failed transaction drops them all."""

    # --- what a backend provides ---

    @abstractmethod
    async def _read(self, steps: Steps) -> Any:
        """Drive `steps` in one read-only snapshot."""

    @abstractmethod
    async def _write(self, steps: Steps) -> Any:
        """Drive `steps` in one transaction; returns once it is committed."""

    async def _query(self, query: str, *args: Any) -> list[Any]:
        """The rows of one read."""
        return list(await self._read(one(query, *args)))

    async def _run(self, query: str, *args: Any) -> Any:
        """One write, committed when this returns: its rows (RETURNING) or rows changed."""
        return await self._write(one(query, *args))

    def _gone(self, exc: StoreError) -> bool:
        """Whether `exc` says a document whose id was known is gone (deleted elsewhere)."""
        return False

    def _event_order(self) -> Steps:
        """Statements before an event's insertion, so that ids commit in order."""
        yield from ()

    def _compacted(self) -> None:
        """Called after a compaction removed rows."""

    # --- documents ---

    def _doc_id(self, name: str) -> Steps:
        """A document's id, its row made if new (by whichever server comes first)."""
        cached = self._doc_ids.get(name)
        if cached is not None:
            return cached
        doc_id, _ = yield from self._doc_row(name)
        return doc_id

    def _doc_row(self, name: str) -> Steps:
        """A document's id and epoch, its row made (with a new epoch) if new."""
        found = yield (_DOC_ROW, (name,))
        if not found:
            found = yield (
                "INSERT INTO documents (name, updated, epoch) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id, epoch",
                (name, time.time(), new_epoch()),
            )
        return int(found[0][0]), str(found[0][1])

    async def epoch(self, name: str, *, renew: bool = False) -> str:
        found = [] if renew else await self._query(_DOC_ROW, name)  # the common case: a read
        if found:
            self._doc_ids[name] = int(found[0][0])
            return str(found[0][1])

        def write() -> Steps:
            if renew:
                renewed = yield (
                    "UPDATE documents SET epoch = ? WHERE name = ? RETURNING id, epoch",
                    (new_epoch(), name),
                )
                if renewed:
                    return int(renewed[0][0]), str(renewed[0][1])
            return (yield from self._doc_row(name))

        doc_id, epoch = await self._write(write())
        self._doc_ids[name] = int(doc_id)  # the row may be another than the one known before
        return str(epoch)

    async def load(self, name: str) -> StoredDocument | None:
        def read() -> Steps:
            doc = yield (
                "SELECT id, saved_seq, saving_seq, file_hash, base, epoch FROM documents"
                " WHERE name = ?",
                (name,),
            )
            if not doc:
                return None, []
            rows = yield (
                "SELECT seq, data, codec FROM updates WHERE doc = ? ORDER BY seq",
                (doc[0][0],),
            )
            return doc[0], rows

        doc, rows = await self._read(read())
        if doc is None:
            return None

        def decode() -> list[tuple[int, bytes]]:
            return [(int(seq), decode_row(bytes(data), codec)) for seq, data, codec in rows]

        compressed = any(codec != RAW for _, _, codec in rows)
        return StoredDocument(
            updates=await asyncio.to_thread(decode) if compressed else decode(),
            saved_seq=doc[1],
            saving_seq=doc[2],
            file_hash=doc[3],
            base=bytes(doc[4]) if doc[4] is not None else None,
            epoch=str(doc[5]),
        )

    async def append(self, name: str, seq: int, update: bytes) -> None:
        now = time.time()
        doc_id = self._doc_ids.get(name)
        if doc_id is not None:
            # The hot path: one statement, committed on its own.
            try:
                await self._run(APPEND, doc_id, seq, update, now)
                return
            except StoreError as exc:
                if not self._gone(exc):
                    raise
                self._doc_ids.pop(name, None)  # deleted meanwhile: the document starts over

        def write() -> Steps:
            made = yield from self._doc_id(name)
            yield (APPEND, (made, seq, update, now))
            return made

        self._doc_ids[name] = await self._write(write())

    async def mark_saving(self, name: str, seq: int) -> None:
        await self._set(name, saving_seq=seq)

    async def mark_saved(self, name: str, seq: int, file_hash: str) -> None:
        await self._set(name, saved_seq=seq, saving_seq=None, file_hash=file_hash, base=None)

    async def mark_merged(self, name: str, base: bytes, file_hash: str) -> None:
        await self._set(name, base=base, file_hash=file_hash)

    async def _set(self, name: str, **columns: Any) -> None:
        """Set columns of a document's row, made if new (with a new epoch): one statement."""
        names = ["name", "epoch", "updated", *columns]
        assignments = ", ".join(f"{column} = excluded.{column}" for column in names[2:])
        found = await self._run(
            f"INSERT INTO documents ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
            f" ON CONFLICT (name) DO UPDATE SET {assignments} RETURNING id",
            name,
            new_epoch(),
            time.time(),
            *columns.values(),
        )
        self._doc_ids[name] = int(found[0][0])

    async def history(self, name: str) -> list[HistoryPoint]:
        rows = await self._query(
            "SELECT u.seq, u.time FROM updates u JOIN documents d ON u.doc = d.id"
            " WHERE d.name = ? ORDER BY u.seq",
            name,
        )
        return [HistoryPoint(int(seq), float(t)) for seq, t in rows]

    async def compact(self, name: str, retention: Retention, now: float | None = None) -> int:
        """Plan and read in one snapshot, merge in a worker thread, then swap the rows in one
        transaction that gives up if any of them changed meanwhile."""
        moment = time.time() if now is None else now

        def read() -> Steps:
            doc = yield ("SELECT id, saved_seq, saving_seq FROM documents WHERE name = ?", (name,))
            if not doc:
                return 0, []
            doc_id, saved, saving = doc[0]
            found = yield ("SELECT seq, time FROM updates WHERE doc = ? ORDER BY seq", (doc_id,))
            rows = [(int(seq), float(t)) for seq, t in found]
            runs = yield partial(plan, rows, {saved, saving} - {None}, retention, moment)
            if not runs:
                return 0, []
            data = yield (
                "SELECT seq, data, codec, time FROM updates"
                " WHERE doc = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                (doc_id, runs[0][0], runs[-1][1]),
            )
            return int(doc_id), _grouped(runs, data)

        doc_id, found = await self._read(read())
        if not found:
            return 0

        def merge_all() -> list[tuple[Run, int, bytes, float, int]]:
            merged = []
            for run, rows in found:
                data, codec = encode_row(merge([decode_row(bytes(r[1]), r[2]) for r in rows]))
                merged.append((run, len(rows), data, float(rows[-1][3]), codec))
            return merged

        merged = await asyncio.to_thread(merge_all)

        def swap() -> Steps:
            removed = 0
            for (first, last), count, data, last_time, codec in merged:
                deleted = yield (
                    "DELETE FROM updates WHERE doc = ? AND seq BETWEEN ? AND ?",
                    (doc_id, first, last),
                )
                if deleted != count:  # compacted meanwhile by someone else
                    raise _Changed
                yield (
                    "INSERT INTO updates (doc, seq, data, time, codec) VALUES (?, ?, ?, ?, ?)",
                    (doc_id, last, data, last_time, codec),
                )
                removed += count - 1
            return removed

        try:
            removed = int(await self._write(swap()))
        except _Changed:
            return 0
        self._compacted()
        return removed

    async def documents(self) -> list[DocumentInfo]:
        rows = await self._query(
            "SELECT d.name, COUNT(u.seq), COALESCE(SUM(LENGTH(u.data)), 0),"
            " COALESCE(MAX(u.seq), 0), d.saved_seq, d.updated"
            " FROM documents d LEFT JOIN updates u ON u.doc = d.id"
            " GROUP BY d.id ORDER BY d.name"
        )
        return [
            DocumentInfo(r[0], int(r[1]), int(r[2]), int(r[3]), r[4], float(r[5])) for r in rows
        ]

    async def delete_document(self, name: str) -> None:
        def write() -> Steps:
            yield (
                "DELETE FROM updates WHERE doc IN (SELECT id FROM documents WHERE name = ?)",
                (name,),
            )
            yield ("DELETE FROM documents WHERE name = ?", (name,))

        await self._write(write())
        self._doc_ids.pop(name, None)

    async def counts(self) -> dict[str, int]:
        [row] = await self._query(
            "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {t})" for t in RECORDS)
        )
        return {table: int(count) for table, count in zip(RECORDS, row, strict=True)}

    # --- forks ---

    async def put_fork(self, fork_id: str, root: str, info: dict[str, Any]) -> None:
        upsert = self.dialect.upsert("forks", ("id", "root", "info"), "id")
        await self._run(upsert, fork_id, root, json.dumps(info))

    async def forks(self, root: str | None = None) -> dict[str, dict[str, Any]]:
        if root is None:
            rows = await self._query("SELECT id, info FROM forks")
        else:
            rows = await self._query("SELECT id, info FROM forks WHERE root = ?", root)
        return {fork_id: json.loads(info) for fork_id, info in rows}

    async def delete_fork(self, fork_id: str) -> None:
        await self._run("DELETE FROM forks WHERE id = ?", fork_id)

    # --- execution records ---

    async def put_executions(self, records: Sequence[dict[str, Any]]) -> None:
        columns = ("id", "room", "kernel_id", "status", "created", "data")
        rows = [
            (
                r["id"],
                r.get("room_id"),
                r.get("kernel_id"),
                r["status"],
                r["created_at"],
                json.dumps(r),
            )
            for r in records
        ]
        # A replaced record counts as the newest of its `created`.
        upsert = self.dialect.upsert("executions", columns, "id", renumber=True)
        await self._write(one_many(upsert, rows))

    async def get_execution(self, execution_id: str) -> dict[str, Any] | None:
        rows = await self._query("SELECT data FROM executions WHERE id = ?", execution_id)
        return dict(json.loads(rows[0][0])) if rows else None

    async def list_executions(
        self,
        *,
        room: str | None = None,
        kernel_id: str | None = None,
        statuses: Sequence[str] = (),
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        where: list[Statement] = [
            (f"{column} = ?", (value,))
            for column, value in (("room", room), ("kernel_id", kernel_id))
            if value is not None
        ]
        if statuses:
            where.append(self.dialect.one_of("status", statuses))
        return await self._newest("executions", where, limit)

    async def _newest(self, table: str, where: list[Statement], limit: int) -> list[dict[str, Any]]:
        """The JSON `data` of a table's rows matching all conditions, newest first."""
        rows = await self._query(
            f"SELECT data FROM {table} WHERE {' AND '.join(w for w, _ in where) or '1 = 1'}"
            f" ORDER BY created DESC, {self.dialect.order} DESC LIMIT ?",
            *(value for _, values in where for value in values),
            limit,
        )
        return [dict(json.loads(row[0])) for row in rows]

    async def prune_executions(self, keep: int) -> int:
        finished, active = self.dialect.one_of("status", sorted(ACTIVE), negate=True)
        return int(
            await self._run(
                f"DELETE FROM executions WHERE {finished}"
                " AND id NOT IN (SELECT id FROM executions ORDER BY created DESC LIMIT ?)",
                *active,
                keep,
            )
        )

    # --- the event log ---

    async def append_events(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        def write() -> Steps:
            yield from self._event_order()
            ids = []
            for event in events:
                found = yield (
                    "INSERT INTO events (schema_id, version, timestamp, data)"
                    " VALUES (?, ?, ?, ?) RETURNING id",
                    (event.schema_id, event.version, event.timestamp, json.dumps(event.data)),
                )
                ids.append(int(found[0][0]))
            return ids

        if not events:
            return []
        ids = await self._write(write())
        return [StoredEvent(i, *event) for i, event in zip(ids, events, strict=True)]

    async def read_events(
        self, since: int, *, schema_ids: Sequence[str] = (), limit: int = 1000
    ) -> list[StoredEvent]:
        query = "SELECT id, schema_id, version, timestamp, data FROM events WHERE id > ?"
        values: list[Any] = [since]
        if schema_ids:
            condition, listed = self.dialect.one_of("schema_id", schema_ids)
            query += f" AND {condition}"
            values.extend(listed)
        rows = await self._query(query + " ORDER BY id LIMIT ?", *values, limit)
        return [StoredEvent(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    async def last_event_id(self) -> int:
        [(found,)] = await self._query("SELECT COALESCE(MAX(id), 0) FROM events")
        return int(found)

    async def prune_events(self, keep: int) -> int:
        return int(
            await self._run(
                "DELETE FROM events WHERE id <= (SELECT COALESCE(MAX(id), 0) FROM events) - ?",
                keep,
            )
        )

    async def put_event_schema(self, schema: dict[str, Any]) -> None:
        upsert = self.dialect.upsert("event_schemas", ("id", "schema"), "id")
        await self._run(upsert, str(schema["$id"]), json.dumps(schema))

    async def event_schemas(self) -> list[dict[str, Any]]:
        rows = await self._query("SELECT schema FROM event_schemas")
        return [dict(json.loads(r[0])) for r in rows]

    async def get_cursor(self, name: str) -> int:
        rows = await self._query("SELECT value FROM meta WHERE key = ?", f"cursor:{name}")
        return int(rows[0][0]) if rows else 0

    async def set_cursor(self, name: str, event_id: int) -> None:
        upsert = self.dialect.upsert("meta", ("key", "value"), "key")
        await self._run(upsert, f"cursor:{name}", str(event_id))

    # --- notifications ---

    async def put_notifications(self, notifications: Sequence[dict[str, Any]]) -> None:
        flag = self.dialect.flag
        columns = ("id", "recipient", "created", "read", "data")
        rows = [
            (n["id"], n["recipient"], n["created_at"], flag(bool(n.get("read"))), json.dumps(n))
            for n in notifications
        ]
        upsert = self.dialect.upsert("notifications", columns, "id", renumber=True)
        await self._write(one_many(upsert, rows))

    async def list_notifications(
        self,
        recipient: str,
        *,
        unread: bool | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        read = None if unread is None else self.dialect.flag(not unread)
        where: list[Statement] = [("recipient = ?", (recipient,))]
        for condition, value in (
            ("read = ?", read),
            ("created >= ?", since),
            ("created < ?", until),
        ):
            if value is not None:
                where.append((condition, (value,)))
        return await self._newest("notifications", where, limit)

    async def get_notification(self, recipient: str, notification_id: str) -> dict[str, Any] | None:
        rows = await self._query(
            "SELECT data FROM notifications WHERE id = ? AND recipient = ?",
            notification_id,
            recipient,
        )
        return dict(json.loads(rows[0][0])) if rows else None

    async def delete_notification(self, recipient: str, notification_id: str) -> bool:
        deleted = await self._run(
            "DELETE FROM notifications WHERE id = ? AND recipient = ?", notification_id, recipient
        )
        return int(deleted) > 0

    # --- permissions ---

    async def get_permissions(self) -> dict[str, dict[str, Any]]:
        rows = await self._query("SELECT path, rule FROM permissions")
        return {path: json.loads(rule) for path, rule in rows}

    async def put_permission(self, path: str, rule: dict[str, Any] | None) -> None:
        if rule is None:
            await self._run("DELETE FROM permissions WHERE path = ?", path)
        else:
            upsert = self.dialect.upsert("permissions", ("path", "rule"), "path")
            await self._run(upsert, path, json.dumps(rule))


def _grouped(runs: list[Run], rows: Sequence[Any]) -> list[tuple[Run, list[Any]]]:
    """The rows of each run (rows between runs, kept alone, are left out)."""
    grouped: list[tuple[Run, list[Any]]] = [(run, []) for run in runs]
    index = 0
    for row in rows:
        while index < len(runs) and row[0] > runs[index][1]:
            index += 1
        if index < len(runs) and row[0] >= runs[index][0]:
            grouped[index][1].append(row)
    return grouped
