"""Being told when a jupyter_server manager changed something it emits no event for.

jupyter_server emits events for kernels and contents, not for sessions, terminals or kernel
WebSocket connections. Their managers are wrapped on the instance (never the class): after
each named method returns or raises, a callback runs. `undo()` removes the wrappers, so
the class's methods apply again.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["call_after", "replace_methods"]

Wrapper = Callable[[Callable[..., Any]], Callable[..., Any]]


def call_after(obj: Any, names: Iterable[str], callback: Callable[[], None]) -> Callable[[], None]:
    """Run `callback` after each call of `obj`'s methods `names`; returns `undo`."""
    return replace_methods(obj, {name: lambda m: _wrap(m, callback) for name in names})


def replace_methods(obj: Any, wrappers: dict[str, Wrapper]) -> Callable[[], None]:
    """Replace each named method of `obj` (it has) on the instance by what its wrapper makes
    of it; returns `undo`."""
    wrapped: list[str] = []
    for name, wrapper in wrappers.items():
        original = getattr(obj, name, None)
        if original is None:
            continue
        setattr(obj, name, wrapper(original))
        wrapped.append(name)

    def undo() -> None:
        for name in wrapped:
            with contextlib.suppress(AttributeError):
                delattr(obj, name)

    return undo


def _wrap(original: Callable[..., Any], callback: Callable[[], None]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(original):

        async def call_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await original(*args, **kwargs)
            finally:
                callback()

        return functools.wraps(original)(call_async)

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        finally:
            callback()

    return functools.wraps(original)(call)
