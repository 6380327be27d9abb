"""The jupyter_server extension: configuration (traitlets), handlers, start and stop.

Traitlets stay here, at the edge; the values are turned into typed policies and passed to
the layers, which never read configuration themselves.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Enum, Float, Int, List, Unicode, default

from .auth import Role
from .auth.authorizer import RoleAuthorizer
from .auth.gate import Gate
from .datastore import Datastore, Settings, TransportLimits
from .documents import SavePolicy, WatchPolicy
from .documents.fileids import RootFileIdManager, adopt_user_database, root_database
from .execution.kernel import ExecutionPolicy
from .handlers import handlers
from .handlers.gateway_relay import use_gateway_relay
from .handlers.left_mid_write import quiet_writes_to_closed_websockets
from .notifications import NotificationPolicy
from .rooms import RoomSettings
from .state import JupyterServices, StatePolicy
from .store import open_store
from .store.base import Retention

__all__ = ["DatastoreApp"]


class DatastoreApp(ExtensionApp):
    name = "jupyter_datastore"
    app_name = "jupyter-datastore"
    description = "A real-time, durable datastore for Jupyter documents."
    load_other_extensions = True

    store_url = Unicode(
        "",
        config=True,
        help="""Where durable state is kept: sqlite:///path/to/file.db. Empty means
        .jupyter/datastore.db under the server's root directory.""",
    )
    store_history = Float(
        7 * 24 * 3600.0,
        config=True,
        help="""Seconds of each document's history the store keeps as points in time (the
        timeline); older changes are merged into one.""",
    )
    store_history_step = Float(
        60.0,
        config=True,
        help="""Seconds between two points in time kept in a document's history: the changes
        of each step are merged into one when the document is compacted.""",
    )
    store_compact_interval = Float(
        60.0,
        config=True,
        help="""Seconds between two background compactions of an open document that changed
        (0: compact only when its room closes).""",
    )
    save_delay = Float(
        1.0, config=True, help="Seconds without a change before a document is autosaved."
    )
    save_max_wait = Float(
        5.0,
        config=True,
        help="""Seconds after the first unsaved change by which a document is autosaved even
        while it keeps changing.""",
    )
    autosave = Bool(True, config=True, help="Whether documents are saved to their files on change.")
    file_poll_interval = Float(
        1.0,
        config=True,
        help="Seconds between checks of open files for changes made outside the server (0: off).",
    )
    file_verify_interval = Float(
        30.0,
        config=True,
        help="""Seconds between full content checks of open files, which catch changes that
        kept the modification time and size (0: off).""",
    )
    room_idle_timeout = Float(
        60.0, config=True, help="Seconds a room with no peer stays open before it is freed."
    )
    broadcast_interval = Float(
        1 / 60,
        config=True,
        help="""Least seconds between two broadcasts of a room: a change in a quiet room goes
        out at once; a busy room sends its changes merged, at most once per interval (0: send
        every change as it comes).""",
    )
    max_message_size = Int(
        64 * 1024 * 1024,
        config=True,
        help="Largest WebSocket message a peer may send, in bytes (larger: close 1009).",
    )
    peer_send_limit = Int(
        16 * 1024 * 1024,
        config=True,
        help="""Bytes that may wait to be sent to one peer; a peer further behind is closed
        with 1013 and reconnects.""",
    )

    server_side_execution = Bool(
        False,
        config=True,
        help="""Make JupyterLab run notebook cells through this server (jupyter-docprovider's
        server-side cell executor): outputs are written into the document by the server and
        survive closed tabs. JupyterLab then shows no input() prompt box; answer prompts
        with POST /api/datastore/executions/{id}/input.""",
    )
    output_limit = Int(
        16 * 1024 * 1024,
        config=True,
        help="""Bytes of output kept per cell run on the server; more is cut and a notice in
        the cell says how much (0: no limit).""",
    )
    record_timing = Bool(
        True,
        config=True,
        help="Write execution timing into each cell's metadata.execution, as JupyterLab can.",
    )
    kernel_ready_timeout = Float(
        60.0,
        config=True,
        help="Seconds to wait for a kernel to answer before its executions are given up.",
    )
    execution_records = Int(
        10_000, config=True, help="Finished execution records kept (older ones go at start)."
    )

    events_kept = Int(
        100_000, config=True, help="Events kept in the event log for replay (older go at start)."
    )

    notify_after = Float(
        60.0,
        config=True,
        help="""Seconds a cell run on the server must last for its end to notify the user who
        started it (0: never); a run that fails always notifies them.""",
    )

    state_reconcile_interval = Float(
        10.0,
        config=True,
        help="""Seconds between full re-reads of the server's state into the state room, for
        changes no event reports, such as a kernel's WebSocket connections (0: off).""",
    )
    state_dead_kernels_kept = Float(
        60.0,
        config=True,
        help="Seconds a kernel that died stays in the state room, shown as dead with the reason.",
    )

    undo_steps = Int(
        100,
        config=True,
        help="""Undo steps kept per user and document for POST /api/datastore/rooms/{room}/undo
        (0: no server-side undo; rooms then never keep a live document for it).""",
    )
    undo_capture = Float(
        0.5, config=True, help="Seconds within which a user's changes make one undo step."
    )
    undo_expiry = Float(
        1800.0,
        config=True,
        help="Seconds a user's undo history is kept after their last change or undo in a room.",
    )
    default_role = Enum(
        ["none", "viewer", "editor", "runner", "owner"],
        default_value="owner",
        config=True,
        help="""The role of a user on a file or folder that no permission rule decides:
        owner keeps a one-person server as open as plain Jupyter; viewer or none makes
        every document private until it is shared (PUT /api/datastore/permissions/{path}).""",
    )
    owners = List(
        Unicode(),
        config=True,
        help="Users who own every file and folder, whatever the rules say (they share).",
    )

    datastore: Datastore | None = None

    @default("default_url")
    def _default_url_value(self) -> str:
        try:
            import jupyterlab  # noqa: F401
        except ImportError:
            return "/api/datastore/status"
        return "/lab"

    @property
    def server(self) -> Any:
        assert self.serverapp is not None, "the extension is not linked to a server yet"
        return self.serverapp

    def initialize_handlers(self) -> None:
        page_config = self.server.web_app.settings.setdefault("page_config_data", {})
        page_config.setdefault("disableRTC", False)
        # jupyter-docprovider reads this option as the string "true".
        page_config["serverSideExecution"] = "true" if self.server_side_execution else "false"
        self.handlers.extend(handlers)

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        super()._link_jupyter_server_extension(serverapp)
        self._file_ids_beside_the_store(serverapp)

    def _file_ids_beside_the_store(self, serverapp: Any) -> None:
        """Keep file ids under the root, beside the store, with root-relative paths, unless
        a file id database is configured (see documents/fileids.py); a server that used
        jupyter_server_fileid's per-user default before gets this root's ids from it."""
        config = serverapp.config
        for name in ("BaseFileIdManager", "LocalFileIdManager", "ArbitraryFileIdManager"):
            if name in config and "db_path" in config[name]:
                return
        if "FileIdExtension" in config and "file_id_manager_class" in config.FileIdExtension:
            return
        from jupyter_server_fileid.manager import default_db_path

        target = root_database(serverapp.root_dir)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        copied = adopt_user_database(default_db_path, target, serverapp.root_dir)
        if copied:
            self.log.info("%d file ids of this root taken from %s", copied, default_db_path)
        config.FileIdExtension.file_id_manager_class = RootFileIdManager
        config.BaseFileIdManager.db_path = target

    def _store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return os.path.join(self.server.root_dir, ".jupyter", "datastore.db")

    def initialize_settings(self) -> None:
        # The layers log to `jupyter_datastore.*`; send that through the server's handlers.
        logging.getLogger("jupyter_datastore").parent = self.log
        settings = Settings(
            save=SavePolicy(self.save_delay, self.save_max_wait, self.autosave),
            watch=WatchPolicy(self.file_poll_interval, self.file_verify_interval),
            room_idle_timeout=self.room_idle_timeout,
            retention=Retention(self.store_history, self.store_history_step),
            compact_interval=self.store_compact_interval,
            room=RoomSettings(
                broadcast_interval=self.broadcast_interval,
                undo_steps=self.undo_steps,
                undo_capture=self.undo_capture,
                undo_expiry=self.undo_expiry,
            ),
            limits=TransportLimits(self.max_message_size, self.peer_send_limit),
            execution=ExecutionPolicy(
                output_limit=self.output_limit,
                record_timing=self.record_timing,
                kernel_ready_timeout=self.kernel_ready_timeout,
                keep_records=self.execution_records,
            ),
            events_kept=self.events_kept,
            notifications=NotificationPolicy(notify_after=self.notify_after),
            default_role=Role.parse(self.default_role),
            owners=frozenset(self.owners),
            state=StatePolicy(
                reconcile_interval=self.state_reconcile_interval,
                dead_kernels_kept=self.state_dead_kernels_kept,
            ),
        )
        self.datastore = Datastore(
            open_store(self._store_url()), self.server.contents_manager, settings
        )
        self.settings["datastore"] = self.datastore
        # Our settings (a copy of the web app's, taken before this method) are copied back
        # into the web app's after it: the connection class is set in ours.
        if use_gateway_relay(self.settings):
            self.log.info("windows' kernel sockets relayed to the gateway in its own subprotocol")
        # Every request passes the gate (roles on real paths, deny by default), and
        # jupyter_server's authorizer answers what the gate decided. The base authorizer
        # stays: it answers first. Our settings are copied into the web app's after this
        # method: set the authorizer in both.
        gate = Gate(self.datastore)
        gate.install(self.server.web_app)
        base = self.server.web_app.settings["authorizer"]
        roles = RoleAuthorizer(base, gate, parent=self.server)
        self.settings["authorizer"] = self.server.web_app.settings["authorizer"] = roles
        self.server.authorizer = roles

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        assert self.datastore is not None
        quiet_writes_to_closed_websockets(asyncio.get_running_loop())
        file_id_manager = serverapp.web_app.settings.get("file_id_manager")
        try:
            if file_id_manager is None:
                raise RuntimeError(
                    "jupyter_datastore needs the jupyter_server_fileid extension, which is not "
                    "enabled (jupyter server extension enable jupyter_server_fileid)"
                )
            services = JupyterServices(
                kernels=serverapp.kernel_manager,
                sessions=serverapp.session_manager,
                kernelspecs=serverapp.kernel_spec_manager,
                contents=serverapp.contents_manager,
                terminals=serverapp.web_app.settings.get("terminal_manager"),
                web_app=serverapp.web_app,
                identity=serverapp.identity_provider,
            )
            await self.datastore.start(file_id_manager, services, serverapp.event_logger)
        except Exception as exc:
            self.log.critical("jupyter-datastore could not start: %s", exc)
            raise
        self.log.info(
            "jupyter-datastore: store %s, session %s",
            self._store_url(),
            self.datastore.store.session_id,
        )

    async def stop_extension(self) -> None:
        if self.datastore is not None:
            await self.datastore.stop()
