"""The services of one server, wired together once; handlers reach them through here.

The datastore is created when the extension loads and started once the event loop runs;
a request that arrives in between waits for the start (`ready`), and if the start failed
it gets a 500 naming the reason instead of a half-working server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from .auth import Permissions, Role
from .auth.identity import user_groups
from .auth.live import LiveChecks
from .auth.paths import Paths
from .documents import (
    GLOBAL_AWARENESS,
    Documents,
    FileIds,
    FileIO,
    RoomId,
    SavePolicy,
    WatchPolicy,
)
from .documents.forks import Forks, is_fork_id
from .documents.presence import presence_entries
from .documents.trust import TrustScreen
from .errors import DatastoreError
from .events.bus import EventBus
from .events.kernels import KernelWatcher
from .events.views import EventViews
from .execution.kernel import ExecutionPolicy
from .execution.service import Executor
from .execution.widgets import WIDGET_STATE_MIME
from .memory import Trim
from .notifications import NotificationPolicy, Notifications
from .protocol.awareness import AwarenessEntry
from .rooms import Room, RoomManager, RoomSettings
from .state import JupyterServices, ServerState, StatePolicy
from .store import Store
from .store.base import Retention

__all__ = ["Datastore", "Settings", "TransportLimits"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransportLimits:
    max_message_size: int = 64 * 1024 * 1024
    """Largest WebSocket message accepted; a bigger one closes the socket with 1009."""
    peer_send_limit: int = 16 * 1024 * 1024
    """Bytes a peer may have waiting to be sent; past that it is closed with 1013."""


@dataclass(frozen=True)
class Settings:
    save: SavePolicy = field(default_factory=SavePolicy)
    watch: WatchPolicy = field(default_factory=WatchPolicy)
    room_idle_timeout: float = 60.0
    retention: Retention = field(default_factory=Retention)
    compact_interval: float = 60.0
    """Seconds between two compactions of an open document that changed (0: at close only)."""
    room: RoomSettings = field(default_factory=RoomSettings)
    limits: TransportLimits = field(default_factory=TransportLimits)
    execution: ExecutionPolicy = field(default_factory=ExecutionPolicy)
    events_kept: int = 100_000
    """Events kept in the event log for replay; older ones are deleted at start."""
    notifications: NotificationPolicy = field(default_factory=NotificationPolicy)
    state: StatePolicy = field(default_factory=StatePolicy)
    default_role: Role = Role.OWNER
    """The role of a user on a path no rule decides."""
    owners: frozenset[str] = frozenset()
    """Users who own everything, whatever the rules say."""


class Datastore:
    store: Store
    ids: FileIds
    io: FileIO
    documents: Documents
    forks: Forks
    rooms: RoomManager
    executor: Executor
    events: EventBus
    views: EventViews
    notifications: Notifications
    kernel_watcher: KernelWatcher
    state: ServerState
    permissions: Permissions
    live: LiveChecks
    services: JupyterServices
    """jupyter_server's managers (kernels, sessions, kernel specs, terminals, ...)."""

    def __init__(self, store: Store, contents_manager: Any, settings: Settings) -> None:
        self.store = store
        self.io = FileIO(contents_manager)
        self.upstream: Any = getattr(contents_manager, "upstream", None)
        """Supernode mode: the `upstream.http.UpstreamHttp` the files are read through."""
        root_dir = getattr(contents_manager, "root_dir", None)
        local = self.upstream is None and isinstance(root_dir, str) and os.path.isdir(root_dir)
        self.paths = Paths(root_dir if local else None)
        """The one path check: every role is decided on the real path it gives."""
        self.settings = settings
        self.limits = settings.limits
        self._started = asyncio.Event()
        self._failure: BaseException | None = None
        self._stack = contextlib.AsyncExitStack()
        """The stops of the services started so far, run in reverse by `stop()`."""

    async def start(
        self, file_id_manager: Any, services: JupyterServices, event_logger: Any
    ) -> None:
        """Start every service, each after those it uses; each one's stop is pushed on a
        stack as it starts, so `stop()` (or a start that fails half way) stops exactly what
        was started, in the reverse order."""
        stack = self._stack
        try:
            await self._start(stack, file_id_manager, services, event_logger)
        except BaseException as exc:
            self._failure = exc
            try:
                await stack.aclose()  # undo what started
            except Exception as undo:
                log.warning("undoing the failed start failed too: %r", undo)
            raise
        finally:
            self._started.set()

    async def _start(
        self,
        stack: contextlib.AsyncExitStack,
        file_id_manager: Any,
        services: JupyterServices,
        event_logger: Any,
    ) -> None:
        s = self.settings
        self.services = services
        stack.push_async_callback(self.store.close)  # also what a failed start opened
        await self.store.start()
        self.events = EventBus(event_logger, self.store, keep=s.events_kept)
        await self.events.start()
        stack.push_async_callback(self.events.stop)
        emit = self.events.emit  # the layers' events go out through the bus
        self.ids = FileIds(file_id_manager)
        self.permissions = Permissions(
            self.store,
            default_role=s.default_role,
            owners=s.owners,
            groups_of=lambda user: user_groups(services.identity, user),
            emit=emit,
        )
        await self.permissions.start()
        stack.callback(self.permissions.audit.flush)  # counted refusals, stored at the end
        self.live = LiveChecks(services.identity, lambda: self.permissions.version)
        self.live.start()
        stack.push_async_callback(self.live.stop)
        self.documents = Documents(
            io=self.io,
            store=self.store,
            ids=self.ids,
            save=s.save,
            watch=s.watch,
            room=s.room,
            retention=s.retention,
            compact_interval=s.compact_interval,
            emit=emit,
        )
        trim = Trim()
        stack.callback(trim.cancel)
        self.rooms = RoomManager(
            self._open_room, idle_timeout=s.room_idle_timeout, emit=emit, on_closed=trim.soon
        )
        self.forks = Forks(self.store, self.rooms, s.room, emit=emit)
        await self.forks.start()
        self.documents.start()
        stack.push_async_callback(self.documents.stop)
        stack.push_async_callback(self.rooms.stop)  # first: closing rooms saves documents
        self.executor = Executor(
            rooms=self.rooms,
            ids=self.ids,
            io=self.io,
            store=self.store,
            kernels=services.kernels,
            sessions=services.sessions,
            policy=s.execution,
            emit=emit,
            authorize=self.permissions.require,
        )
        await self.executor.start()
        self.documents.notebook_metadata = self._widget_metadata
        stack.push_async_callback(self.executor.stop)
        self.notifications = Notifications(self.events, self.store, s.notifications)
        await self.notifications.start()
        stack.push_async_callback(self.notifications.stop)
        self.kernel_watcher = KernelWatcher(
            self.events, services.kernels, ready_timeout=s.execution.kernel_ready_timeout
        )
        self.kernel_watcher.listeners.append(self.executor.kernel_state)
        await self.kernel_watcher.start()
        stack.push_async_callback(self.kernel_watcher.stop)
        self.state = ServerState(
            services=services,
            bus=self.events,
            rooms=self.rooms,
            sessions_of_documents=self.documents.sessions,
            executor=self.executor,
            watcher=self.kernel_watcher,
            policy=s.state,
            room_settings=s.room,
        )
        await self.state.start()
        stack.push_async_callback(self.state.stop)
        if self.upstream is not None:
            from .upstream.link import UpstreamLink

            link = UpstreamLink(
                self.upstream,
                self.documents,
                file_id_manager,
                lambda entry: self.state.set_status("upstream", entry),
                self._upstream_kernel_action,
            )
            await link.start()
            stack.push_async_callback(link.stop)
        self.views = self._event_views()

    def _upstream_kernel_action(self, data: dict[str, Any]) -> None:
        """A kernel restarted or shut down on supernode mode's upstream (or by us, echoed
        back: the same marks again, harmless): a restart there ends a run under way here.
        Kernels its users start are not followed until someone here uses them."""
        if data.get("status") != "success" or data.get("action") not in ("restart", "shutdown"):
            return
        if data["kernel_id"] not in self.executor.kernels:
            return  # one of the upstream's own
        if data["action"] == "restart":
            self.executor.restarted_elsewhere(data["kernel_id"])
        self.kernel_watcher.heard_action(data)

    def _event_views(self) -> EventViews:
        """Who sees which event: in-memory lookups of files, rooms, forks and sessions."""

        def path_of_room(room_id: str) -> str | None:
            session = self.documents.sessions.get(room_id)
            return None if session is None else session.path

        return EventViews(
            self.events,
            self.permissions,
            path_of_file=self.ids.path,
            path_of_room=path_of_room,
            root_of_fork=self.forks.root_of,
            sessions=lambda: self.state.model.maps["sessions"],
            real_path=self.paths.real,
        )

    async def _open_room(self, name: str) -> Room:
        if is_fork_id(name):
            return await self.forks.open_room(name)
        room = await self.documents.open_room(name)
        if name == GLOBAL_AWARENESS:
            room.awareness_view = self._presence_view
        elif (room_id := RoomId.try_parse(name)) is not None and room_id.type == "notebook":
            room.screen = TrustScreen(lambda user: self._may_run(user, name))
        return room

    async def _widget_metadata(self, path: str) -> dict[str, Any]:
        """The widgets of the notebook's kernel, for its file, as JupyterLab saves them."""
        try:
            state = self.executor.widgets_of(await self.executor.kernel_of(path))
        except DatastoreError:  # no kernel, or the server is stopping
            return {}
        return {"widgets": {WIDGET_STATE_MIME: state}} if state["state"] else {}

    def _may_run(self, user: str | None, room_name: str) -> bool:
        session = self.documents.sessions.get(room_name)
        return session is not None and self.role_on(user, session.path) >= Role.RUNNER

    def may_view(self, user: str | None, path: Any) -> bool:
        """Whether `user` may view what a path names."""
        return self.role_on(user, path) >= Role.VIEWER

    def role_on(self, user: str | None, path: Any) -> Role:
        """The role of `user` on what a path names (the one path check first: a path that
        is malformed or leaves the root gives no role)."""
        if not isinstance(path, str):
            return Role.NONE
        try:
            return self.permissions.role(user, self.paths.real(path))
        except DatastoreError:
            return Role.NONE

    def _presence_view(
        self, user: str | None, entries: list[AwarenessEntry]
    ) -> list[AwarenessEntry]:
        """Global presence as `user` sees it: the paths of documents they may view only."""
        if self.permissions.sees_everything(user):
            return entries
        return presence_entries(entries, lambda path: self.may_view(user, path))

    def root_room(self, name: str) -> str:
        """The document room a room stands for: a fork's or timeline's root, else itself."""
        if is_fork_id(name):
            return self.forks.root_of(name) or name
        return name

    async def ready(self) -> Datastore:
        await self._started.wait()
        if self._failure is not None:
            raise DatastoreError(f"the datastore did not start: {self._failure}")
        return self

    async def stop(self) -> None:
        """Stop what started, in the reverse order (nothing when the start failed: it
        undid itself)."""
        await self._stack.aclose()
