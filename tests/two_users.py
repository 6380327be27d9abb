"""An identity provider for tests with named people: token `alice-token` is alice,
`bob-token` is bob, `carol-token` is carol, `mallory-token` is mallory; alice and bob are in
the group `team`. The server's own token stays a shared, anonymous one.

Start a server with `--ServerApp.identity_provider_class=two_users.TwoUsers` and this folder
on its PYTHONPATH (`two_users_env()`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User

USERS = {
    "alice-token": "alice",
    "bob-token": "bob",
    "carol-token": "carol",
    "mallory-token": "mallory",
}
GROUPS = {"alice": frozenset({"team"}), "bob": frozenset({"team"})}
ARGS = ["--ServerApp.identity_provider_class=two_users.TwoUsers"]


def two_users_env() -> dict[str, str]:
    """The environment a server needs to import this module."""
    here = str(Path(__file__).parent)
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": here + (os.pathsep + path if path else "")}


class TwoUsers(IdentityProvider):  # type: ignore[misc]
    async def get_user_token(self, handler: Any) -> User | None:
        name = USERS.get(self.get_token(handler) or "")
        if name is not None:
            return User(username=name, name=name, display_name=name)
        return await super().get_user_token(handler)

    def groups_of(self, username: str) -> frozenset[str]:
        return GROUPS.get(username, frozenset())
