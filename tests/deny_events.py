"""An authorizer for an upstream that refuses its event stream (as an older server, or one
whose policy denies `events`): supernode mode must then notice changes by polling.

Start the upstream with `--ServerApp.authorizer_class=deny_events.DenyEvents` and this
folder on its PYTHONPATH (`two_users.two_users_env()`).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.authorizer import AllowAllAuthorizer


class DenyEvents(AllowAllAuthorizer):  # type: ignore[misc]
    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return resource != "events"
