"""A bounded queue between a producer that must never wait and one consumer that may lag.

The producer `offer`s without blocking; the consumer takes everything waiting at once
(`next`). Overflow is not trimming: a consumer more than `limit` items behind is closed
with the reason "overflow" and its queue dropped, so it knows to resume from a durable
position (an event id, a time) instead of silently missing items.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Outbox"]

T = TypeVar("T")


class Outbox(Generic[T]):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queue: deque[T] = deque()
        self.ready = asyncio.Event()
        self.closed: str | None = None
        """Why it ended (`overflow`, `stopped`, `unsubscribed`), once it has."""

    def put(self, item: T) -> None:
        if self.closed is not None:
            return
        if len(self.queue) >= self.limit:
            self.close("overflow")
            return
        self.queue.append(item)
        self.ready.set()

    def close(self, reason: str) -> None:
        if self.closed is None:
            self.closed = reason
            self.queue.clear()
            self.ready.set()

    async def next(self) -> list[T]:
        """Everything waiting (at least one item), or [] once closed."""
        while not self.queue and self.closed is None:
            self.ready.clear()
            await self.ready.wait()
        items = list(self.queue)
        self.queue.clear()
        return items
