"""A root's file ids: root-relative paths in the root's own database, and the ids a server
kept in jupyter_server_fileid's per-user database taken over once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from jupyter_server_fileid.manager import ArbitraryFileIdManager

from jupyter_datastore.documents.fileids import RootFileIdManager, adopt_user_database


def test_ids_of_this_root_are_taken_from_the_per_user_database(tmp_path: Path) -> None:
    old = tmp_path / "file_id_manager.db"
    root = tmp_path / "root"
    other = tmp_path / "elsewhere"
    before = ArbitraryFileIdManager(root_dir=str(root), db_path=str(old))
    mine = before.index("team/a.ipynb")
    theirs = ArbitraryFileIdManager(root_dir=str(other), db_path=str(old)).index("b.ipynb")
    before.con.close()
    new = tmp_path / "file_ids.db"
    assert adopt_user_database(str(old), str(new), str(root)) == 1
    after = RootFileIdManager(root_dir=str(root), db_path=str(new))
    assert after.get_id("team/a.ipynb") == mine
    assert after.get_path(mine) == "team/a.ipynb"
    assert after.get_path(theirs) is None  # another root's file is not this root's
    with sqlite3.connect(new) as db:
        assert db.execute("SELECT path FROM Files").fetchall() == [("team/a.ipynb",)]
    assert adopt_user_database(str(old), str(new), str(root)) == 0  # once only
