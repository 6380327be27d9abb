"""The notification service: notification events become per-recipient rows and live pushes.

It follows the event log (`EventBus`) for two schemas:

- a `notification` event is stored as one row per recipient, all of an event's rows in one
  commit, then pushed to that recipient's open feeds;
- an `execution` event with action `finished` notifies the user who started the run when it
  failed (type `error`), or when it lasted at least `NotificationPolicy.notify_after`
  seconds (type `success`, or `warning` when it was cancelled, interrupted or lost).

Nothing is lost or repeated across restarts or crashes: the id of the last event turned
into rows is kept in the store (`set_cursor`, written after the rows' commit), and at start
the events after it are replayed from the log before live ones are taken. A row's id is
derived from the store, the event id and the recipient (uuid5), so an event replayed after a
crash between the two commits maps to the rows it already made; those are kept as they are
(a read one stays read).

A feed (`Feed`) is bounded: a recipient's client more than `feed_limit` rows behind is
closed (`overflow`) and resumes from the time of the last row it got. Besides new rows, a
recipient's feeds get each change to one of their rows (`Change`: marked read or unread,
deleted), so that every window of theirs shows what one of them did; changes are live only
(a client that was away lists its rows again).

Nobody posts `notification` events (a server schema); a user notifies others through
`send` (`POST /api/notifications`), which the server posts on their behalf. A row's
`sender` is `{"username": ...}` of who sent it, or null when the server made it (a run's
end); its `link` stays on this server: a path or a URL path, never another host or
scheme (`local_link`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from ..errors import BadRequest, NotFound
from ..events.bus import POSTED_BY, EventBus, EventFilter, Subscription, utc_timestamp
from ..events.catalog import EXECUTION, NOTIFICATION
from ..events.outbox import Outbox
from ..store.base import Store, StoredEvent

__all__ = ["Change", "Feed", "NotificationPolicy", "Notifications", "parse_time"]

log = logging.getLogger(__name__)

CURSOR = "notifications"
"""The name of the service's position in the event log (`Store.get_cursor`)."""
MAX_MESSAGE = 2000
"""Characters of a message made from an execution (an exception's value can be long)."""
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, NOTIFICATION)
_PAGE = 500
_SAVE_EVERY = 1000  # events processed without a row before the cursor is written anyway
MAX_RECIPIENTS = 1000
SENT_FIELDS = frozenset({"recipients", "message", "type", "link", "data", "source"})
"""What a user's notification may give (`send`); the server adds who sent it."""


def local_link(link: str, origin: tuple[str, str] | None = None) -> str | None:
    """`link` as a link on this server (a path, with its query and fragment), else None.

    A relative path or an absolute URL path is kept; an absolute URL is kept (as its path)
    only when its scheme and host are `origin` (the request's); anything with another
    scheme (`javascript:`, `data:`), host, a `//host` or backslash form, or a control or
    space character at all, is not a link on this server.
    """
    if not link or any(ord(c) <= 0x20 or c == "\\" for c in link):
        return None
    try:
        parts = urlsplit(link)
    except ValueError:
        return None
    if not parts.scheme and not parts.netloc:
        return None if link.startswith("//") else link
    if origin is None or (parts.scheme.lower(), parts.netloc.lower()) != origin:
        return None
    local = parts.path or "/"
    local += f"?{parts.query}" if parts.query else ""
    local += f"#{parts.fragment}" if parts.fragment else ""
    return None if local.startswith("//") else local


@dataclass(frozen=True)
class NotificationPolicy:
    notify_after: float = 60.0
    """Seconds a run must last for its end to notify who started it (0: never); a run that
    failed always does."""
    feed_limit: int = 1000
    """Rows a feed may have waiting; a client further behind is closed and resumes."""


def parse_time(raw: Any, name: str) -> str:
    """An ISO 8601 time as rows store `created_at`: UTC, microseconds, a `Z` (naive is UTC)."""
    text = raw.strip() if isinstance(raw, str) else ""
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f'"{name}" must be an ISO 8601 time, not {raw!r}') from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        moment = moment.astimezone(timezone.utc)
    except OverflowError:  # before year 1 or after 9999 once in UTC
        raise BadRequest(f'"{name}" is out of range in UTC: {raw!r}') from None
    # isoformat, not strftime: years before 1000 keep their four digits and still sort
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Change:
    """A change to a recipient's existing row, for their feeds: `updated` (marked read or
    unread: `row` is the row as it is now) or `deleted` (`row` is `{"id"}`)."""

    kind: str
    row: dict[str, Any]


class Feed(Outbox[dict[str, Any] | Change]):
    """The new rows of one recipient, and changes to their rows, for one client, in a
    bounded queue."""

    def __init__(self, recipient: str, limit: int = 1000) -> None:
        super().__init__(limit)
        self.recipient = recipient

    def offer(self, row: dict[str, Any] | Change) -> None:
        self.put(row)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class Notifications:
    def __init__(
        self, bus: EventBus, store: Store, policy: NotificationPolicy | None = None
    ) -> None:
        self.bus = bus
        self.store = store
        self.policy = policy or NotificationPolicy()
        self.feeds: dict[str, set[Feed]] = {}
        self._filter = EventFilter(frozenset({NOTIFICATION, EXECUTION}))
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._processed = 0  # the last event id handled
        self._saved = 0  # the last event id written as the cursor
        self._stopping = False
        self._lock = asyncio.Lock()  # read-modify-write of rows (PATCH) against DELETE

    # --- life cycle ---

    async def start(self) -> None:
        """Replay the events missed since the last run, then follow live ones."""
        self._processed = self._saved = await self.store.get_cursor(CURSOR)
        self._subscription = self.bus.subscribe(self._filter)
        await self._catch_up(self._subscription)
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        self._stopping = True
        if self._subscription is not None:
            self.bus.unsubscribe(self._subscription)
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._processed != self._saved:
            await self._save_cursor()
        for feeds in list(self.feeds.values()):
            for feed in list(feeds):
                feed.close("stopped")
        self.feeds.clear()

    async def _catch_up(self, subscription: Subscription) -> None:
        history = await self.bus.catch_up(subscription, self._processed)
        for start in range(0, len(history), _PAGE):
            await self._handle(history[start : start + _PAGE], replayed=True)
        if self._processed != self._saved:
            await self._save_cursor()

    async def _follow(self) -> None:
        while self._subscription is not None:
            subscription = self._subscription
            while events := await subscription.next():
                try:
                    await self._handle(events, replayed=False)
                except Exception:
                    log.exception("notifications: events %d-%d not handled", *_ids(events))
            if self._stopping or subscription.closed != "overflow":
                return
            # Too far behind the bus: take up again from the log.
            log.warning("notifications fell behind the event log; catching up")
            self.bus.unsubscribe(subscription)
            self._subscription = self.bus.subscribe(self._filter)
            try:
                await self._catch_up(self._subscription)
            except Exception:
                log.exception("notifications: catching up from the event log failed")

    # --- events to rows ---

    async def _handle(self, events: list[StoredEvent], *, replayed: bool) -> None:
        rows = [row for event in events for row in self.rows_for(event)]
        if replayed and rows:
            # Rows an event made before a crash (before its cursor was written) stay as they are.
            rows = [
                row
                for row in rows
                if await self.store.get_notification(row["recipient"], row["id"]) is None
            ]
        if rows:
            await self.store.put_notifications(rows)
        self._processed = max(self._processed, events[-1].id)
        if rows or self._processed - self._saved >= _SAVE_EVERY:
            await self._save_cursor()
        for row in rows:
            self._tell(row["recipient"], row)

    async def _save_cursor(self) -> None:
        processed = self._processed
        await self.store.set_cursor(CURSOR, processed)
        self._saved = processed

    def rows_for(self, event: StoredEvent) -> list[dict[str, Any]]:
        """The rows an event makes (none for most execution events)."""
        data = event.data
        if event.schema_id == NOTIFICATION:
            recipients = data.get("recipients")
            message = data.get("message")
            if not isinstance(recipients, list) or not isinstance(message, str):
                log.warning("notification event %d is malformed; skipped", event.id)
                return []
            names = dict.fromkeys(r for r in recipients if isinstance(r, str) and r)
            kind, link, extra, source = (
                data.get("type") or "info",
                data.get("link"),
                data.get("data"),
                data.get("source"),
            )
            sender = data.get(POSTED_BY)
            return [
                self._row(event, name, message, kind, link, extra, source, sender) for name in names
            ]
        if event.schema_id == EXECUTION:
            notice = self._execution_notice(data)
            user = _text(data.get("user"))
            if notice is None or user is None:
                return []
            message, kind = notice
            details = {
                key: data.get(key)
                for key in ("execution_id", "kernel_id", "path", "cell_id", "status", "duration")
            }
            details["error"] = data.get("error")
            source = data.get("execution_id")
            return [self._row(event, user, message, kind, data.get("path"), details, source)]
        return []

    def _row(
        self,
        event: StoredEvent,
        recipient: str,
        message: str,
        kind: str,
        link: Any,
        data: Any,
        source: Any,
        sender: Any = None,
    ) -> dict[str, Any]:
        key = f"{self.store.session_id}/{event.id}/{recipient}"
        return {
            "id": str(uuid.uuid5(_NAMESPACE, key)),
            "recipient": recipient,
            "created_at": event.timestamp,
            "read": False,
            "read_at": None,
            "message": message,
            "type": kind,
            "link": local_link(link) if isinstance(link, str) else None,
            "data": data if isinstance(data, dict) else None,
            "source": _text(source),
            "sender": sender if isinstance(sender, dict) else None,
            "event_id": event.id,
        }

    def _execution_notice(self, data: dict[str, Any]) -> tuple[str, str] | None:
        """(message, type) for the end of a run worth telling its user about, else None."""
        if data.get("action") != "finished":
            return None
        status = data.get("status")
        cell, path = _text(data.get("cell_id")), _text(data.get("path"))
        what = f"Cell {cell}" if cell else "Code"
        where = f" in {path}" if path else f" on kernel {data.get('kernel_id')}"
        if status == "error":
            error = data.get("error")
            error = error if isinstance(error, dict) else {}
            ename, evalue = error.get("ename"), error.get("evalue")
            if ename:
                cause = f"{ename}: {evalue}" if evalue else str(ename)
            else:
                cause = _text(data.get("reason")) or "an error"
            return f"{what}{where} failed: {cause}"[:MAX_MESSAGE], "error"
        duration = data.get("duration")
        limit = self.policy.notify_after
        if limit <= 0 or isinstance(duration, bool) or not isinstance(duration, int | float):
            return None
        if duration < limit:
            return None
        took = _duration(float(duration))
        if status == "ok":
            return f"{what}{where} finished after {took}", "success"
        return f"{what}{where} ended {status} after {took}", "warning"

    # --- sending (REST) ---

    async def send(
        self, sender: str | None, body: dict[str, Any], origin: tuple[str, str]
    ) -> StoredEvent:
        """A user's notification to others: checked, then posted as a `notification` event
        in their name (`origin`: the request's scheme and host, for same-origin links)."""
        unknown = body.keys() - SENT_FIELDS
        if unknown:
            raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}")
        recipients = body.get("recipients")
        if (
            not isinstance(recipients, list)
            or not 0 < len(recipients) <= MAX_RECIPIENTS
            or not all(isinstance(r, str) and r for r in recipients)
        ):
            raise BadRequest(f'"recipients" must be 1 to {MAX_RECIPIENTS} user names')
        data = dict(body)
        link = body.get("link")
        if link is not None:
            local = local_link(link, origin) if isinstance(link, str) else None
            if local is None:
                raise BadRequest(
                    f'"link" must stay on this server (a path or a URL of {origin[1]}),'
                    f" not {str(link)[:200]!r}"
                )
            data["link"] = local
        return await self.bus.post_for(NOTIFICATION, "1", data, sender)

    # --- reading and changing rows (REST) ---

    async def find(
        self,
        recipient: str,
        *,
        unread: bool | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """A recipient's rows, newest first; `since` is inclusive, `until` exclusive."""
        return await self.store.list_notifications(
            recipient, unread=unread, since=since, until=until, limit=limit
        )

    async def get(self, recipient: str, notification_id: str) -> dict[str, Any]:
        row = await self.store.get_notification(recipient, notification_id)
        if row is None:  # another's and missing look the same
            raise NotFound(f"no notification {notification_id!r}")
        return row

    async def mark(self, recipient: str, notification_id: str, read: bool) -> dict[str, Any]:
        async with self._lock:
            row = await self.get(recipient, notification_id)
            if bool(row.get("read")) != read:
                row = {**row, "read": read, "read_at": utc_timestamp() if read else None}
                await self.store.put_notifications([row])
                self._tell(recipient, Change("updated", row))
            return row

    async def delete(self, recipient: str, notification_id: str) -> None:
        async with self._lock:
            if not await self.store.delete_notification(recipient, notification_id):
                raise NotFound(f"no notification {notification_id!r}")
            self._tell(recipient, Change("deleted", {"id": notification_id}))

    def _tell(self, recipient: str, item: dict[str, Any] | Change) -> None:
        """Push a new row or a change to all of the recipient's open feeds (each of their
        windows)."""
        for feed in list(self.feeds.get(recipient, ())):
            feed.offer(item)

    async def after(self, recipient: str, since: str, limit: int) -> list[dict[str, Any]] | None:
        """A recipient's rows created after `since`, oldest first; None if more than `limit`."""
        rows = await self.store.list_notifications(recipient, since=since, limit=limit + 1)
        rows = [row for row in rows if str(row.get("created_at")) > since]
        if len(rows) > limit:
            return None
        rows.reverse()
        return rows

    # --- feeds ---

    def open_feed(self, recipient: str) -> Feed:
        feed = Feed(recipient, self.policy.feed_limit)
        if self._stopping:
            feed.close("stopped")
        else:
            self.feeds.setdefault(recipient, set()).add(feed)
        return feed

    def close_feed(self, feed: Feed) -> None:
        feeds = self.feeds.get(feed.recipient)
        if feeds is not None:
            feeds.discard(feed)
            if not feeds:
                del self.feeds[feed.recipient]
        feed.close("unsubscribed")


def _ids(events: Iterable[StoredEvent]) -> tuple[int, int]:
    ids = [event.id for event in events]
    return min(ids), max(ids)
