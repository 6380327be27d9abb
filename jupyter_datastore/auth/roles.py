"""Roles per document or folder, and how a user's role on a path is found. Pure: no I/O.

    none    < viewer  < editor  < runner  < owner
    no access  read, presence  + write  + execute  + share (change the rules)

A rule is set on a path, a file or a folder ("" is the root), and names roles for users, for
groups and for everyone else (`default`). A user's role on a path is found on the nearest
rule from the path up to the root that names the user, then one of their groups (the
highest of those), then a default; with no such rule, the server's default role applies.
Owners given by the server's configuration own everything, whatever the rules say.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest

__all__ = ["Role", "Rule", "RuleSet", "parent_paths"]

MAX_PRINCIPALS = 1000
"""Users plus groups named on one rule."""


class Role(enum.IntEnum):
    NONE = 0
    VIEWER = 1
    EDITOR = 2
    RUNNER = 3
    OWNER = 4

    @classmethod
    def parse(cls, value: Any) -> Role:
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        names = ", ".join(r.label for r in cls)
        raise BadRequest(f"unknown role {value!r}: one of {names}")

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Rule:
    users: Mapping[str, Role] = field(default_factory=dict)
    groups: Mapping[str, Role] = field(default_factory=dict)
    default: Role | None = None

    @classmethod
    def parse(cls, body: Any) -> Rule:
        """`{"users": {name: role}, "groups": {name: role}, "default": role | null}`."""
        if not isinstance(body, dict):
            raise BadRequest("a permission rule must be a JSON object")
        unknown = body.keys() - {"users", "groups", "default"}
        if unknown:
            raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}")
        users, groups = (_principals(body.get(key), key) for key in ("users", "groups"))
        if len(users) + len(groups) > MAX_PRINCIPALS:
            raise BadRequest(f"a rule names at most {MAX_PRINCIPALS} users and groups")
        default = body.get("default")
        return cls(users, groups, None if default is None else Role.parse(default))

    def to_json(self) -> dict[str, Any]:
        return {
            "users": {name: role.label for name, role in sorted(self.users.items())},
            "groups": {name: role.label for name, role in sorted(self.groups.items())},
            "default": None if self.default is None else self.default.label,
        }

    def role_of(self, user: str | None, groups: Iterable[str]) -> Role | None:
        if user is not None and user in self.users:
            return self.users[user]
        named = [self.groups[g] for g in groups if g in self.groups]
        if named:
            return max(named)
        return self.default


def _principals(value: Any, key: str) -> dict[str, Role]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f'"{key}" must map names to roles')
    out = {}
    for name, role in value.items():
        if not isinstance(name, str) or not name or len(name) > 256:
            raise BadRequest(f'"{key}": names are strings of 1 to 256 characters')
        out[name] = Role.parse(role)
    return out


def parent_paths(path: str) -> list[str]:
    """`a/b/c.ipynb` -> [`a/b/c.ipynb`, `a/b`, `a`, ``]: the path, then its folders."""
    parts = [p for p in path.strip("/").split("/") if p]
    return ["/".join(parts[:n]) for n in range(len(parts), -1, -1)]


@dataclass
class RuleSet:
    """The rules by path, and the server's defaults."""

    rules: dict[str, Rule] = field(default_factory=dict)
    default_role: Role = Role.OWNER
    owners: frozenset[str] = frozenset()

    def role_of(self, user: str | None, groups: Iterable[str], path: str) -> Role:
        if user is not None and user in self.owners:
            return Role.OWNER
        groups = frozenset(groups)
        for where in parent_paths(path):
            rule = self.rules.get(where)
            if rule is not None:
                role = rule.role_of(user, groups)
                if role is not None:
                    return role
        return self.default_role

    def decided_by(self, path: str) -> str | None:
        """The nearest path, from `path` up, that has a rule."""
        return next((p for p in parent_paths(path) if p in self.rules), None)

    def widens(self, source: str, target: str, groups_of: Any) -> str | None:
        """Who could read something under `target` that they cannot read at `source` (the
        same thing moved there), or None. Checked for each user and group a rule names on
        either side, and for everyone else; `groups_of(user)` gives a user's groups."""
        moved = [(p, target + p[len(source) :]) for p in self.rules if _under(p, source)]
        pairs = [(source, target), *moved]
        named: set[str] = set()
        groups: set[str] = set()
        for old, new in pairs:
            for where in (*parent_paths(old), *parent_paths(new)):
                rule = self.rules.get(where)
                if rule is not None:
                    named.update(rule.users)
                    groups.update(rule.groups)
        principals: list[tuple[str | None, frozenset[str], str]] = [
            (user, frozenset(groups_of(user)), user) for user in sorted(named)
        ]
        principals += [(None, frozenset({g}), f"the group {g}") for g in sorted(groups)]
        principals.append((None, frozenset(), "everyone else"))
        for user, its_groups, label in principals:
            for old, new in pairs:
                before = self.role_of(user, its_groups, old)
                if before < Role.VIEWER <= self.role_of(user, its_groups, new):
                    return label
        return None


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")
