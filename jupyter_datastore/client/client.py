"""`Client`: one server's REST API and rooms, with one token.

```py
async with Client("http://localhost:8888", token) as client:
    notebook = await client.open_notebook("analysis.ipynb")
    notebook.cells[0].set_source("x = 1")
    [run] = await notebook.execute([notebook.cells[0].id])
```
"""

from __future__ import annotations

import asyncio
import os
import ssl
import urllib.parse
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from .documents import Notebook, TextFile
from .errors import ConnectionLost, error_from_response
from .room import Backoff, Endpoint, Room
from .state import StateView

__all__ = ["Client", "Execution"]

FINISHED = frozenset({"ok", "error", "cancelled", "interrupted", "lost"})
_MIN_POLL = 0.02  # seconds between two reads of one execution record, at the least


@dataclass(frozen=True)
class Execution:
    """One cell's execution record, as `GET /api/datastore/executions/{id}` gives it."""

    record: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def cell_id(self) -> str | None:
        return self.record.get("cell_id")

    @property
    def status(self) -> str:
        """queued, running, awaiting_input, then ok, error, cancelled, interrupted or lost."""
        return str(self.record["status"])

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def execution_count(self) -> int | None:
        return self.record.get("execution_count")

    @property
    def error(self) -> dict[str, str] | None:
        """`ename` and `evalue` of what the cell raised."""
        return self.record.get("error")

    @property
    def reason(self) -> str | None:
        """Why it was cancelled, interrupted or lost."""
        return self.record.get("reason")

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return list(self.record.get("outputs") or [])

    @property
    def traceback(self) -> list[str]:
        """The lines of the error output's traceback (with the kernel's ANSI colours)."""
        for output in self.outputs:
            if output.get("output_type") == "error":
                return [str(line) for line in output.get("traceback", [])]
        return []


class Client:
    """A server at `url` (with its base URL), authenticated by `token` (default: the
    `JUPYTER_TOKEN` environment variable). Close it, or use it with `async with`."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
        verify: bool = True,
        max_message_size: int | None = 2**28,
    ) -> None:
        self.url = url.rstrip("/")
        token = token if token is not None else os.environ.get("JUPYTER_TOKEN")
        self.timeout = timeout
        self.backoff = backoff or Backoff()
        self._headers = {"Authorization": f"token {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self._headers, timeout=timeout, verify=verify
        )
        self._ssl: ssl.SSLContext | None = None
        if self.url.startswith("https:") and not verify:
            self._ssl = ssl.create_default_context()
            self._ssl.check_hostname, self._ssl.verify_mode = False, ssl.CERT_NONE
        self._max_message_size = max_message_size
        self._rooms: weakref.WeakSet[Room] = weakref.WeakSet()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Leave every room opened through this client (each sends what it holds first)."""
        await asyncio.gather(*(room.close() for room in list(self._rooms)))
        await self._http.aclose()

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """A REST call: the JSON answer, or a `ClientError` saying why not."""
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise ConnectionLost(f"{method} {path}: cannot reach {self.url}: {exc!r}") from exc
        if response.is_error:
            raise error_from_response(response.status_code, response.text, f"{method} {path}")
        return response.json() if response.content else None

    # --- live documents ---

    async def open_notebook(self, path: str, *, timeout: float | None = None) -> Notebook:
        """The notebook at `path` (relative to the server's root), synced and live."""
        room = await self._open(path, "json", "notebook", timeout)
        return Notebook(self, path, room)

    async def open_file(self, path: str, *, timeout: float | None = None) -> TextFile:
        """The text file at `path`, synced and live."""
        return TextFile(self, path, await self._open(path, "text", "file", timeout))

    async def watch_state(self, *, timeout: float | None = None) -> StateView:
        """The server's kernels, sessions, executions... live (the room `datastore:state`)."""

        async def opener() -> Endpoint:
            snapshot = await self.request("GET", "/api/datastore/state")
            return str(snapshot["room_id"]), str(snapshot["session_id"])

        endpoint = await opener()
        return StateView(await self._start(opener, endpoint, timeout))

    async def _open(
        self, path: str, file_format: str, file_type: str, timeout: float | None
    ) -> Room:
        async def opener() -> Endpoint:
            quoted = urllib.parse.quote(path.strip("/"), safe="/")
            session = await self.request(
                "PUT",
                f"/api/collaboration/session/{quoted}",
                {"format": file_format, "type": file_type},
            )
            return f"{file_format}:{file_type}:{session['fileId']}", str(session["sessionId"])

        endpoint = await opener()  # an unknown path fails here, before any connection
        return await self._start(opener, endpoint, timeout)

    async def _start(
        self, opener: Callable[[], Awaitable[Endpoint]], endpoint: Endpoint, timeout: float | None
    ) -> Room:
        room = Room(endpoint[0], opener, self._dial, self.backoff)
        await room.start(endpoint, self.timeout if timeout is None else timeout)
        self._rooms.add(room)
        return room

    async def _dial(self, endpoint: Endpoint) -> ClientConnection:
        name, session_id = endpoint
        base = "ws" + self.url[4:]  # http -> ws, https -> wss
        query = urllib.parse.urlencode({"sessionId": session_id})
        url = f"{base}/api/collaboration/room/{name}?{query}"
        try:
            return await connect(
                url,
                additional_headers=self._headers,
                max_size=self._max_message_size,
                open_timeout=self.timeout,
                ssl=self._ssl,
            )
        except InvalidStatus as exc:
            body = exc.response.body.decode(errors="replace") if exc.response.body else ""
            raise error_from_response(exc.response.status_code, body, f"room {name}") from exc
        except (OSError, WebSocketException, asyncio.TimeoutError) as exc:
            raise ConnectionLost(f"room {name}: cannot connect to {self.url}: {exc!r}") from exc

    # --- executions ---

    async def submit(
        self,
        cell_ids: Iterable[str],
        *,
        path: str | None = None,
        room_id: str | None = None,
        kernel: str | None = None,
        kernel_id: str | None = None,
    ) -> list[Execution]:
        """Queue cells of a notebook (by `path` or `room_id`) to run in order on its kernel
        (started with its session if it has none; `kernel` names a kernelspec for that)."""
        body: dict[str, Any] = {"cell_ids": list(cell_ids)}
        body.update({k: v for k, v in (("path", path), ("room_id", room_id)) if v is not None})
        if kernel_id is not None:
            body["kernel"] = {"id": kernel_id}
        elif kernel is not None:
            body["kernel"] = {"name": kernel}
        answer = await self.request("POST", "/api/datastore/executions", body)
        return [Execution(record) for record in answer["executions"]]

    async def execution(self, execution_id: str) -> Execution:
        return Execution(await self.request("GET", f"/api/datastore/executions/{execution_id}"))

    async def cancel(self, execution_id: str) -> Execution:
        """Cancel a queued cell, interrupt a running one."""
        return Execution(await self.request("DELETE", f"/api/datastore/executions/{execution_id}"))

    async def answer_input(self, execution_id: str, value: str) -> Execution:
        """Answer the `input()` or `getpass()` the cell waits on."""
        path = f"/api/datastore/executions/{execution_id}/input"
        return Execution(await self.request("POST", path, {"value": value}))

    async def wait(
        self,
        execution_id: str,
        *,
        timeout: float | None = None,
        wake: Callable[[float], Awaitable[None]] | None = None,
    ) -> Execution:
        """The record once finished. It is read again after a growing pause, or sooner when
        `wake(pause)` returns (a notebook wakes it when the cell's run ends in the doc)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delay = 0.05
        while True:
            read_at = loop.time()
            execution = await self.execution(execution_id)
            if execution.finished:
                return execution
            now = loop.time()
            if deadline is not None and now >= deadline:
                raise asyncio.TimeoutError(f"execution {execution_id} still {execution.status}")
            pause = delay if deadline is None else min(delay, deadline - now)
            await (wake(pause) if wake is not None else asyncio.sleep(pause))
            await asyncio.sleep(max(0.0, read_at + _MIN_POLL - loop.time()))
            delay = min(delay * 1.5, 1.0)

    # --- widgets ---

    async def widgets(self, path: str) -> dict[str, Any]:
        """The ipywidgets state of the notebook's kernel: the widget-state JSON
        (`{"version_major": 2, "version_minor": 0, "state": {model_id: model}}`)."""
        query = urllib.parse.urlencode({"path": path})
        return dict(await self.request("GET", f"/api/datastore/widgets?{query}"))

    async def set_widget(
        self, path: str, model_id: str, state: dict[str, Any] | None = None, **values: Any
    ) -> dict[str, Any]:
        """Set values of a widget model (`state`, or as keywords: `value=7`), as a front end
        does; the model once the kernel has handled it."""
        patch = {**(state or {}), **values}
        quoted = urllib.parse.quote(model_id, safe="")
        query = urllib.parse.urlencode({"path": path})
        url = f"/api/datastore/widgets/{quoted}?{query}"
        return dict(await self.request("PATCH", url, {"state": patch}))
