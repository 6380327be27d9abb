"""jupyter_server's authorizer, answered by our roles.

jupyter_server asks its Authorizer whether a user may `read`, `write` or `execute` a kind of
resource. `RoleAuthorizer` wraps the server's authorizer (which stays the base: it answers
first, and a no is a no), then:

- for our own handlers, yes: each checks the role on the paths it resolves;
- for `/api/me?permissions=...` (what JupyterLab asks to know which buttons to show), the
  caller's role on the root against `ON_ROOT` (anything else: owner);
- for every other handler, what the gate decided for that request (`gate.py`): the gate has
  already refused what the user's roles do not allow, before the handler ran.
"""

from __future__ import annotations

from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.authorizer import Authorizer

from .gate import Gate, is_ours
from .roles import Role

__all__ = ["ON_ROOT", "RoleAuthorizer"]

ON_ROOT = {
    "contents": {"read": Role.VIEWER, "write": Role.EDITOR},
    "files": {"read": Role.VIEWER, "write": Role.EDITOR},
    "kernels": {"read": Role.VIEWER, "write": Role.RUNNER, "execute": Role.RUNNER},
    "sessions": {"read": Role.VIEWER, "write": Role.RUNNER, "execute": Role.RUNNER},
    "terminals": {"read": Role.RUNNER, "write": Role.RUNNER, "execute": Role.RUNNER},
    "kernelspecs": {"read": Role.NONE},
    "config": {"read": Role.NONE},
    "nbconvert": {"read": Role.NONE},
    "events": {"read": Role.NONE},
    "api": {"read": Role.NONE},
}
"""The role on the root each resource and action needs, as `/api/me` reports it."""

_IDENTITY = "jupyter_server.services.api.handlers.IdentityHandler"


class RoleAuthorizer(Authorizer):  # type: ignore[misc]
    def __init__(self, base: Any, gate: Gate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base = base
        self.gate = gate

    async def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        allowed = await ensure_async(self.base.is_authorized(handler, user, action, resource))
        if not allowed:
            return False
        cls = type(handler)
        if is_ours(cls):
            return True
        if f"{cls.__module__}.{cls.__qualname__}" == _IDENTITY:
            datastore = await self.gate.datastore.ready()
            needed = ON_ROOT.get(resource, {}).get(action, Role.OWNER)
            return datastore.permissions.role(getattr(user, "username", None), "") >= needed
        return self.gate.allows(handler)
