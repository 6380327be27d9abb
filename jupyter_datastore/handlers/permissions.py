"""`/api/datastore/permissions/{path}`: who may do what on a file or folder.

    GET     the rule set on the path (if any), which path decides it, and the caller's role
    PUT     set the rule: {"users": {name: role}, "groups": {name: role}, "default": role}
    DELETE  remove the rule (the path inherits again)

An empty path is the root. Reading needs the viewer role on the path; changing a rule needs
the owner role, there. A change applies at once, to open rooms too, and is an event.
"""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..auth import Role, Rule
from .base import DatastoreHandler

__all__ = ["PermissionsHandler"]


class PermissionsHandler(DatastoreHandler):
    auth_resource = "contents"

    @web.authenticated
    @authorized
    async def get(self, path: str | None = None) -> None:
        where = self.real_path(path)
        self.require(where, Role.VIEWER, "read permissions")
        self.finish(json.dumps(self.datastore.permissions.describe(where, self.user_name)))

    @web.authenticated
    @authorized
    async def put(self, path: str | None = None) -> None:
        where = self.real_path(path)
        rule = Rule.parse(self.get_json_object())
        self.require(where, Role.OWNER, "share")
        await self.datastore.permissions.set_rule(where, rule, self.user_name)
        self.finish(json.dumps(self.datastore.permissions.describe(where, self.user_name)))

    @web.authenticated
    @authorized
    async def delete(self, path: str | None = None) -> None:
        where = self.real_path(path)
        self.require(where, Role.OWNER, "share")
        await self.datastore.permissions.set_rule(where, None, self.user_name)
        self.finish(json.dumps(self.datastore.permissions.describe(where, self.user_name)))
