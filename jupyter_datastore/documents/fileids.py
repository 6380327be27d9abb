"""File ids that belong to a root: kept beside the store, under the root, with paths relative
to it, so a root moved or restored from a backup keeps its documents' identities (and so
their history in the store, which is keyed by file id).

jupyter_server_fileid's `ArbitraryFileIdManager` persists each path prefixed by the server's
root folder, in one database per user for every root (in the Jupyter data folder): after a
move, every file gets a new id. `RootFileIdManager` persists the API path itself; it is only
right in a database of its own root, which is where the datastore puts it
(`root_database`). `adopt_user_database` brings the ids of this root over from the old
per-user database once, so an existing server keeps them.
"""

from __future__ import annotations

import os
import posixpath
import sqlite3
from typing import Any

from jupyter_server_fileid.manager import ArbitraryFileIdManager
from traitlets import validate

__all__ = ["RootFileIdManager", "adopt_user_database", "root_database"]


def root_database(root_dir: str) -> str:
    """Where a root's file ids are kept: beside the default store."""
    return os.path.join(root_dir, ".jupyter", "file_ids.db")


class RootFileIdManager(ArbitraryFileIdManager):  # type: ignore[misc]
    """`ArbitraryFileIdManager` persisting API paths (relative to the root) as they are."""

    @validate("root_dir")
    def _validate_root_dir(self, proposal: dict[str, Any]) -> str:
        return ""  # nothing prefixed: the database is the root's own


def adopt_user_database(old: str, new: str, root_dir: str) -> int:
    """Copy the ids of files under `root_dir` from the per-user database `old` (paths
    prefixed by the root) into a new root database `new`, as root-relative paths; returns
    how many. Nothing is done when `new` exists or `old` does not."""
    if os.path.exists(new) or not os.path.exists(old):
        return 0
    prefix = root_dir.replace("\\", "/").rstrip("/") + "/"
    with sqlite3.connect(old) as source:
        rows = source.execute("SELECT id, path FROM Files").fetchall()
    kept = [(i, posixpath.relpath(p, prefix)) for i, p in rows if p.startswith(prefix)]
    with sqlite3.connect(new) as target:
        target.execute(
            "CREATE TABLE IF NOT EXISTS Files(id TEXT PRIMARY KEY NOT NULL, path TEXT NOT NULL"
            " UNIQUE)"
        )
        target.executemany("INSERT OR IGNORE INTO Files (id, path) VALUES (?, ?)", kept)
    return len(kept)
