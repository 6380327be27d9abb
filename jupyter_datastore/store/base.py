"""What a store keeps for each document, and the interface every backend implements.

A document's store is an append-only log of Yjs updates, each tagged with the room's
sequence number of its last change. A save records the sequence number whose state was
written to the file and the file's hash, so the state the file holds (the base of a
three-way merge with an out-of-band change) is the merge of the rows up to that number; the
room cuts a row boundary at every save for this reason. When a change on disk was merged
into a document that then stayed unsaved, the file holds a state that is no prefix of the
log: that state is kept as an explicit `base`.

Every row also has the time of its last update: the rows' boundaries are the document's
points in time (its history, see `history`). Compaction (`compaction.py`) merges rows that
are older than the retention into one, and thins the history kept to one point per
`Retention.step`; it never merges across a save's boundary. Merged rows are compressed.
"""

from __future__ import annotations

import lzma
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pycrdt import merge_updates

from ..errors import StoreCorrupt

__all__ = [
    "DocumentInfo",
    "HistoryPoint",
    "NewEvent",
    "Retention",
    "Store",
    "StoredDocument",
    "StoredEvent",
]

RAW, XZ = 0, 1
"""How a row's bytes are encoded: as the update itself, or xz-compressed (LZMA)."""


def encode_row(update: bytes) -> tuple[bytes, int]:
    """A merged row, compressed when that saves space. LZMA: a notebook's Yjs state shrinks
    about 8x (zlib: 4x); it costs 0.4 s of a worker thread per MB to compact, 10 ms to read."""
    if len(update) < 256:
        return update, RAW
    # A dictionary no bigger than the row: compressing takes about 12 times it in memory.
    dict_size = min(max(1 << 16, 1 << (len(update) - 1).bit_length()), 1 << 23)
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": dict_size}]
    packed = lzma.compress(update, format=lzma.FORMAT_XZ, filters=filters)
    return (packed, XZ) if len(packed) < len(update) else (update, RAW)


def decode_row(data: bytes, codec: int) -> bytes:
    if codec == RAW:
        return data
    if codec == XZ:
        try:
            return lzma.decompress(data)
        except lzma.LZMAError as exc:
            raise StoreCorrupt(f"a compressed row does not decompress: {exc}") from exc
    raise StoreCorrupt(f"a row has unknown encoding {codec}")


def merge(updates: list[bytes]) -> bytes:
    if len(updates) == 1:
        return updates[0]
    return merge_updates(*updates)


@dataclass
class StoredDocument:
    updates: list[tuple[int, bytes]] = field(default_factory=list)
    """(sequence number, update) rows in sequence order."""
    saved_seq: int | None = None
    """The last sequence number whose state is known to be in the file."""
    saving_seq: int | None = None
    """A save that began at this sequence number and was not confirmed (a crash mid-save)."""
    file_hash: str | None = None
    """The hash of the file as of `saved_seq` (or as of `base`, when there is one)."""
    base: bytes | None = None
    """The state the file holds, when it is not the state at `saved_seq`."""
    epoch: str = ""
    """Set when the document's row was made, new each time it is made again (after a
    deletion): part of the session id of its room (`Store.document_session_id`). Documents
    stored before epochs existed (schema 2) have the empty one."""

    @property
    def last_seq(self) -> int:
        return self.updates[-1][0] if self.updates else 0

    def state(self) -> bytes | None:
        return merge([u for _, u in self.updates]) if self.updates else None

    def state_at(self, seq: int) -> bytes | None:
        """The document as it was once transaction `seq` had been applied."""
        rows = [u for s, u in self.updates if s <= seq]
        return merge(rows) if rows else None

    def file_state(self) -> bytes | None:
        """The state the file holds: the base of a three-way merge with a change on disk."""
        if self.base is not None:
            return self.base
        return self.state_at(self.saved_seq) if self.saved_seq else None


@dataclass(frozen=True)
class Retention:
    """How much of a document's history the store keeps (see `compaction.py`)."""

    history: float = 7 * 24 * 3600.0
    """Seconds of history kept as points in time; older rows are merged into one."""
    step: float = 60.0
    """Seconds between two points kept in history: the rows of each step are merged."""


@dataclass(frozen=True)
class HistoryPoint:
    """A point in a document's history: the state once update `seq` had been applied."""

    seq: int
    time: float
    """When the last change up to this point was stored (Unix seconds)."""


@dataclass(frozen=True)
class DocumentInfo:
    """What the store holds for one document, without its content."""

    name: str
    rows: int
    size: int
    """Bytes of stored update rows (as stored, compressed or not)."""
    last_seq: int
    saved_seq: int | None
    updated: float


class NewEvent(NamedTuple):
    """An event to append: the log gives it its id."""

    schema_id: str
    version: str
    timestamp: str
    data: dict[str, Any]


@dataclass(frozen=True)
class StoredEvent:
    """One event of the durable event log; ids grow with every event."""

    id: int
    schema_id: str
    version: str
    timestamp: str
    data: dict[str, Any]


class Store(ABC):
    """Durable per-document update logs, and the records of executions.

    Every method is safe to call from the event loop.
    """

    session_id: str
    """Identifies this store's content: clients that synced with it send it back on reconnect."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def load(self, name: str) -> StoredDocument | None: ...

    @abstractmethod
    async def epoch(self, name: str, *, renew: bool = False) -> str:
        """The document's epoch, its row made (with a new one) if there is none; `renew`:
        give it a new one, as its rows are made again (from its file)."""

    def document_session_id(self, epoch: str) -> str:
        """The session id of a document room: this store's, and the epoch of the document's
        rows (none for an empty epoch). Opaque to clients, which send it back."""
        return f"{self.session_id}.{epoch}" if epoch else self.session_id

    def is_own_session_id(self, session_id: str) -> bool:
        """Whether `session_id` is this store's, or a document room's of this store."""
        return session_id.split(".", 1)[0] == self.session_id

    @abstractmethod
    async def append(self, name: str, seq: int, update: bytes) -> None:
        """Durably append one update; returns once it is committed."""

    @abstractmethod
    async def mark_saving(self, name: str, seq: int) -> None: ...

    @abstractmethod
    async def mark_saved(self, name: str, seq: int, file_hash: str) -> None: ...

    @abstractmethod
    async def mark_merged(self, name: str, base: bytes, file_hash: str) -> None:
        """The file, with this hash, holds `base`: a merged change on disk that stays unsaved."""

    @abstractmethod
    async def history(self, name: str) -> list[HistoryPoint]:
        """The document's points in time (its rows' boundaries), oldest first."""

    @abstractmethod
    async def compact(self, name: str, retention: Retention, now: float | None = None) -> int:
        """Merge rows as `compaction.plan` says, off the event loop; returns rows removed.

        Rows appended meanwhile are untouched; a concurrent compaction of the same
        document makes this one change nothing."""

    @abstractmethod
    async def documents(self) -> list[DocumentInfo]:
        """Every document the store holds, by name."""

    @abstractmethod
    async def delete_document(self, name: str) -> None:
        """Forget a document and its rows (a fork merged or dropped)."""

    @abstractmethod
    async def counts(self) -> dict[str, int]:
        """Rows of each kind of record: events, executions, notifications, permissions, forks."""

    @abstractmethod
    async def check_integrity(self) -> list[str]:
        """The backend's own check of its files or tables; an empty list when sound."""

    def location(self) -> str:
        """Where the store is, for messages (no credentials)."""
        return type(self).__name__

    async def size_on_disk(self) -> int | None:
        """Bytes the store takes where it keeps its data, when the backend can tell."""
        return None

    # --- forks (see `documents/forks.py`): JSON info keyed by fork id ---

    @abstractmethod
    async def put_fork(self, fork_id: str, root: str, info: dict[str, Any]) -> None: ...

    @abstractmethod
    async def forks(self, root: str | None = None) -> dict[str, dict[str, Any]]:
        """Forks (of `root`, or all), by id; each info has its "root_roomid"."""

    @abstractmethod
    async def delete_fork(self, fork_id: str) -> None: ...

    # --- execution records (see `execution/records.py`): JSON objects keyed by "id" ---

    @abstractmethod
    async def put_executions(self, records: Sequence[dict[str, Any]]) -> None:
        """Insert or replace records, in one commit; returns once it is committed."""

    @abstractmethod
    async def get_execution(self, execution_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    async def list_executions(
        self,
        *,
        room: str | None = None,
        kernel_id: str | None = None,
        statuses: Sequence[str] = (),
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Records, newest first, filtered by room, kernel and status when given."""

    @abstractmethod
    async def prune_executions(self, keep: int) -> int:
        """Delete all but the newest `keep` finished records; returns how many went."""

    # --- the event log (see `events/`) ---

    @abstractmethod
    async def append_events(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        """Durably append events in one commit; returns them with their ids (growing, in
        the order given) once committed."""

    async def append_event(
        self, schema_id: str, version: str, timestamp: str, data: dict[str, Any]
    ) -> StoredEvent:
        """Durably append one event; returns it with its id once committed."""
        [event] = await self.append_events([NewEvent(schema_id, version, timestamp, data)])
        return event

    @abstractmethod
    async def read_events(
        self, since: int, *, schema_ids: Sequence[str] = (), limit: int = 1000
    ) -> list[StoredEvent]:
        """Events with an id above `since`, oldest first."""

    @abstractmethod
    async def last_event_id(self) -> int: ...

    @abstractmethod
    async def prune_events(self, keep: int) -> int:
        """Delete all but the newest `keep` events; returns how many went."""

    @abstractmethod
    async def put_event_schema(self, schema: dict[str, Any]) -> None:
        """Keep a schema registered over REST, so that it is registered again at start."""

    @abstractmethod
    async def event_schemas(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def get_cursor(self, name: str) -> int:
        """The last event id a named consumer of the event log has processed (0: none)."""

    @abstractmethod
    async def set_cursor(self, name: str, event_id: int) -> None:
        """Record a consumer's position in the event log; returns once it is committed."""

    # --- notifications (see `notifications/`): JSON objects with "id" and "recipient" ---

    @abstractmethod
    async def put_notifications(self, notifications: Sequence[dict[str, Any]]) -> None:
        """Insert or replace, in one commit."""

    @abstractmethod
    async def list_notifications(
        self,
        recipient: str,
        *,
        unread: bool | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """A recipient's notifications, newest first; `since`/`until` bound `created_at`."""

    @abstractmethod
    async def get_notification(self, recipient: str, notification_id: str) -> dict[str, Any] | None:
        """One notification, only if it is the recipient's."""

    @abstractmethod
    async def delete_notification(self, recipient: str, notification_id: str) -> bool:
        """Delete a recipient's notification; False if they have none with that id."""

    @abstractmethod
    async def get_permissions(self) -> dict[str, dict[str, Any]]:
        """Every permission rule, by the path it is set on ("" is the root)."""

    @abstractmethod
    async def put_permission(self, path: str, rule: dict[str, Any] | None) -> None:
        """Set the rule on a path; None removes it."""
