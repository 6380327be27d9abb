"""`/api/datastore/permissions/{path}`: who may do what on a file or folder.

    GET     the rule set on the path (if any), which path decides it, and the caller's role
    PUT     set the rule: {"users": {name: role}, "groups": {name: role}, "default": role}
    DELETE  remove the rule (the path inherits again)

An empty path is the root. Reading needs the viewer role on the path; changing a rule needs
the owner role, there. A change applies at once, to open rooms too, and is an event.
"""

from __future__ import annotations

import json
import posixpath

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..auth import Role, Rule
from ..errors import BadRequest
from .base import DatastoreHandler

__all__ = ["PermissionsHandler"]


def rule_path(path: str | None) -> str:
    """A path relative to the root ("" is the root); 400 for one that leaves it."""
    path = (path or "").replace("\\", "/").strip("/")
    normal = posixpath.normpath(path) if path else ""
    if normal == ".":
        return ""
    if normal == ".." or normal.startswith("../") or len(normal) > 4096:
        raise BadRequest(f"{path[:100]!r} is not a path inside the root")
    return normal


class PermissionsHandler(DatastoreHandler):
    auth_resource = "contents"

    @web.authenticated
    @authorized
    async def get(self, path: str | None = None) -> None:
        where = rule_path(path)
        self.require(where, Role.VIEWER, "read permissions")
        self.finish(json.dumps(self.datastore.permissions.describe(where, self.user_name)))

    @web.authenticated
    @authorized
    async def put(self, path: str | None = None) -> None:
        where = rule_path(path)
        rule = Rule.parse(self.get_json_object())
        self.require(where, Role.OWNER, "share")
        await self.datastore.permissions.set_rule(where, rule, self.user_name)
        self.finish(json.dumps(self.datastore.permissions.describe(where, self.user_name)))

    @web.authenticated
    @authorized
    async def delete(self, path: str | None = None) -> None:
        where = rule_path(path)
        self.require(where, Role.OWNER, "share")
        await self.datastore.permissions.set_rule(where, None, self.user_name)
        self.finish(json.dumps(self.datastore.permissions.describe(where, self.user_name)))
