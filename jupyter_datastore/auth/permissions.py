"""The permission service: the rules of a server, kept in the store, and the audit trail.

Every check asks the rules in memory (a dictionary lookup per folder level), so a changed
rule applies to the very next message of an open room. Every refusal and every change of a
rule is an event of the `permission` schema (the audit trail, on the event bus).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..errors import Forbidden
from ..events.catalog import PERMISSION, Emit, no_emit
from ..store.base import Store
from .audit import RefusalAudit, event_path
from .roles import Role, Rule, RuleSet

__all__ = ["Permissions"]

log = logging.getLogger(__name__)

GroupsOf = Callable[[str], frozenset[str]]


def no_groups(user: str) -> frozenset[str]:
    return frozenset()


class Permissions:
    def __init__(
        self,
        store: Store,
        *,
        default_role: Role = Role.OWNER,
        owners: frozenset[str] = frozenset(),
        groups_of: GroupsOf = no_groups,
        emit: Emit = no_emit,
    ) -> None:
        self.store = store
        self.rules = RuleSet(default_role=default_role, owners=owners)
        self.groups_of = groups_of
        self.emit = emit
        self.audit = RefusalAudit(lambda schema, data: self.emit(schema, data))
        """Refusal events, aggregated per kind (see `audit.py`)."""
        self.version = 0
        """Counts the changes of the rules (open sockets are checked again on a change)."""

    async def start(self) -> None:
        for path, body in (await self.store.get_permissions()).items():
            try:
                self.rules.rules[path] = Rule.parse(body)
            except Exception as exc:  # a rule written by a newer version, say: ignore it
                log.warning("the permission rule on %r is not readable: %s", path, exc)

    def role(self, user: str | None, path: str) -> Role:
        groups = self.groups_of(user) if user is not None else frozenset()
        return self.rules.role_of(user, groups, path)

    def sees_everything(self, user: str | None) -> bool:
        """Whether the user may view every file and folder (the root and each path a rule
        is set on): such a user may see views of the whole server, such as the state room."""
        return all(self.role(user, path) >= Role.VIEWER for path in ("", *self.rules.rules))

    def require(self, user: str | None, path: str, needed: Role, operation: str) -> None:
        """Raise `Forbidden` (and record the refusal) unless `user` has `needed` on `path`."""
        role = self.role(user, path)
        if role < needed:
            raise self.refused(user, path, role, needed, operation)

    def refused(
        self, user: str | None, path: str, role: Role, needed: Role, operation: str
    ) -> Forbidden:
        """Record a refusal (aggregated with its repeats); the error to raise or send."""
        path = event_path(path)
        self.audit.refused(
            {
                "action": "refused",
                "path": path,
                "user": user,
                "role": role.label,
                "needed": needed.label,
                "operation": operation,
            }
        )
        who = user or "an anonymous user"
        return Forbidden(
            f"{operation} on {path or '/'} needs the role {needed.label}; {who} is {role.label}"
        )

    async def set_rule(self, path: str, rule: Rule | None, by: str | None) -> None:
        await self.store.put_permission(path, None if rule is None else rule.to_json())
        if rule is None:
            self.rules.rules.pop(path, None)
        else:
            self.rules.rules[path] = rule
        self.version += 1
        self.emit(
            PERMISSION,
            {
                "action": "changed",
                "path": event_path(path),
                "user": by,
                "rule": None if rule is None else rule.to_json(),
            },
        )

    def describe(self, path: str, user: str | None) -> dict[str, Any]:
        rule = self.rules.rules.get(path)
        return {
            "path": path,
            "rule": None if rule is None else rule.to_json(),
            "decided_by": self.rules.decided_by(path),
            "role": self.role(user, path).label,
            "user": user,
            "default_role": self.rules.default_role.label,
        }
