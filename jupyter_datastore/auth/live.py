"""Live re-checks: an open socket keeps only the access its user still has.

A WebSocket is authenticated and authorized once, when it opens; it may then stay open for
days. Every open socket of ours (rooms, the state room, event and notification streams)
is registered here with the request that opened it. Twice a second the users and rules are
looked at; when a rule changed, or the identity provider's users did (a user removed, a
token or password changed: `UsersIdentityProvider` reads its file again when it changed),
or for an identity provider that cannot tell (JupyterHub's, say) every time, each socket
is checked again:

- its request is authenticated again (its token, or its login cookie): a request that no
  longer names the same user closes the socket with 4403; sockets opened with the same
  credentials (a user's windows, a client's many rooms) are authenticated once per look;
- its own check (`recheck`) runs: a room whose file the user may no longer read closes with
  4403 (writing is decided per message already, so a viewer's socket stays, read-only).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jupyter_core.utils import ensure_async

from ..errors import DatastoreError, Forbidden

__all__ = ["LiveChecks", "Watched"]

log = logging.getLogger(__name__)

INTERVAL = 0.5
"""Seconds between two looks at the users and the rules."""


@dataclass(eq=False)
class Watched:
    """One open socket: whose it is, the handler of its request, how to check and close it."""

    user: str | None
    handler: Any
    close: Callable[[DatastoreError], None]
    recheck: Callable[[], None] = field(default=lambda: None)
    """Raises a `DatastoreError` when the user may no longer keep the socket."""


class LiveChecks:
    def __init__(self, identity: Any, rules_version: Callable[[], int]) -> None:
        self.identity = identity
        self.rules_version = rules_version
        self.watched: set[Watched] = set()
        self._seen: tuple[int, Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def add(self, watched: Watched) -> Watched:
        self.watched.add(watched)
        return watched

    def discard(self, watched: Watched) -> None:
        self.watched.discard(watched)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL)
            try:
                await self.check_if_changed()
            except Exception:  # never let one bad check stop the next ones
                log.exception("the live re-check of open sockets failed")

    def _version(self) -> tuple[int, Any] | None:
        """What the checks depend on, or None when the identity provider cannot tell."""
        current_users = getattr(self.identity, "current_users", None)
        if current_users is None:
            return None
        return (self.rules_version(), current_users())

    async def check_if_changed(self) -> None:
        version = self._version()
        if version is not None and self._seen is not None and version == self._seen:
            return
        self._seen = version
        found: dict[tuple[Any, ...], Any] = {}
        for watched in list(self.watched):
            await self.check(watched, found)

    async def check(
        self, watched: Watched, found: dict[tuple[Any, ...], Any] | None = None
    ) -> None:
        """Check one socket; `found`: the user each set of credentials authenticates as,
        found so far in this look (the sockets that send the same ask once)."""
        try:
            if not await self._still(watched, {} if found is None else found):
                raise Forbidden("your login is no longer valid: log in again")
            watched.recheck()
        except DatastoreError as exc:
            self.discard(watched)
            log.info("closing a socket of %s: %s", watched.user or "an anonymous user", exc.detail)
            watched.close(exc)

    async def _still(self, watched: Watched, found: dict[tuple[Any, ...], Any]) -> bool:
        """Whether the socket's request still authenticates as its user. The server's own
        token is an anonymous user that jupyter_server names anew at each request: any
        user it gives counts as the same."""
        handler = watched.handler
        given = str(self.identity.get_token(handler) or "")
        credentials = (given, handler.request.headers.get("Cookie"))
        if credentials in found:
            user = found[credentials]
        else:
            saved = getattr(handler, "_jupyter_current_user", None)
            handler._jupyter_current_user = None  # jupyter_server returns it as it is otherwise
            try:
                user = found[credentials] = await ensure_async(self.identity.get_user(handler))
            finally:
                handler._jupyter_current_user = saved
        if user is None:
            return False
        if getattr(user, "username", None) == watched.user:
            return True
        server_token = str(getattr(self.identity, "token", "") or "")
        return bool(server_token) and hmac.compare_digest(given.encode(), server_token.encode())
