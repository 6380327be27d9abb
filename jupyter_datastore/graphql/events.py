"""The event log and the caller's notifications over GraphQL, decided as REST decides them.

Events (`/api/events`): every event a caller gets, listed or live, is one of their view
(`events/views.py`, the same predicate as GET /api/events and the events socket); posting
needs the editor role on the root, and the server's own schemas are refused. An event's id
is a GraphQL `ID` (ids may outgrow GraphQL's 32-bit `Int`): a whole number as text, and as
an argument a number or its text.

Notifications (`/api/notifications`): the caller's own rows only; another's id is
`not_found`, as a missing one is.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from ..auth import Role
from ..errors import BadRequest, DatastoreError, Forbidden, Unavailable
from ..events.bus import MAX_EVENT_ID, POSTED_BY, EventFilter
from ..notifications import Change, parse_time
from ..store.base import StoredEvent
from .context import Caller, Info
from .limits import page_size
from .paging import Connection, Edge, PageInfo
from .sharing import Shared, SharedPayloads
from .streams import SlowSubscriber

__all__ = ["Event", "Mutation", "Notification", "Query", "Subscription"]


class TooFarBehind(DatastoreError):
    """More notifications after a resume's `since` than a subscription may send at once."""

    status = 409
    error = "too_far_behind"


# --- types ---


@strawberry.type(
    description="One event of the server's durable event log (as GET /api/events gives it)."
)
class Event(Shared):
    id: strawberry.ID = strawberry.field(
        description="Its place in the log: a whole number as text; ids only grow."
    )
    schema_id: str
    version: str = strawberry.field(description="The version of its schema it was stored at.")
    timestamp: str = strawberry.field(description="When it was stored (ISO 8601, UTC).")
    data: JSON = strawberry.field(description="Its data, as its schema describes it.")
    posted_by: str | None = strawberry.field(
        description="The user who posted it (POST /api/events, postEvent); null when the "
        "server emitted it."
    )


def _event(event: StoredEvent) -> Event:
    """The payload of a stored event: the same object for every subscriber (its results
    are computed once for all who run the same operation: `sharing.py`)."""
    return _EVENTS.get(event.id, event)


def _make_event(event: StoredEvent) -> Event:
    data = {key: value for key, value in event.data.items() if key != POSTED_BY}
    poster = event.data.get(POSTED_BY)
    name = poster.get("username") if isinstance(poster, dict) else None
    return Event(
        id=strawberry.ID(str(event.id)),
        schema_id=event.schema_id,
        version=event.version,
        timestamp=event.timestamp,
        data=JSON(data),
        posted_by=name if isinstance(name, str) else None,
    )


_EVENTS: SharedPayloads[int, Event] = SharedPayloads(_make_event)


@strawberry.type(
    description="One of the caller's notifications (as GET /api/notifications gives it)."
)
class Notification:
    id: strawberry.ID
    type: str = strawberry.field(description="info, success, warning or error.")
    message: str
    link: str | None = strawberry.field(
        description="Where it points on this server (a path or a URL path), if anywhere."
    )
    path: str | None = strawberry.field(
        description="The document it is about, when its data names one (a run's end does)."
    )
    cell_id: str | None = strawberry.field(
        description="The cell it is about, when its data names one (a run's end does)."
    )
    data: JSON | None = strawberry.field(
        description="What its sender attached, or the details of a run's end."
    )
    source: str | None = strawberry.field(
        description="What it came from, as its sender named it (a run's execution id)."
    )
    sender: str | None = strawberry.field(
        description="The user who sent it; null when the server made it (a run's end)."
    )
    read: bool
    read_at: str | None = strawberry.field(description="When it was marked read (ISO 8601).")
    created_at: str = strawberry.field(description="When it was made (ISO 8601, UTC).")
    event_id: strawberry.ID = strawberry.field(description="The event it was made from.")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _notification(row: dict[str, Any]) -> Notification:
    data = row.get("data")
    details = data if isinstance(data, dict) else {}
    sender = row.get("sender")
    return Notification(
        id=strawberry.ID(str(row["id"])),
        type=str(row.get("type") or "info"),
        message=str(row.get("message") or ""),
        link=_text(row.get("link")),
        path=_text(details.get("path")),
        cell_id=_text(details.get("cell_id")),
        data=None if data is None else JSON(data),
        source=_text(row.get("source")),
        sender=_text(sender.get("username")) if isinstance(sender, dict) else None,
        read=bool(row.get("read")),
        read_at=_text(row.get("read_at")),
        created_at=str(row.get("created_at")),
        event_id=strawberry.ID(str(row.get("event_id"))),
    )


@strawberry.enum(description="What happened to one of the caller's notifications.")
class NotificationChangeKind(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@strawberry.type(
    description="A notification of the caller's that was made, marked read or unread, or "
    "deleted (in any of their windows)."
)
class NotificationChange:
    kind: NotificationChangeKind
    id: strawberry.ID
    notification: Notification | None = strawberry.field(
        description="The notification as it is now; null when it was deleted."
    )


def _created(row: dict[str, Any]) -> NotificationChange:
    return NotificationChange(
        kind=NotificationChangeKind.CREATED,
        id=strawberry.ID(str(row["id"])),
        notification=_notification(row),
    )


def _changed(change: Change) -> NotificationChange:
    row_id = strawberry.ID(str(change.row["id"]))
    if change.kind == "deleted":
        return NotificationChange(kind=NotificationChangeKind.DELETED, id=row_id, notification=None)
    return NotificationChange(
        kind=NotificationChangeKind.UPDATED, id=row_id, notification=_notification(change.row)
    )


# --- arguments ---


def _event_id(raw: str, name: str) -> int:
    """An event id given as an argument (a GraphQL ID: a number arrives as its text)."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) <= MAX_EVENT_ID):
        raise BadRequest(f'"{name}" must be an event id from 0 to {MAX_EVENT_ID}, not {raw[:40]!r}')
    return int(raw)


def _start(since: strawberry.ID | None, after: str | None) -> int:
    """Where a listing starts: `since` (an event id) or `after` (a page's `endCursor`)."""
    if since is not None and after is not None:
        raise BadRequest('give "since" or "after", not both')
    if after is not None:
        return _event_id(after, "after")
    return 0 if since is None else _event_id(since, "since")


def _filter(raw: JSON | None, schema_ids: list[str] | None) -> EventFilter:
    """As GET /api/events takes `filter` and `schema_id` (see `EventFilter`)."""
    return EventFilter.parse(raw).with_schema_ids(schema_ids or ())


def _recipient(caller: Caller) -> str:
    """Whose notifications these are: the caller's (an anonymous caller has none)."""
    if caller.user is None:
        raise Forbidden("notifications need an identified user")
    return caller.user


FILTER_DESCRIPTION = (
    'As GET /api/events takes it: {"schema_ids": [...], "versions": [...], "match": '
    '{"field.in.data": value or [values]}}; all must hold.'
)
SCHEMA_IDS_DESCRIPTION = "Only events of these schemas (instead of the filter's schema_ids)."


# --- root fields ---


@strawberry.type
class Query:
    @strawberry.field(
        description="Stored events after `since` (or `after`, a page's endCursor), oldest "
        "first, those of the caller's view only (as GET /api/events)."
    )
    async def events(
        self,
        info: Info,
        since: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description="An event id: the events after it (default: all kept)."
            ),
        ] = None,
        after: Annotated[
            str | None, strawberry.argument(description="A page's endCursor: the page after it.")
        ] = None,
        filter: Annotated[JSON | None, strawberry.argument(description=FILTER_DESCRIPTION)] = None,
        schema_ids: Annotated[
            list[str] | None, strawberry.argument(description=SCHEMA_IDS_DESCRIPTION)
        ] = None,
        first: Annotated[
            int | None,
            strawberry.argument(description="Events in the page (1 to 1000, default 100)."),
        ] = None,
    ) -> Connection[Event]:
        caller = info.context
        start = _start(since, after)
        event_filter = _filter(filter, schema_ids)
        size = page_size(first)
        datastore = caller.datastore
        found = await datastore.events.replay(
            start, event_filter, limit=size + 1, visible=datastore.views.visible_to(caller.user)
        )
        page = found[:size]
        edges = [Edge[Event](cursor=str(event.id), node=_event(event)) for event in page]
        return Connection[Event](
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(found) > size,
                end_cursor=edges[-1].cursor if edges else None,
            ),
        )

    @strawberry.field(
        description="The caller's notifications, newest first (as GET /api/notifications)."
    )
    async def notifications(
        self,
        info: Info,
        unread_only: Annotated[
            bool, strawberry.argument(description="Only those not marked read.")
        ] = False,
        first: Annotated[
            int | None,
            strawberry.argument(description="How many at most (1 to 1000, default 100)."),
        ] = None,
    ) -> list[Notification]:
        caller = info.context
        rows = await caller.datastore.notifications.find(
            _recipient(caller), unread=True if unread_only else None, limit=page_size(first)
        )
        return [_notification(row) for row in rows]


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Store an event under a schema registered by a client (as POST "
        "/api/events): needs the editor role on the root; the server's own schemas are "
        "refused. The event is stored with the caller as its poster."
    )
    async def post_event(
        self,
        info: Info,
        schema_id: str,
        version: Annotated[
            str, strawberry.argument(description='The schema\'s registered version, as text ("1").')
        ],
        data: Annotated[JSON, strawberry.argument(description="A JSON object its schema accepts.")],
    ) -> Event:
        caller = info.context
        caller.require("", Role.EDITOR, "post an event")
        stored = await caller.datastore.events.post(schema_id, version, data, caller.user)
        return _event(stored)

    @strawberry.mutation(
        description="Mark one of the caller's notifications read or unread (as PATCH "
        "/api/notifications/{id}); their other windows are told."
    )
    async def mark_notification(self, info: Info, id: strawberry.ID, read: bool) -> Notification:
        caller = info.context
        row = await caller.datastore.notifications.mark(_recipient(caller), str(id), read)
        return _notification(row)

    @strawberry.mutation(
        description="Delete (dismiss) one of the caller's notifications (as DELETE "
        "/api/notifications/{id}); their other windows are told. Gives its id."
    )
    async def delete_notification(self, info: Info, id: strawberry.ID) -> strawberry.ID:
        caller = info.context
        await caller.datastore.notifications.delete(_recipient(caller), str(id))
        return id


def _ended(closed: str | None, limit: int, what: str) -> None:
    """Why a feed of the bus (or of notifications) stopped, as the error that ends the
    subscription: too far behind, or the server stopping."""
    if closed == "overflow":
        raise SlowSubscriber(
            f"more than {limit} {what} waited for this subscriber: subscribe again with since"
        )
    if closed == "stopped":
        raise Unavailable("the server is stopping")


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Events of the caller's view as they are stored, in id order, none "
        "twice: with `since`, the stored events after it come first (resume with the id "
        "of the last event received). Without `since`, live ones only. A subscriber more "
        "than 10,000 events behind ends with the error `slow_subscriber`: subscribe again "
        "with `since`."
    )
    async def events(
        self,
        info: Info,
        since: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="An event id: the stored events after it come first."),
        ] = None,
        filter: Annotated[JSON | None, strawberry.argument(description=FILTER_DESCRIPTION)] = None,
        schema_ids: Annotated[
            list[str] | None, strawberry.argument(description=SCHEMA_IDS_DESCRIPTION)
        ] = None,
    ) -> AsyncGenerator[Event, None]:
        caller = info.context
        start = None if since is None else _event_id(since, "since")
        event_filter = _filter(filter, schema_ids)
        bus, views = caller.datastore.events, caller.datastore.views
        # Live events queue up from here on while the log is replayed (as the events
        # socket does): `catch_up` then drops those the replay gave.
        subscription = bus.subscribe(event_filter, visible=views.visible_to(caller.user))
        try:
            history = await bus.catch_up(subscription, start) if start is not None else []
            for event in history:
                yield _event(event)
            while events := await subscription.next():
                for event in events:
                    yield _event(event)
            _ended(subscription.closed, subscription.limit, "events")
        finally:
            bus.unsubscribe(subscription)

    @strawberry.subscription(
        description="The caller's notifications as they are made, and the changes to them "
        "(read, unread, deleted) made in any of their windows. With `since` (the "
        "createdAt of the last one received), those made after it come first, none twice; "
        "more of them than a feed holds (1000) ends with `too_far_behind` (list them with "
        "the notifications query). A subscriber that many behind ends with "
        "`slow_subscriber`: subscribe again with `since`."
    )
    async def notifications(
        self,
        info: Info,
        since: Annotated[
            str | None,
            strawberry.argument(description="An ISO 8601 time: the notifications made after it."),
        ] = None,
    ) -> AsyncGenerator[NotificationChange, None]:
        caller = info.context
        recipient = _recipient(caller)
        start = None if since is None else parse_time(since, "since")
        service = caller.datastore.notifications
        feed = service.open_feed(recipient)  # before anything awaits: no new row is missed
        try:
            resumed: set[str] = set()  # rows the resume gave, not to be given again live
            if start is not None:
                limit = service.policy.feed_limit
                rows = await service.after(recipient, start, limit)
                if rows is None:
                    raise TooFarBehind(
                        f"more than {limit} notifications were made after {start}: list them "
                        "with the notifications query"
                    )
                for row in rows:
                    resumed.add(str(row["id"]))
                    yield _created(row)
            while items := await feed.next():
                for item in items:
                    if isinstance(item, Change):
                        yield _changed(item)
                    elif str(item["id"]) not in resumed:
                        yield _created(item)
            _ended(feed.closed, feed.limit, "notifications")
        finally:
            service.close_feed(feed)
