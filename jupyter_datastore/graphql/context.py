"""Who asks a GraphQL operation, and the one place its resolvers decide what they may do.

Every resolver gets a `Caller` as `info.context`: the datastore and the user. Paths from the
caller go through the one path check (`auth/paths.py`) and roles are decided on the real
path it gives, exactly as REST handlers do (`handlers/base.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import strawberry

from ..auth import Role
from ..datastore import Datastore

__all__ = ["Caller", "Info"]


@dataclass
class Caller:
    datastore: Datastore
    user: str | None
    """The authenticated user's name (jupyter_server's identity)."""
    handler: Any = None
    """The opening request's handler (HTTP or WebSocket): its login is what was checked."""
    on_rules_changed: list[Callable[[], None]] = field(default_factory=list)
    """Called when rules or users changed while a WebSocket is open (its login is still
    good): a subscription that shows a per-user view sends what changed in it."""

    def real(self, path: str | None) -> str:
        """The real path a client's path names ("" is the root), or BadRequest/Forbidden."""
        return self.datastore.paths.real(path or "")

    def role(self, path: str | None) -> Role:
        """The caller's role on what `path` names (none for a malformed path)."""
        return self.datastore.role_on(self.user, path or "")

    def may(self, path: str | None, needed: Role) -> bool:
        return self.role(path) >= needed

    def may_view(self, path: str | None) -> bool:
        """Never raises: a path found by the server (a kernel's notebook, a record's) that
        the caller may not view is left out, at no other cost."""
        return self.may(path, Role.VIEWER)

    def require(self, path: str | None, needed: Role, operation: str) -> str:
        """The real path, once the caller's role on it is at least `needed` (else Forbidden,
        audited as REST refusals are)."""
        real = self.real(path)
        self.datastore.permissions.require(self.user, real, needed, operation)
        return real

    def rules_changed(self) -> None:
        for listener in list(self.on_rules_changed):
            listener()

    @property
    def sees_everything(self) -> bool:
        """May view every file and folder: views of the whole server are theirs unfiltered."""
        return self.datastore.permissions.sees_everything(self.user)


Info = strawberry.Info[Caller, None]
