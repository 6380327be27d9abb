"""The state mirror: keeps the state room true to the Jupyter server, whoever changes it.

What tells it that something changed, without polling where an event exists:

- kernels: jupyter_server's `kernel_actions` events (start, restart, shutdown, interrupt,
  whoever asked) and our kernel watcher's `kernel_status` events (busy, idle, restarting,
  dead, also for a kernel that died on its own);
- sessions, terminals and kernel connections: their managers emit nothing, so their methods
  are wrapped on the instance (`hooks.call_after`), which catches the REST API, other
  extensions and our own executor alike; a terminal whose shell exits is caught at its end
  of file, a kernel WebSocket at its connect and disconnect;
- executions: our `execution` events; documents and who is in them: `document` and `peer`
  events; contents: jupyter_server's `contents_service` events;
- each kernel's launch (requested, started, connected, idle; or failed, with the reason):
  the kernel manager's `start_kernel` wrapped on the instance (`launches.py`, which also
  turns a kernel gateway's failure into one clear 502, 503 or 504);
- what nothing reports (a kernelspec installed on disk, a session row removed behind the
  manager's back) is caught by a full re-read every
  `reconcile_interval` seconds, and at once by `POST /api/datastore/state/refresh`.

Events only mark what is stale; one worker re-reads it and writes all differences in one
transaction, so a burst of events costs one read and one broadcast. A kernel that died (not
one shut down on request) stays in `kernels` as `dead`, with the reason, for
`dead_kernels_kept` seconds, so that clients see why it went.

An entry leaves the room only when its source says it is gone (`NotFound`, a 404): an
execution record the store cannot read now (`StoreError`) or a file the contents manager
fails to read stays as it was and is read again at the next change or reconciliation; so do
`sessions` and `kernelspecs` when their manager fails (a kernel gateway that is not there or
refuses us: the server still starts, and says so once in its log). Such a failure is logged
once, until a read succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from ..documents.roomid import RoomId
from ..errors import NotFound, StoreError
from ..events.bus import EventBus, EventFilter, Subscription
from ..events.catalog import (
    CONTENTS_SERVICE,
    DOCUMENT,
    EXECUTION,
    KERNEL_ACTIONS,
    KERNEL_STATUS,
    PEER,
)
from ..events.kernels import KernelWatcher
from ..execution.records import ACTIVE, utc_now
from ..execution.service import Executor
from ..rooms import RoomManager
from ..rooms.room import Room, RoomSettings
from ..store.base import StoredEvent
from .feed import StateFeeds
from .hooks import call_after
from .launches import KernelHost, Launches
from .model import STATE_ROOM, Change, StateModel
from .sources import (
    ContentUnreadable,
    JupyterServices,
    content_entry,
    kernel_entries,
    kernelspec_entries,
    session_entries,
    status_entry,
    terminal_entries,
)

__all__ = ["REFUSAL", "ServerState", "StatePolicy"]

log = logging.getLogger(__name__)

REFUSAL = (
    "the state room is read-only: act through the REST API (/api/kernels, /api/sessions, "
    "/api/terminals, /api/contents) and the room follows"
)
_FOLLOWED = frozenset({KERNEL_ACTIONS, KERNEL_STATUS, EXECUTION, DOCUMENT, PEER, CONTENTS_SERVICE})
_EVERYTHING = frozenset({"kernels", "sessions", "terminals", "kernelspecs", "documents"})


@dataclass(frozen=True)
class StatePolicy:
    reconcile_interval: float = 10.0
    """Seconds between full re-reads of the managers, for changes no event reports (0: off)."""
    dead_kernels_kept: float = 60.0
    """Seconds a kernel that died stays in `kernels` as `dead`."""
    executions_kept: int = 100
    """Finished executions kept in `executions` (running and queued ones always are)."""
    contents_kept: int = 1000
    """Files and folders kept in `contents`: the ones most recently changed."""


class ServerState:
    def __init__(
        self,
        *,
        services: JupyterServices,
        bus: EventBus,
        rooms: RoomManager,
        sessions_of_documents: dict[str, Any],
        executor: Executor,
        watcher: KernelWatcher,
        policy: StatePolicy,
        room_settings: RoomSettings,
    ) -> None:
        self.services = services
        self.bus = bus
        self.rooms = rooms
        self.documents = sessions_of_documents
        self.executor = executor
        self.watcher = watcher
        self.policy = policy
        self.session_id = uuid.uuid4().hex
        """Changes at every start: the document is rebuilt, so a client's old copy is void."""
        self.model = StateModel(Room(STATE_ROOM, read_only=REFUSAL, settings=room_settings))
        self.feeds = StateFeeds(self.model, self.snapshot)
        """The per-user JSON feeds (`WS /api/datastore/state/subscribe`)."""

        self._stale: set[str] = set()
        self._executions: set[str] = set()
        self._contents: list[tuple[str, str, str | None]] = []
        self._dead: dict[str, dict[str, Any]] = {}
        self.launches = Launches(lambda: self._mark("kernels"))
        """Each kernel launch's steps, and the launches that failed (`launches.py`)."""
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._undo: list[Any] = []
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._failing: set[str] = set()  # sources whose last read failed: logged once
        self._failed_timers: set[str] = set()  # failed launches whose removal is set

    # --- life cycle ---

    async def start(self) -> None:
        self.rooms.pin(self.model.room)
        self._undo = [
            self.launches.install(self.services.kernels, _kernel_host(self.services.kernels)),
            call_after(
                self.services.kernels,
                ("notify_connect", "notify_disconnect"),  # a kernel WebSocket came or went
                lambda: self._mark("kernels"),
            ),
            call_after(
                self.services.sessions,
                ("create_session", "update_session", "delete_session"),
                lambda: self._mark("sessions"),
            ),
        ]
        if self.services.terminals is not None:
            self._undo.append(
                call_after(
                    self.services.terminals,
                    ("create", "terminate", "on_eof"),
                    lambda: self._mark("terminals"),
                )
            )
        self._subscription = self.bus.subscribe(EventFilter(_FOLLOWED))
        for event in self._subscription.attach(self._on_event):
            self._on_event(event)
        recent = await self.executor.find(limit=self.policy.executions_kept)
        self._executions.update(r.id for r in recent)
        self._executions.update(self.executor.jobs)
        await self.refresh()
        self._tasks.append(asyncio.ensure_future(self._work()))
        if self.policy.reconcile_interval > 0:
            self._tasks.append(asyncio.ensure_future(self._reconcile()))

    async def stop(self) -> None:
        self.feeds.stop()
        for undo in self._undo:
            undo()
        if self._subscription is not None:
            self.bus.unsubscribe(self._subscription)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def set_status(self, key: str, value: Any) -> None:
        """An entry of `status` that its source tells (supernode mode's `upstream`)."""
        self.model.write([("status", key, value)])

    def snapshot(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "room_id": STATE_ROOM, **self.model.snapshot()}

    async def refresh(self) -> None:
        """Re-read everything now."""
        self._stale |= _EVERYTHING
        await self._apply()

    # --- what is stale ---

    def _mark(self, *names: str) -> None:
        self._stale.update(names)
        self._wake.set()

    def _on_event(self, event: StoredEvent) -> None:
        data = event.data
        if event.schema_id in (KERNEL_ACTIONS, KERNEL_STATUS):
            if data.get("execution_state") == "dead" and data.get("reason") != "shut down":
                self._died(data)
            if isinstance(data.get("kernel_id"), str):
                self.launches.seen(data["kernel_id"], data.get("execution_state"))
            self._mark("kernels", "sessions")
        elif event.schema_id == EXECUTION:
            self._executions.add(data["execution_id"])
            self._wake.set()
        elif event.schema_id in (DOCUMENT, PEER):
            self._mark("documents")
        elif event.schema_id == CONTENTS_SERVICE and data.get("action") != "get":
            self._contents.append((data["action"], data["path"], data.get("source_path")))
            self._wake.set()

    def _died(self, data: dict[str, Any]) -> None:
        kernel_id = data["kernel_id"]
        known = self.model.maps["kernels"].get(kernel_id) or {"id": kernel_id}
        self._dead[kernel_id] = {
            **known,
            "name": known.get("name") or data.get("kernel_name"),
            "execution_state": "dead",
            "reason": data.get("reason"),
            "last_activity": utc_now(),
        }
        loop = asyncio.get_running_loop()
        loop.call_later(self.policy.dead_kernels_kept, self._forget_dead, kernel_id)

    def _forget_dead(self, kernel_id: str) -> None:
        if self._dead.pop(kernel_id, None) is not None:
            self._mark("kernels")

    def _forget_failed(self, key: str) -> None:
        self._failed_timers.discard(key)
        if self.launches.forget_failed(key):
            self._mark("kernels")

    # --- re-reading ---

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            try:
                await self._apply()
            except Exception:
                log.exception("the state room could not be brought up to date")

    async def _reconcile(self) -> None:
        while True:
            await asyncio.sleep(self.policy.reconcile_interval)
            self._mark(*_EVERYTHING)

    async def _apply(self) -> None:
        async with self._lock:
            self._wake.clear()
            stale, self._stale = self._stale, set()
            executions, self._executions = self._executions, set()
            contents, self._contents = self._contents, []
            changes: list[Change] = []
            model = self.model.maps
            kernels = model["kernels"]
            if "kernels" in stale:
                kernels = await kernel_entries(self.services, self.watcher.states)
                self.launches.keep_only(set(kernels))
                for kernel_id, entry in kernels.items():
                    self.launches.seen(kernel_id, entry.get("execution_state"))
                    launch = self.launches.of(kernel_id)
                    if launch is not None:
                        entry["launch"] = launch
                for kernel_id, entry in self._dead.items():
                    kernels.setdefault(kernel_id, entry)
                for key, entry in self.launches.failed.items():
                    if key not in self._failed_timers:
                        self._failed_timers.add(key)
                        asyncio.get_running_loop().call_later(
                            self.policy.dead_kernels_kept, self._forget_failed, key
                        )
                    kernels.setdefault(key, entry)
                changes += self.model.replacing("kernels", kernels)
            if "sessions" in stale:
                sessions = await self._read("sessions", session_entries(self.services))
                if sessions is not None:
                    changes += self.model.replacing("sessions", sessions)
            terminals = model["terminals"]
            if "terminals" in stale:
                terminals = terminal_entries(self.services)
                changes += self.model.replacing("terminals", terminals)
            if "kernelspecs" in stale:
                specs = await self._read("kernelspecs", kernelspec_entries(self.services))
                if specs is not None:
                    changes += self.model.replacing("kernelspecs", specs)
            if "documents" in stale:
                changes += self.model.replacing("documents", self._document_entries())
            if stale & {"kernels", "terminals"}:
                status = status_entry(self.services, kernels, len(terminals))
                changes += [("status", key, value) for key, value in status.items()]
            changes += await self._execution_changes(executions)
            changes += await self._content_changes(contents)
            self.model.write(changes)
            self.model.write(self._trimmed())

    async def _read(self, source: str, reading: Awaitable[dict[str, Any]]) -> Any:
        """What a manager gives, or None (logged once) when it fails: a kernel gateway that
        cannot be reached or refuses us, for one. The map stays as it was until a later
        change or reconciliation reads it again."""
        try:
            entries = await reading
        except Exception as exc:
            self._read_failed(source, exc, len(self.model.maps[source]))
            return None
        self._read_failed(source, None, 0)
        return entries

    def _document_entries(self) -> dict[str, Any]:
        entries = {}
        for room_id, session in list(self.documents.items()):
            room = self.rooms.rooms.get(room_id)
            users = self.rooms.users_in(room) if room is not None else []
            parsed = RoomId.parse(room_id)
            entries[room_id] = {
                "room_id": room_id,
                "path": session.path,
                "file_id": session.file_id,
                "format": parsed.format,
                "type": parsed.type,
                "peers": len(users),
                "users": sorted({user for user in users if user}),
                "saves_held": session.held,
            }
        return entries

    async def _execution_changes(self, ids: set[str]) -> list[Change]:
        changes: list[Change] = []
        unread: set[str] = set()
        failure: StoreError | None = None
        for execution_id in ids:
            try:
                record = await self.executor.get(execution_id)
            except NotFound:  # pruned, or never stored
                changes.append(("executions", execution_id, None))
                continue
            except StoreError as exc:  # the store fails now: not a reason to think it gone
                unread.add(execution_id)
                failure = exc
                continue
            changes.append(("executions", execution_id, record.to_json(outputs=False)))
        self._executions |= unread  # read again at the next change or reconciliation
        if ids:
            self._read_failed("executions", failure, len(unread))
        return changes

    async def _content_changes(self, actions: list[tuple[str, str, str | None]]) -> list[Change]:
        changes: list[Change] = []
        failure: ContentUnreadable | None = None
        unread = 0
        for action, path, source in actions:
            if action in ("rename", "delete"):
                gone = source if action == "rename" and source is not None else path
                changes += [
                    ("contents", key, None)
                    for key in self.model.maps["contents"]
                    if key == gone or key.startswith(gone.rstrip("/") + "/")
                ]
            if action != "delete":
                try:
                    entry = await content_entry(self.services, path)
                except ContentUnreadable as exc:  # kept as it was, read again next time
                    self._contents.append(("save", path, None))
                    failure, unread = exc, unread + 1
                    continue
                changes.append(("contents", path, entry))
        if actions:
            self._read_failed("contents", failure, unread)
        return changes

    def _read_failed(self, source: str, failure: Exception | None, entries: int) -> None:
        """Log the first failure of a run of failures to read `source`, and its end."""
        if failure is None:
            if source in self._failing:
                self._failing.discard(source)
                log.warning("the state room reads %s again", source)
        elif source not in self._failing:
            self._failing.add(source)
            log.error(
                "the state room cannot read %s now (%d kept as they were): %s",
                source,
                entries,
                failure,
            )

    def _trimmed(self) -> list[Change]:
        """Removals that keep `executions` and `contents` within their limits, oldest first."""
        maps = self.model.maps
        finished = [k for k, v in maps["executions"].items() if v.get("status") not in ACTIVE]
        extra = len(finished) - self.policy.executions_kept
        changes: list[Change] = [("executions", key, None) for key in finished[: max(extra, 0)]]
        extra = len(maps["contents"]) - self.policy.contents_kept
        changes += [("contents", key, None) for key in list(maps["contents"])[: max(extra, 0)]]
        return changes


def _kernel_host(kernels: Any) -> KernelHost | None:
    """Where the kernels run when jupyter_server's gateway client starts them: a Kernel
    Gateway, or supernode mode's upstream."""
    from jupyter_server.gateway.gateway_client import GatewayClient
    from jupyter_server.gateway.managers import GatewayMappingKernelManager

    from ..upstream.kernels import UpstreamMappingKernelManager

    url = str(GatewayClient.instance().url or "")
    if not isinstance(kernels, GatewayMappingKernelManager) or not url:
        return None
    if isinstance(kernels, UpstreamMappingKernelManager):
        token = "the upstream token (--upstream-token)"
        return KernelHost(url, "the upstream Jupyter server", token)
    return KernelHost(url)
