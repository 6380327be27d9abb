"""Where documents' identities live: the file id database beside the store, under the root,
so a root moved with its `.jupyter` folder keeps its documents, history included."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
from conftest import TOKEN, Server
from notebooks import code_cell, notebook, write_notebook


def file_id(server: Server, path: str) -> str:
    response = httpx.put(
        f"{server.url}/api/collaboration/session/{path}",
        json={"format": "json", "type": "notebook"},
        headers={"Authorization": f"token {TOKEN}"},
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["fileId"])


def test_a_moved_root_keeps_its_documents_identities(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / "a.ipynb", notebook(code_cell("x = 1", "c1")))
    first = Server(root)
    first.fileid_args = []  # the server's own default
    try:
        first.start()
        before = file_id(first, "a.ipynb")
    finally:
        first.stop()
    first.check_log()
    assert (root / ".jupyter" / "file_ids.db").exists()
    assert not (first.home / "data" / "file_id_manager.db").exists()

    moved = tmp_path / "moved"
    shutil.move(root, moved)
    second = Server(moved)
    second.fileid_args = []
    try:
        second.start()
        assert file_id(second, "a.ipynb") == before
    finally:
        second.stop()
        second.check_log()
        first.remove_home()
        second.remove_home()
