"""The event bus: jupyter_server's EventLogger, made durable, replayable and filterable.

Every event emitted on the server's `EventLogger`, for any schema registered now or later
(jupyter_server's own, other extensions', ours, and those registered over REST), is
appended to the store's event log with an id that only grows and a timestamp, and then
handed to the subscriptions whose filter accepts it. A subscriber that comes back with the
last id it saw gets everything after it from the log, so nothing is missed while it was away
(within the retention limit: the newest `keep` events, pruned as the log grows).

Events posted over REST are validated and stored before the request is answered, and are
then emitted on the EventLogger too, so its logging handlers and other listeners see them;
the bus's own listener recognises them (a context variable, which the listener task
inherits) and does not store them twice.

When the store fails, the events the server emitted are kept in memory, in order, and
written again with back-off (`retry_delay` doubling up to 5 s) until the store takes them,
so subscribers get them late but get them; at most `MAX_KEPT` are kept, and beyond that
the oldest are dropped with an error in the log. The outage is told once by a `store_fault`
event (`what`: `event_log`, for owners) and its end once, with `recovered: true`; both are
stored, after the events kept meanwhile. An event posted over REST is not kept: its caller
gets the store's error (503) at once and may post again.

Subscriptions have bounded queues: a subscriber more than `limit` events behind is closed
with the reason `overflow`, and resumes from its last id.

The server's schemas (every schema registered by server code: ours, jupyter_server's, other
extensions', and any id under `SERVER_PREFIXES`) carry only what the server emits: posting
under one, or registering one over REST, is refused (403). An event posted by a client is
stored with `__posted_by__: {"username": ...}`, set here whatever the client sent; events
the server emits have no `__posted_by__`. Who sees which event is decided by the caller of
`subscribe` and `replay` (a `visible` predicate, see `events/views.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import sys
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from jsonschema import Draft7Validator, SchemaError, ValidationError
from jupyter_events import EventLogger
from jupyter_events.schema import EventSchema
from jupyter_events.schema_registry import SchemaRegistryException
from referencing.exceptions import NoInternalID, Unresolvable

from ..errors import BadRequest, Conflict, Forbidden, NotFound, StoreError
from ..protocol.frames import Outgoing
from ..store.base import NewEvent, Store, StoredEvent
from .catalog import load_schemas
from .faults import FaultReport
from .outbox import Outbox

__all__ = [
    "MAX_EVENT_ID",
    "POSTED_BY",
    "SERVER_PREFIXES",
    "EventBus",
    "EventFilter",
    "Subscription",
    "event_json",
    "schema_document",
    "utc_timestamp",
]

log = logging.getLogger(__name__)

MAX_EVENT_ID = 2**63 - 1
"""The largest event id the store holds (an SQLite INTEGER)."""
MAX_EVENT_SIZE = 1 << 20  # bytes of an event's data, as JSON
_REPLAY_PAGE = 1000
_ENCODED_KEPT = 4096  # recent events kept encoded for the subscribers still to send them
MAX_EVENT_BATCH = 1000
"""Events stored in one commit at most."""
MAX_KEPT = 10_000
"""Events the server emitted, kept in memory while the store fails; the oldest go first."""
PRUNE_EVERY = 1000
"""Events stored between two prunings of the log (a tenth of `keep` when that is fewer):
the log holds at most `keep` events and this many more."""
_posted: contextvars.ContextVar[bool] = contextvars.ContextVar("posted", default=False)

POSTED_BY = "__posted_by__"
"""The field of a posted event's stored data naming who posted it (set by the server)."""
SERVER_PREFIXES = (
    "https://events.jupyter.org/jupyter_datastore/",
    "https://events.jupyter.org/jupyter_server/",
    "https://schema.jupyter.org/jupyter_collaboration/",
)
"""Schema ids the server owns even before anything registers them."""

Visible = Callable[[StoredEvent], bool]
"""Whether one subscriber may see an event (see `events/views.py`)."""


def everyone(event: StoredEvent) -> bool:
    """A `Visible` for the server's own subscribers: every event."""
    return True


def schema_document(schema: EventSchema) -> dict[str, Any]:
    """The JSON schema as it was registered (jupyter_events keeps it privately)."""
    return dict(schema._schema)


def utc_timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_json(event: StoredEvent) -> dict[str, Any]:
    """An event as REST and WebSocket clients get it.

    jupyter_server's subscribers read `schema_id` and the data's fields at the top level
    (JupyterLab's EventManager does); the envelope adds `__id__`, `__timestamp__` and
    `__schema_version__`, names no schema may use for a property, and `__posted_by__` for
    an event a client posted (absent: the server emitted it).
    """
    envelope: dict[str, Any] = {
        "schema_id": event.schema_id,
        "__id__": event.id,
        "__timestamp__": event.timestamp,
        "__schema_version__": event.version,
    }
    if POSTED_BY in event.data:
        envelope[POSTED_BY] = event.data[POSTED_BY]
    return {**event.data, **envelope}


@dataclass(frozen=True)
class EventFilter:
    """Which events a subscriber wants: all conditions must hold; an empty filter takes all.

    As JSON: `{"schema_ids": [...], "versions": [...], "match": {"path.in.data": value or
    [values]}}`; a `match` path names a field of the event's data, dotted for nested ones.
    """

    schema_ids: frozenset[str] = frozenset()
    versions: frozenset[str] = frozenset()
    match: tuple[tuple[tuple[str, ...], tuple[Any, ...]], ...] = ()

    @classmethod
    def parse(cls, raw: Any) -> EventFilter:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise BadRequest("a filter must be a JSON object")
        unknown = raw.keys() - {"schema_ids", "versions", "match"}
        if unknown:
            raise BadRequest(f"unknown filter fields: {', '.join(sorted(unknown))}")
        schema_ids, versions = raw.get("schema_ids", []), raw.get("versions", [])
        for name, values in (("schema_ids", schema_ids), ("versions", versions)):
            if not isinstance(values, list) or not all(isinstance(v, str | int) for v in values):
                raise BadRequest(f'filter "{name}" must be a list of strings')
        match = raw.get("match", {})
        if not isinstance(match, dict):
            raise BadRequest('filter "match" must map field paths to values')
        conditions = []
        for path, wanted in match.items():
            allowed = wanted if isinstance(wanted, list) else [wanted]
            if not path or not all(isinstance(v, str | int | float | bool) for v in allowed):
                raise BadRequest(f'filter "match.{path}" must be a value or a list of values')
            conditions.append((tuple(path.split(".")), tuple(allowed)))
        return cls(
            frozenset(map(str, schema_ids)), frozenset(map(str, versions)), tuple(conditions)
        )

    def with_schema_ids(self, schema_ids: Iterable[str]) -> EventFilter:
        """This filter taking only `schema_ids` instead of its own, when any are given (the
        `schema_id` parameters of GET /api/events, the `schemaIds` argument in GraphQL)."""
        wanted = frozenset(schema_ids)
        return replace(self, schema_ids=wanted) if wanted else self

    def accepts(self, event: StoredEvent) -> bool:
        if self.schema_ids and event.schema_id not in self.schema_ids:
            return False
        if self.versions and event.version not in self.versions:
            return False
        for path, allowed in self.match:
            value: Any = event.data
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if not any(_same(value, wanted) for wanted in allowed):
                return False
        return True


def _same(value: Any, wanted: Any) -> bool:
    """JSON equality: true is not 1."""
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value is wanted
    return bool(value == wanted)


class Subscription(Outbox[StoredEvent]):
    """A subscriber's bounded queue of the events its filter accepts and it may see."""

    def __init__(
        self, event_filter: EventFilter, limit: int = 10_000, visible: Visible = everyone
    ) -> None:
        super().__init__(limit)
        self.filter = event_filter
        self.visible = visible
        self.after = 0
        """Events up to this id were delivered by a replay: live ones up to it are skipped."""
        self.sink: Callable[[StoredEvent], None] | None = None
        """Where accepted events go at once instead of the queue (a socket that sends
        without blocking and bounds itself), once the consumer has caught up."""

    def attach(self, sink: Callable[[StoredEvent], None]) -> list[StoredEvent]:
        """Hand accepted events to `sink` at once from now on; returns what queued before."""
        waiting = list(self.queue)
        self.queue.clear()
        self.sink = sink
        return waiting

    def offer(self, event: StoredEvent) -> None:
        if event.id > self.after and self.filter.accepts(event) and self.visible(event):
            if self.sink is not None and self.closed is None:
                self.sink(event)
            else:
                self.put(event)


@dataclass(frozen=True)
class _Waiting:
    """An event to store and who waits for it; `kept` through a store outage."""

    event: NewEvent
    future: asyncio.Future[StoredEvent]
    kept: bool

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class EventBus:
    def __init__(
        self,
        logger: EventLogger,
        store: Store,
        *,
        keep: int = 100_000,
        retry_delay: float = 0.1,
    ) -> None:
        self.logger = logger
        self.store = store
        self.keep = keep
        self.subscriptions: set[Subscription] = set()
        self._listening: set[str] = set()
        self._stopped = False
        self._stopping = False
        self._outgoing: OrderedDict[int, Outgoing] = OrderedDict()
        self._register = logger.register_event_schema
        self._client_schemas: set[str] = set()  # registered over REST, now or in a past run
        self._appended = 0  # events stored since the last pruning
        self._waiting: list[_Waiting] = []
        """Events to store with the next commit, and who waits for each."""
        self.retry_delay = retry_delay
        self.faults = FaultReport(self.emit, what="event_log", subject="events", log=log)
        self._retry_now = asyncio.Event()
        """Set when an event is posted during an outage: its caller waits, so try at once."""
        self._writer: asyncio.Task[None] | None = None
        self._pruning: asyncio.Task[None] | None = None

    # --- life cycle ---

    async def start(self) -> None:
        await self.store.prune_events(self.keep)
        for schema in load_schemas():
            if schema["$id"] not in self.logger.schemas.schema_ids:
                self._register(schema)
        for schema in await self.store.event_schemas():
            try:
                self._check_client_schema(schema)
                self._register_schema(schema)
                self._client_schemas.add(str(schema["$id"]))
            except (BadRequest, Conflict, Forbidden) as exc:
                log.warning("a stored event schema is not registered again: %s", exc.detail)
        for schema_id in list(self.logger.schemas.schema_ids):
            self._listen(schema_id)
        # Schemas registered later (by any extension) are followed too.
        self.logger.register_event_schema = self._registered  # type: ignore[method-assign]

    async def stop(self) -> None:
        """Stop storing: events emitted after this (jupyter_server shuts kernels down after
        its extensions have stopped) go to the EventLogger's other listeners only. Events
        kept through a store outage get one last try."""
        self.logger.register_event_schema = self._register  # type: ignore[method-assign]
        self._stopping = True
        self._retry_now.set()
        for task in (self._writer, self._pruning):  # what was emitted is stored first
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        for schema_id in self._listening:
            self.logger.remove_listener(schema_id=schema_id, listener=self._heard)
        self._listening.clear()
        self._stopped = True
        for subscription in list(self.subscriptions):
            subscription.close("stopped")

    # --- schemas ---

    def schemas(self) -> list[dict[str, Any]]:
        """Every registered schema, with its id and version."""
        found = []
        for schema_id in sorted(self.logger.schemas.schema_ids):
            schema: EventSchema = self.logger.schemas.get(schema_id)
            found.append(
                {
                    "$id": schema.id,
                    "version": str(schema.version),
                    "schema": schema_document(schema),
                }
            )
        return found

    def is_server_schema(self, schema_id: str) -> bool:
        """Whether only the server may emit events of this schema: one registered by server
        code (not over REST), or any id under `SERVER_PREFIXES`."""
        if schema_id.startswith(SERVER_PREFIXES):
            return True
        registered = schema_id in self.logger.schemas.schema_ids
        return registered and schema_id not in self._client_schemas

    def _check_client_schema(self, schema: Any) -> None:
        schema_id = schema.get("$id") if isinstance(schema, dict) else None
        if isinstance(schema_id, str) and self.is_server_schema(schema_id):
            raise Forbidden(
                f"event schema {schema_id!r} belongs to the server: it cannot be registered"
            )

    def schema(self, schema_id: str) -> EventSchema:
        try:
            found: EventSchema = self.logger.schemas.get(schema_id)
        except (KeyError, SchemaRegistryException):
            raise NotFound(f"no event schema {schema_id!r} is registered") from None
        return found

    async def register(self, schema: Any) -> tuple[dict[str, Any], bool]:
        """Register a schema posted over REST; (its description, whether it is new).

        The same schema twice is fine (idempotent); another schema under a registered
        `$id` and version is a conflict; an id the server owns is refused (`Forbidden`).
        """
        self._check_client_schema(schema)
        schema_id = schema.get("$id") if isinstance(schema, dict) else None
        if isinstance(schema_id, str) and schema_id in self.logger.schemas.schema_ids:
            existing = self.schema(schema_id)
            if schema_document(existing) == schema:
                return {"$id": schema_id, "version": str(existing.version)}, False
            raise Conflict(f"event schema {schema_id!r} is registered with other content")
        registered = self._register_schema(schema)
        self._client_schemas.add(registered.id)
        await self.store.put_event_schema(schema_document(registered))
        return {"$id": registered.id, "version": str(registered.version)}, True

    def _register_schema(self, schema: Any) -> EventSchema:
        if not isinstance(schema, dict):
            raise BadRequest("an event schema must be a JSON object")
        if not isinstance(schema.get("$id"), str):
            # jupyter_events itself raises a KeyError on some schemas without an `$id`
            raise BadRequest('an event schema needs "$id", a string')
        version = schema.get("version")
        if isinstance(version, bool) or not isinstance(version, str | int):
            # jupyter_events takes an integer as its string, and a boolean as "True"
            raise BadRequest('an event schema needs "version", a string')
        try:
            # jupyter_events checks its own metaschema only: a keyword of the wrong type
            # ("required": 5, a "pattern" that is no regex) would fail every event later
            Draft7Validator.check_schema(schema)
            self._registered(schema)
        except (ValidationError, SchemaError) as exc:
            raise BadRequest(f"not a valid event schema: {exc.message}") from exc
        except NoInternalID as exc:
            detail = 'a top-level "$ref" hides its "$id" (JSON Schema draft 7)'
            raise BadRequest(f"not a valid event schema: {detail}") from exc
        except (SchemaRegistryException, ValueError, TypeError) as exc:
            raise BadRequest(f"not a valid event schema: {exc}") from exc
        return self.schema(str(schema["$id"]))

    def _registered(self, schema: Any) -> None:
        self._register(schema)
        if isinstance(schema, dict) and isinstance(schema.get("$id"), str):
            self._listen(schema["$id"])
        else:  # a path or a YAML string: look for the ids not followed yet
            for schema_id in self.logger.schemas.schema_ids:
                self._listen(schema_id)

    def _listen(self, schema_id: str) -> None:
        if schema_id not in self._listening:
            self._listening.add(schema_id)
            self.logger.add_listener(schema_id=schema_id, listener=self._heard)

    # --- events ---

    async def post(
        self, schema_id: Any, version: Any, data: Any, user: str | None = None
    ) -> StoredEvent:
        """An event from a client (`user`): checked, stored with `__posted_by__`, delivered,
        then emitted on the logger. The server's schemas are refused (`Forbidden`)."""
        if not isinstance(schema_id, str) or not isinstance(version, str | int):
            raise BadRequest('"schema_id" (a string) and "version" are required')
        if self.is_server_schema(schema_id):
            raise Forbidden(
                f"events of {schema_id!r} come from the server only: nobody may post them"
            )
        return await self.post_for(schema_id, version, data, user)

    async def post_for(
        self, schema_id: str, version: str | int, data: Any, user: str | None
    ) -> StoredEvent:
        """An event the server posts on behalf of `user`, under any schema (the server has
        checked what it may say): validated, stored with `__posted_by__`, emitted."""
        if not isinstance(data, dict):
            raise BadRequest('"data" must be a JSON object')
        data = {key: value for key, value in data.items() if key != POSTED_BY}
        try:
            schema = self.schema(schema_id)
        except NotFound as exc:
            raise BadRequest(f"{exc.detail}: register it first (POST /api/events/schemas)") from exc
        if str(version) != str(schema.version):
            raise BadRequest(
                f"event schema {schema_id!r} is at version {schema.version}, not {version}"
            )
        if len(json.dumps(data)) > MAX_EVENT_SIZE:
            raise BadRequest(f"an event's data is at most {MAX_EVENT_SIZE} bytes of JSON")
        try:
            schema.validate(data)
        except ValidationError as exc:
            raise BadRequest(f"the data does not match {schema_id}: {exc.message}") from exc
        except Unresolvable as exc:  # the schema's own fault, found only on data that uses it
            ref = getattr(exc, "ref", "?")
            raise BadRequest(
                f"event schema {schema_id!r} has a $ref that does not resolve: {ref}"
            ) from exc
        except RecursionError as exc:  # a $ref that leads back to itself
            raise BadRequest(f"event schema {schema_id!r} refers to itself without end") from exc
        stored = {**data, POSTED_BY: {"username": user}}
        event = await self._append(schema_id, str(schema.version), stored, kept=False)
        token = _posted.set(True)
        try:
            self.logger.emit(schema_id=schema_id, data=data)
        finally:
            _posted.reset(token)
        return event

    async def _heard(self, logger: EventLogger, schema_id: str, data: dict[str, Any]) -> None:
        """The EventLogger's listener: every event emitted on the server."""
        if _posted.get() or self._stopped:
            return
        try:
            version = str(self.schema(schema_id).version)
            emitted = {key: value for key, value in data.items() if key != POSTED_BY}
            await self._append(schema_id, version, emitted)
        except StoreError as exc:  # dropped: kept too long, or the server stops meanwhile
            log.error("an event of %s is lost: %s", schema_id, exc.detail)
        except Exception:
            log.exception("cannot store an event of %s", schema_id)

    def outgoing(self, event: StoredEvent) -> Outgoing:
        """`event_json` as a text message, encoded and framed once for every subscriber."""
        message = self._outgoing.get(event.id)
        if message is None:
            text = json.dumps(event_json(event)).encode()
            message = self._outgoing[event.id] = Outgoing(text, text=True)
            while len(self._outgoing) > _ENCODED_KEPT:
                self._outgoing.popitem(last=False)
        return message

    async def _append(
        self, schema_id: str, version: str, data: dict[str, Any], *, kept: bool = True
    ) -> StoredEvent:
        """Store an event, in one commit with the others waiting meanwhile (group commit:
        a burst of events costs a few commits, not one each), then hand it to the
        subscriptions; events reach them in id order. `kept`: through a store outage (see
        the module docstring); else the store's error is raised at once."""
        waiting: asyncio.Future[StoredEvent] = asyncio.get_running_loop().create_future()
        new = NewEvent(schema_id, version, utc_timestamp(), data)
        self._waiting.append(_Waiting(new, waiting, kept))
        if not kept:
            self._retry_now.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_waiting())
        return await waiting

    async def _write_waiting(self) -> None:
        delay = self.retry_delay
        while self._waiting:
            batch = self._waiting[:MAX_EVENT_BATCH]
            del self._waiting[:MAX_EVENT_BATCH]
            try:
                events = await self.store.append_events([item.event for item in batch])
            except StoreError as exc:
                self.faults.failed("append_events", exc)
                self._keep([item for item in batch if item.kept], exc)
                for item in batch:
                    if not item.kept:
                        item.fail(exc)
                if self._waiting:
                    await self._wait_to_retry(delay)
                    delay = min(delay * 2, 5.0)
                continue
            except Exception as exc:  # each caller gets it
                for item in batch:
                    item.fail(exc)
                continue
            delay = self.retry_delay
            self._count(len(events))
            for event, item in zip(events, batch, strict=True):
                for subscription in list(self.subscriptions):
                    subscription.offer(event)
                if not item.future.done():
                    item.future.set_result(event)
            if not self._waiting:
                self.faults.succeeded()  # its event starts the next round

    def _keep(self, failed: list[_Waiting], exc: StoreError) -> None:
        """Put events back in front of the queue for the retry; the oldest beyond
        `MAX_KEPT` are dropped (their listeners log it), or all once the bus stops."""
        self._waiting[:0] = failed
        dropped = len(self._waiting) - (0 if self._stopping else MAX_KEPT)
        if dropped > 0:
            log.error("%d events are lost: the store has failed too long (%s)", dropped, exc)
            for item in self._waiting[:dropped]:
                item.fail(exc)
            del self._waiting[:dropped]

    async def _wait_to_retry(self, delay: float) -> None:
        self._retry_now.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._retry_now.wait(), delay)

    def _count(self, stored: int) -> None:
        """Prune the log after every `PRUNE_EVERY` events stored (a tenth of `keep`)."""
        self._appended += stored
        if self._appended >= min(PRUNE_EVERY, max(1, self.keep // 10)) and (
            self._pruning is None or self._pruning.done()
        ):
            self._appended = 0
            self._pruning = asyncio.ensure_future(self._prune())

    async def _prune(self) -> None:
        """Keep the log to `keep` events while the server runs (not only at start)."""
        try:
            await self.store.prune_events(self.keep)
        except StoreError as exc:  # tried again after the next appends
            log.warning("cannot prune the event log: %s", exc.detail)

    def emit(self, schema_id: str, data: dict[str, Any]) -> None:
        """Emit a server event (from synchronous code, on the event loop)."""
        try:
            self.logger.emit(schema_id=schema_id, data=data)
        except Exception:
            log.exception("cannot emit an event of %s", schema_id)

    async def replay(
        self,
        since: int,
        event_filter: EventFilter,
        *,
        limit: int = _REPLAY_PAGE,
        visible: Visible = everyone,
    ) -> list[StoredEvent]:
        """Stored events after `since` that the filter accepts and `visible` shows, oldest
        first."""
        found: list[StoredEvent] = []
        schema_ids = sorted(event_filter.schema_ids)
        while len(found) < limit:
            page = await self.store.read_events(since, schema_ids=schema_ids, limit=_REPLAY_PAGE)
            found += [e for e in page if event_filter.accepts(e) and visible(e)]
            if len(page) < _REPLAY_PAGE:
                break
            since = page[-1].id
        return found[:limit]

    # --- subscriptions ---

    def subscribe(
        self, event_filter: EventFilter, limit: int = 10_000, visible: Visible = everyone
    ) -> Subscription:
        subscription = Subscription(event_filter, limit, visible)
        self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)
        subscription.close("unsubscribed")

    async def catch_up(self, subscription: Subscription, since: int) -> list[StoredEvent]:
        """The stored events after `since` for a subscription that is already live; its live
        queue then skips what the replay delivered."""
        replayed = await self.replay(
            since, subscription.filter, limit=sys.maxsize, visible=subscription.visible
        )
        if replayed:
            subscription.after = replayed[-1].id
            subscription.queue = deque(e for e in subscription.queue if e.id > subscription.after)
        return replayed
