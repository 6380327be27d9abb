"""Failed logins, counted: a password guesser is slowed down, and the event loop is not.

Each failed login counts against its (user name, address) pair; past `MAX_FAILURES` within
`WINDOW` seconds, that pair's logins are refused (429, with `Retry-After`) without checking
a password, until the window has passed. Other names and other addresses are unaffected. At
most `MAX_TRACKED` pairs are remembered (the oldest forgotten first), so a flood of names
costs bounded memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["MAX_FAILURES", "WINDOW", "LoginAttempts"]

MAX_FAILURES = 5
WINDOW = 60.0
MAX_TRACKED = 10_000

Key = tuple[str, str]


class LoginAttempts:
    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self._failures: OrderedDict[Key, list[float]] = OrderedDict()

    def _recent(self, key: Key) -> list[float]:
        since = self.clock() - self.window
        times = [t for t in self._failures.get(key, []) if t > since]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def retry_after(self, name: str, address: str) -> float:
        """Seconds until this pair may try again (0: now)."""
        times = self._recent((name, address))
        if len(times) < self.max_failures:
            return 0.0
        return max(0.0, times[-self.max_failures] + self.window - self.clock())

    def failed(self, name: str, address: str) -> None:
        key = (name, address)
        self._failures[key] = [*self._recent(key), self.clock()]
        self._failures.move_to_end(key)
        while len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)

    def succeeded(self, name: str, address: str) -> None:
        self._failures.pop((name, address), None)
