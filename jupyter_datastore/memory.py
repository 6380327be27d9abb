"""How the server process uses memory: CPython's cycle collector paused while a step makes
many objects it drops together, and freed memory given back to the system after rooms close.

The collector runs after every few hundred new container objects, and its older generations
walk every live object: reading a notebook of 5,000 cells (1.9 MB of JSON, some 100,000
dicts, lists and strings) took 100-170 ms with it and 12-19 ms without, and none of it is
garbage it could find (nothing there is cyclic; it is freed by reference counting once the
step ends). `cycles_uncollected` pauses it only for such a synchronous step, during which the
event loop runs nothing else; the next pass after it runs as usual.

A room's document is megabytes of bytes objects, freed when the room closes; glibc's
allocator keeps freed memory for reuse rather than returning it, so a server that opened a
large notebook once stayed that much bigger for good (after a 1,000- and a 5,000-cell
notebook were opened and their rooms freed: 14 MB kept, 10 MB with this). `Trim` asks glibc
to return it (`malloc_trim`) once rooms have closed, once for all the rooms closed in one turn
of the event loop: well under a millisecond. Elsewhere than on glibc it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable, Iterator

__all__ = ["Trim", "cycles_uncollected"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def cycles_uncollected() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc
        return None
    return trim


class Trim:
    """Freed memory given back to the system `delay` seconds after `soon()` is first called
    (0: at the next turn of the event loop)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self._trim = _malloc_trim()
        self._timer: asyncio.TimerHandle | None = None

    def soon(self) -> None:
        if self._trim is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self.now)

    def now(self) -> None:
        self._timer = None
        if self._trim is not None:
            self._trim(0)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
