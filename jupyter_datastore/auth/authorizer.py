"""Roles on jupyter_server's own REST API: contents, kernels, sessions and terminals.

jupyter_server asks its Authorizer whether a user may `read`, `write` or `execute` a kind of
resource. `RoleAuthorizer` wraps the server's authorizer (which stays the base: it answers
first, and a no is a no) and then asks the roles, where a request names a path:

    contents, files       the path in the URL: read -> viewer, write -> editor
    kernels               the notebook whose session runs the kernel (the root if none):
                          read -> viewer, write and execute -> runner
    sessions              the session's notebook (in the URL, or the body of a POST):
                          read -> viewer, write -> runner (a session starts a kernel)
    terminals             the root: runner (a terminal runs anything)

Our own handlers check roles themselves, on the paths they resolve; they are left to the
base. Other resources (settings, kernelspecs, ...) are left to the base too.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.authorizer import Authorizer

from .roles import Role

__all__ = ["RoleAuthorizer"]

_NEEDED = {
    "contents": {"read": Role.VIEWER, "write": Role.EDITOR, "execute": Role.EDITOR},
    "files": {"read": Role.VIEWER, "write": Role.EDITOR, "execute": Role.EDITOR},
    "kernels": {"read": Role.VIEWER, "write": Role.RUNNER, "execute": Role.RUNNER},
    "sessions": {"read": Role.VIEWER, "write": Role.RUNNER, "execute": Role.RUNNER},
    "terminals": {"read": Role.RUNNER, "write": Role.RUNNER, "execute": Role.RUNNER},
}


class RoleAuthorizer(Authorizer):  # type: ignore[misc]
    def __init__(self, base: Any, datastore: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base = base
        self.datastore = datastore

    async def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        allowed = await ensure_async(self.base.is_authorized(handler, user, action, resource))
        needed = _NEEDED.get(resource, {}).get(action)
        ours = type(handler).__module__.startswith("jupyter_datastore.")
        if not allowed or needed is None or ours:
            return bool(allowed)
        datastore = await self.datastore.ready()
        path = await self._path(datastore, handler, resource)
        name = getattr(user, "username", None)
        role = datastore.permissions.role(name, path)
        if role < needed:
            operation = f"{action} {resource}"
            datastore.permissions.refused(name, path, role, needed, operation)
            return False
        return True

    async def _path(self, datastore: Any, handler: Any, resource: str) -> str:
        kwargs, args = handler.path_kwargs or {}, handler.path_args or []
        if resource in ("contents", "files"):
            raw = kwargs.get("path", args[0] if args else "")
            return str(raw or "").strip("/")
        if resource == "kernels" and kwargs.get("kernel_id"):
            return await _session_path(datastore, kernel_id=kwargs["kernel_id"])
        if resource == "sessions":
            if kwargs.get("session_id"):
                return await _session_path(datastore, session_id=kwargs["session_id"])
            if handler.request.method == "POST":
                return _body_path(handler.request.body)
        return ""


async def _session_path(datastore: Any, *, kernel_id: str = "", session_id: str = "") -> str:
    for session in await datastore.executor.sessions.list_sessions():
        if session.get("id") == session_id or (session.get("kernel") or {}).get("id") == kernel_id:
            return str(session.get("path") or "").strip("/")
    return ""


def _body_path(body: bytes) -> str:
    try:
        model = json.loads(body or b"{}")
    except ValueError:
        return ""  # jupyter_server answers the malformed body itself
    path = model.get("path") if isinstance(model, dict) else None
    return path.strip("/") if isinstance(path, str) else ""
