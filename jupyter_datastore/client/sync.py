"""The client for plain, blocking code.

```py
from jupyter_datastore.client.sync import connect

with connect("http://localhost:8888", token) as client:
    notebook = client.open_notebook("analysis.ipynb")
    notebook.cells[0].set_source("print(1)")
    [run] = notebook.execute()
    print(run.outputs)
```

The async client runs on an event loop in a background thread. Every call on a wrapped
object, attribute reads included, runs on that loop (a pycrdt doc and its asyncio queues
belong to one thread) and waits for the result; coroutines are awaited. The same API as
the async client, minus the async iterators (`StateView.changes`): use `wait_for`, whose
predicate runs on the loop and gets the async object (same properties).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

from .client import Client
from .documents import Cell, Notebook, TextFile
from .state import StateView

__all__ = ["Blocking", "SyncClient", "connect"]

_WRAPPED = (Client, Notebook, Cell, TextFile, StateView)


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="jupyter-datastore-client", daemon=True
        )
        self.thread.start()

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async def run() -> Any:
            result = function(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class Blocking:
    """An object of the async client, whose methods block."""

    def __init__(self, loop: _Loop, target: Any) -> None:
        self._loop = loop
        self._target = target

    def __repr__(self) -> str:
        return f"<blocking {self._loop.call(repr, self._target)}>"

    def __getattr__(self, name: str) -> Any:
        value = self._loop.call(getattr, self._target, name)
        if not callable(value):
            return self._wrap(value)

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._wrap(self._loop.call(value, *args, **kwargs))

        return call

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, _WRAPPED):
            return Blocking(self._loop, value)
        if isinstance(value, list) and any(isinstance(v, _WRAPPED) for v in value):
            return [self._wrap(v) for v in value]
        return value


class SyncClient(Blocking):
    def close(self) -> None:
        """Close the client, its open documents, and the background loop."""
        try:
            self._loop.call(self._target.close)
        finally:
            self._loop.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(url: str, token: str | None = None, **options: Any) -> SyncClient:
    """A blocking `Client` (same arguments); close it, or use it with `with`."""
    loop = _Loop()
    try:
        client = loop.call(lambda: Client(url, token, **options))
    except BaseException:
        loop.stop()
        raise
    return SyncClient(loop, client)
