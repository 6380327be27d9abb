"""Lists paged as connections (the Relay convention GraphQL clients know): `edges` with a
`cursor` each, and `pageInfo`. A cursor is opaque to clients; here it is the position of
the item in its list's own order (an event's id, an execution's), as text."""

from __future__ import annotations

from typing import Generic, TypeVar

import strawberry

__all__ = ["Connection", "Edge", "PageInfo"]

T = TypeVar("T")


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None = strawberry.field(
        description="Pass as `after` for the next page; null when the page is empty."
    )


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
