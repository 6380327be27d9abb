"""Tests with named people and roles: alice owns everything (a configured owner), bob,
carol and mallory get what alice shares, and nothing is anybody's by default (default role
`none`). The server is conftest's `roles_server`; people are `two_users.TwoUsers`."""

from __future__ import annotations

from typing import Any

import httpx
from two_users import ARGS, USERS

TOKENS = {name: token for token, name in USERS.items()}
ROLE_ARGS = [*ARGS, "--DatastoreApp.default_role=none", "--DatastoreApp.owners=alice"]


def http(server: Any, user: str) -> httpx.AsyncClient:
    """A REST client of `user` (its token) on the server."""
    headers = {"Authorization": f"token {TOKENS[user]}"}
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60)


async def share(server: Any, path: str, rule: dict[str, Any]) -> dict[str, Any]:
    """Set a rule on `path` as alice; the rule as the server describes it."""
    async with http(server, "alice") as alice:
        response = await alice.put(f"/api/datastore/permissions/{path}", json=rule)
        assert response.status_code == 200, response.text
        return dict(response.json())
