"""The server's status, and the state room's changes, over GraphQL."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.scalars import JSON

from .. import __version__
from ..errors import Unavailable
from .context import Info
from .streams import Pipe

__all__ = ["Mutation", "Query", "Subscription"]


@strawberry.type(description="This server: its version and the session id of its store.")
class Status:
    version: str
    session_id: str


@strawberry.type(description="One entry of the server's state that changed.")
class StateChange:
    map: str = strawberry.field(
        description="kernels, kernelspecs, sessions, terminals, executions, rooms or status"
    )
    key: str
    value: JSON | None = strawberry.field(description="The entry now; null: it left.")


@strawberry.type(
    description="The caller's view of the server's state: first `state` (the whole view, "
    "as GET /api/datastore/state), then the `changes` of each write of it."
)
class StateUpdate:
    state: JSON | None
    changes: list[StateChange]


def _update(frame: dict[str, Any]) -> StateUpdate:
    if frame["type"] == "state":
        return StateUpdate(state=frame["state"], changes=[])
    changes = [StateChange(map=m, key=k, value=v) for m, k, v in frame["changes"]]
    return StateUpdate(state=None, changes=changes)


@strawberry.type
class Query:
    @strawberry.field(description="This server's version and store session.")
    def status(self, info: Info) -> Status:
        datastore = info.context.datastore
        return Status(version=__version__, session_id=datastore.store.session_id)


Mutation = None


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The server's state as the caller may see it (the documents they may "
        "view, and what concerns them), live: the whole view first, then its changes."
    )
    async def state_changes(self, info: Info) -> AsyncGenerator[StateUpdate, None]:
        caller = info.context
        feeds = caller.datastore.state.feeds
        pipe: Pipe[dict[str, Any]] = Pipe()
        feed = feeds.open(
            lambda: caller.sees_everything,
            caller.may_view,
            pipe.put,
            lambda code, reason: pipe.end(Unavailable("the server is stopping")),
        )
        caller.on_rules_changed.append(feed.refresh)  # the view may have changed
        try:
            async for frame in pipe:
                yield _update(frame)
        finally:
            caller.on_rules_changed.remove(feed.refresh)
            feeds.close(feed)
