"""The datastore's life cycle on real parts (SQLite, jupyter_server's managers, jupyter_events,
the file id manager): a start that fails half way stops what it had started, in reverse."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from jupyter_events import EventLogger
from jupyter_server.services.contents.filemanager import AsyncFileContentsManager
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from jupyter_server.services.sessions.sessionmanager import SessionManager
from jupyter_server_fileid.manager import LocalFileIdManager

from jupyter_datastore.datastore import Datastore, Settings
from jupyter_datastore.errors import StoreError
from jupyter_datastore.execution.kernel import ExecutionPolicy
from jupyter_datastore.execution.records import ExecutionRecord
from jupyter_datastore.state import JupyterServices
from jupyter_datastore.store import open_store


async def test_a_start_that_fails_half_way_undoes_what_it_started(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    db = tmp_path / "store.db"
    # A store whose finished executions cannot be pruned: the executor's start fails, after
    # the store, the event bus, the live checks and the documents have started.
    seed = open_store(str(db))
    await seed.start()
    await seed.put_executions([ExecutionRecord("e1", "k1", "b1", status="ok").stored()])
    await seed.close()
    with sqlite3.connect(db) as connection:
        connection.execute(
            "CREATE TRIGGER refuse BEFORE DELETE ON executions BEGIN"
            " SELECT RAISE(ABORT, 'pruning refused'); END"
        )
    contents = AsyncFileContentsManager(root_dir=str(root))
    kernels = AsyncMappingKernelManager(root_dir=str(root))
    services = JupyterServices(
        kernels=kernels,
        sessions=SessionManager(kernel_manager=kernels, contents_manager=contents),
        kernelspecs=kernels.kernel_spec_manager,
        contents=contents,
    )
    logger = EventLogger()
    register = logger.register_event_schema
    store = open_store(str(db))
    datastore = Datastore(store, contents, Settings(execution=ExecutionPolicy(keep_records=0)))
    ids = LocalFileIdManager(root_dir=str(root), db_path=str(tmp_path / "fileid.db"))
    with pytest.raises(StoreError, match="pruning refused"):
        await datastore.start(ids, services, logger)
    # Undone, in reverse: the live checks stopped, the EventLogger as it was, the store closed.
    assert datastore.live._task is not None and datastore.live._task.done()
    assert logger.register_event_schema == register
    assert datastore.documents._watcher is None or datastore.documents._watcher.done()
    assert store._db is None  # type: ignore[attr-defined]  # closed
    with pytest.raises(Exception, match="did not start"):
        await datastore.ready()
    await datastore.stop()  # nothing more to stop, and no error
