"""From callbacks to a subscription's async generator, through a bounded queue.

A source (the event bus, a state feed, an execution record, a room) calls `put`; the
subscription's generator reads with `async for`. At most `limit` items wait: a subscriber
that falls that far behind ends with a `slow_subscriber` error (subscribe again, with
`since` where the subscription takes one), as the REST sockets close a slow reader.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

from ..errors import DatastoreError

__all__ = ["DEFAULT_LIMIT", "Pipe", "SlowSubscriber"]

T = TypeVar("T")
DEFAULT_LIMIT = 10_000


class SlowSubscriber(DatastoreError):
    status = 503
    error = "slow_subscriber"


class Pipe(Generic[T]):
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._items: deque[T] = deque()
        self._ready = asyncio.Event()
        self._overflowed = False
        self._ended: BaseException | None = None
        self._closed = False

    def put(self, item: T) -> None:
        if self._closed or self._overflowed:
            return
        if len(self._items) >= self.limit:
            self._overflowed = True
        else:
            self._items.append(item)
        self._ready.set()

    def end(self, error: BaseException | None = None) -> None:
        """No more items: the reader stops after those waiting (raising `error` if given)."""
        self._closed = True
        self._ended = error
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._read()

    async def _read(self) -> AsyncIterator[T]:
        while True:
            while self._items:
                yield self._items.popleft()
            if self._overflowed:
                raise SlowSubscriber(
                    f"more than {self.limit} items waited for this subscriber: subscribe again"
                )
            if self._closed:
                if self._ended is not None:
                    raise self._ended
                return
            self._ready.clear()
            await self._ready.wait()
