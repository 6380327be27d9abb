"""Supernode mode's contents: `UpstreamContentsManager` over a real, stock Jupyter server (the
`upstream` fixture), on its own and behind a server of ours."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import TOKEN
from jupyter_client.jsonutil import json_default
from notebooks import (
    code_cell,
    markdown_cell,
    notebook,
    read_notebook,
    sources,
    write_notebook,
)
from pycrdt import Array
from tornado.web import HTTPError
from upstreams import UpstreamServer
from yclient import YClient, eventually

from jupyter_datastore.errors import DatastoreError
from jupyter_datastore.upstream.contents import UpstreamCheckpoints, UpstreamContentsManager
from jupyter_datastore.upstream.http import UpstreamHttp, UpstreamUnreachable

pytestmark = pytest.mark.timeout(120)

CONTENTS_EVENTS = "https://events.jupyter.org/jupyter_server/contents_service/v1"


def upstream_api(upstream: UpstreamServer, method: str, path: str, body: Any = None) -> Any:
    """A REST call made straight to the upstream: what a stock server answers."""
    request = urllib.request.Request(
        upstream.url + urllib.parse.quote(path),
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={**upstream.headers, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else None


def as_json(model: Any) -> Any:
    """A model as jupyter_server's handlers send it."""
    return json.loads(json.dumps(model, default=json_default))


@pytest.fixture(scope="module")
def shared_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamServer]:
    instance = UpstreamServer(tmp_path_factory.mktemp("upstream")).start()
    yield instance
    instance.stop()


@pytest.fixture
def upstream(shared_upstream: UpstreamServer) -> UpstreamServer:
    """The module's upstream (one start for all its tests), running, with an empty root."""
    for child in shared_upstream.root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    if shared_upstream.process is None:
        shared_upstream.start()
    return shared_upstream


@pytest.fixture
async def manager(upstream: UpstreamServer, tmp_path: Path) -> AsyncIterator[Any]:
    local = tmp_path / "local"
    local.mkdir()
    cm = UpstreamContentsManager(
        upstream_url=upstream.url, upstream_token=upstream.token, root_dir=str(local)
    )
    yield cm
    cm.http.close()


# -- reading -----------------------------------------------------------------------------


async def test_a_directory_listing_is_the_upstreams(manager: Any, upstream: UpstreamServer) -> None:
    (upstream.root / "folder").mkdir()
    (upstream.root / "folder" / "a.txt").write_text("a")
    (upstream.root / "b.txt").write_text("b")
    model = await manager.get("")
    assert model["type"] == "directory"
    assert {entry["name"] for entry in model["content"]} == {"folder", "b.txt"}
    assert isinstance(model["last_modified"], datetime)
    assert all(isinstance(entry["last_modified"], datetime) for entry in model["content"])
    # Once serialised as our handlers do, the very answer of the upstream.
    assert as_json(model) == upstream_api(upstream, "GET", "/api/contents/")
    inner = await manager.get("folder/")
    assert [entry["path"] for entry in inner["content"]] == ["folder/a.txt"]


async def test_a_notebook_is_read_with_its_cells(manager: Any, upstream: UpstreamServer) -> None:
    write_notebook(upstream.root / "nb.ipynb", notebook(code_cell("print(1)", "c1")))
    model = await manager.get("nb.ipynb")
    assert (model["type"], model["format"]) == ("notebook", "json")
    assert model["content"]["cells"][0]["source"] == "print(1)"
    assert as_json(model) == upstream_api(upstream, "GET", "/api/contents/nb.ipynb")

    as_notebook = await manager.get("nb.ipynb", type="notebook")
    assert as_notebook["content"]["cells"][0]["id"] == "c1"
    bare = await manager.get("nb.ipynb", content=False)
    assert (bare["content"], bare["format"]) == (None, None)
    as_text = await manager.get("nb.ipynb", type="file", format="text")
    assert json.loads(as_text["content"])["cells"][0]["source"] == "print(1)"


async def test_text_and_binary_files(manager: Any, upstream: UpstreamServer) -> None:
    (upstream.root / "notes.txt").write_text("héllo\n", encoding="utf-8")
    data = bytes(range(256))
    (upstream.root / "blob.bin").write_bytes(data)

    text = await manager.get("notes.txt")
    assert (text["type"], text["format"], text["content"]) == ("file", "text", "héllo\n")
    binary = await manager.get("blob.bin")
    assert binary["format"] == "base64"
    assert base64.b64decode(binary["content"]) == data
    encoded = await manager.get("notes.txt", format="base64")
    assert base64.b64decode(encoded["content"]) == "héllo\n".encode()


async def test_paths_with_spaces_and_unicode(manager: Any, upstream: UpstreamServer) -> None:
    (upstream.root / "a b").mkdir()
    (upstream.root / "a b" / "c #1 é%.txt").write_text("odd")
    model = await manager.get("a b/c #1 é%.txt")
    assert (model["path"], model["content"]) == ("a b/c #1 é%.txt", "odd")
    assert await manager.dir_exists("a b")


async def test_require_hash_gives_the_upstreams_hash(
    manager: Any, upstream: UpstreamServer
) -> None:
    (upstream.root / "h.txt").write_bytes(b"hash me")
    model = await manager.get("h.txt", content=False, require_hash=True)
    assert model["hash_algorithm"] == "sha256"
    assert model["hash"] == hashlib.sha256(b"hash me").hexdigest()
    assert (await manager.get("h.txt", content=False)).get("hash") is None


async def test_an_unknown_path_is_a_404(manager: Any) -> None:
    with pytest.raises(HTTPError) as caught:
        await manager.get("nope/missing.txt")
    assert caught.value.status_code == 404
    assert not await manager.file_exists("missing.txt")
    assert not await manager.dir_exists("missing")
    assert not await manager.exists("missing.txt")
    assert manager.http.reachable  # a 404 is an answer


async def test_existence_of_files_and_folders(manager: Any, upstream: UpstreamServer) -> None:
    (upstream.root / "dir").mkdir()
    (upstream.root / "dir" / "f.txt").write_text("")
    assert await manager.file_exists("dir/f.txt")
    assert not await manager.dir_exists("dir/f.txt")
    assert await manager.dir_exists("dir")
    assert not await manager.file_exists("dir")
    assert await manager.dir_exists("")
    assert await manager.exists("dir") and await manager.exists("dir/f.txt")


async def test_hidden_files_stay_hidden(manager: Any, upstream: UpstreamServer) -> None:
    assert await manager.is_hidden(".secret")
    assert await manager.is_hidden("a/.git/config")
    assert not await manager.is_hidden("a/b.txt")
    assert not await manager.is_hidden("")
    (upstream.root / ".secret").write_text("s")
    listing = await manager.get("")
    assert ".secret" not in {entry["name"] for entry in listing["content"]}
    with pytest.raises(HTTPError) as caught:  # the upstream's own rule
        await manager.get(".secret")
    assert caught.value.status_code == 404


# -- writing -----------------------------------------------------------------------------


async def test_a_saved_notebook_lands_on_the_upstreams_disk(
    manager: Any, upstream: UpstreamServer
) -> None:
    nb = notebook(markdown_cell("# Title", "m1"), code_cell("x = 1", "c1"))
    saved = await manager.save({"type": "notebook", "content": nb}, "/saved.ipynb")
    assert saved["path"] == "saved.ipynb"
    assert (saved["type"], saved["content"]) == ("notebook", None)
    assert isinstance(saved["last_modified"], datetime)
    on_disk = read_notebook(upstream.root / "saved.ipynb")
    assert ["".join(cell["source"]) for cell in on_disk["cells"]] == ["# Title", "x = 1"]

    await manager.save({"type": "file", "format": "text", "content": "v2\n"}, "/t.txt")
    assert (upstream.root / "t.txt").read_text() == "v2\n"
    await manager.save({"type": "directory"}, "made")
    assert (upstream.root / "made").is_dir()
    with pytest.raises(HTTPError) as caught:
        await manager.save({}, "untyped.txt")
    assert caught.value.status_code == 400
    assert not (upstream.root / "untyped.txt").exists()


async def test_a_chunked_upload_is_joined_by_the_upstream(
    manager: Any, upstream: UpstreamServer
) -> None:
    chunks = [b"first-", b"second-", b"last"]
    for number, chunk in zip([1, 2, -1], chunks, strict=True):
        model = {
            "type": "file",
            "format": "base64",
            "chunk": number,
            "content": base64.b64encode(chunk).decode(),
        }
        await manager.save(model, "big.bin")
    assert (upstream.root / "big.bin").read_bytes() == b"".join(chunks)


async def test_rename_and_delete(manager: Any, upstream: UpstreamServer) -> None:
    (upstream.root / "old.txt").write_text("keep me")
    (upstream.root / "dest").mkdir()
    renamed = await manager.update({"path": "dest/new.txt"}, "old.txt")
    assert renamed["path"] == "dest/new.txt"
    assert not (upstream.root / "old.txt").exists()
    assert (upstream.root / "dest" / "new.txt").read_text() == "keep me"

    await manager.delete("dest/new.txt")
    assert not (upstream.root / "dest" / "new.txt").exists()
    await manager.delete("dest")
    assert not (upstream.root / "dest").exists()
    with pytest.raises(HTTPError) as caught:
        await manager.delete("dest")
    assert caught.value.status_code == 404
    with pytest.raises(HTTPError) as caught:
        await manager.delete("")
    assert caught.value.status_code == 400


async def test_new_untitled_files_notebooks_and_folders(
    manager: Any, upstream: UpstreamServer
) -> None:
    first = await manager.new_untitled(type="notebook")
    second = await manager.new_untitled(path="/", ext=".ipynb")
    assert (first["path"], second["path"]) == ("Untitled.ipynb", "Untitled1.ipynb")
    assert read_notebook(upstream.root / "Untitled.ipynb")["cells"] == []
    folder = await manager.new_untitled(type="directory")
    assert folder["path"] == "Untitled Folder"
    text = await manager.new_untitled(path="Untitled Folder", ext=".txt")
    assert text["path"] == "Untitled Folder/untitled.txt"
    assert (upstream.root / "Untitled Folder" / "untitled.txt").read_text() == ""
    named = await manager.new(path="named.py")
    assert (named["type"], (upstream.root / "named.py").read_text()) == ("file", "")
    with pytest.raises(HTTPError) as caught:
        await manager.new_untitled(path="no/such/dir")
    assert caught.value.status_code == 404


async def test_copy_keeps_the_base_class_naming(manager: Any, upstream: UpstreamServer) -> None:
    write_notebook(upstream.root / "orig.ipynb", notebook(code_cell("1", "c1")))
    (upstream.root / "sub").mkdir()
    beside = await manager.copy("orig.ipynb")
    assert beside["path"] == "orig-Copy1.ipynb"
    again = await manager.copy("orig.ipynb")
    assert again["path"] == "orig-Copy2.ipynb"
    into = await manager.copy("orig.ipynb", "sub")
    assert into["path"] == "sub/orig.ipynb"
    named = await manager.copy("/orig.ipynb", "sub/other.ipynb")
    assert named["path"] == "sub/other.ipynb"
    for path in ("orig-Copy1.ipynb", "orig-Copy2.ipynb", "sub/orig.ipynb", "sub/other.ipynb"):
        assert "".join(read_notebook(upstream.root / path)["cells"][0]["source"]) == "1"
    with pytest.raises(HTTPError) as caught:
        await manager.copy("absent.ipynb")
    assert caught.value.status_code == 404


async def test_checkpoints_are_the_upstreams(manager: Any, upstream: UpstreamServer) -> None:
    assert isinstance(manager.checkpoints, UpstreamCheckpoints)
    assert manager.checkpoints.http is manager.http
    path = upstream.root / "cp.txt"
    path.write_text("version 1")
    checkpoint = await manager.create_checkpoint("cp.txt")
    assert isinstance(checkpoint["last_modified"], datetime)
    listed = await manager.list_checkpoints("cp.txt")
    assert [c["id"] for c in listed] == [checkpoint["id"]]
    assert as_json(listed) == upstream_api(upstream, "GET", "/api/contents/cp.txt/checkpoints")

    path.write_text("version 2")
    await manager.restore_checkpoint(checkpoint["id"], "cp.txt")
    assert path.read_text() == "version 1"

    await manager.delete_checkpoint(checkpoint["id"], "cp.txt")
    assert await manager.list_checkpoints("cp.txt") == []
    with pytest.raises(HTTPError) as caught:
        await manager.delete_checkpoint(checkpoint["id"], "cp.txt")
    assert caught.value.status_code == 404


async def test_checkpoints_follow_renames_and_deletes(
    manager: Any, upstream: UpstreamServer
) -> None:
    (upstream.root / "a.txt").write_text("a")
    checkpoint = await manager.create_checkpoint("a.txt")
    await manager.rename("a.txt", "b.txt")
    assert [c["id"] for c in await manager.list_checkpoints("b.txt")] == [checkpoint["id"]]
    await manager.delete("b.txt")
    (upstream.root / "b.txt").write_text("again")
    assert await manager.list_checkpoints("b.txt") == []


async def test_get_save_rename_copy_and_delete_emit_contents_events(
    manager: Any, upstream: UpstreamServer
) -> None:
    seen: list[dict[str, Any]] = []

    async def listener(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        seen.append(dict(data))

    manager.event_logger.add_listener(schema_id=CONTENTS_EVENTS, listener=listener)
    (upstream.root / "e.txt").write_text("e")
    await manager.get("e.txt")
    await manager.save({"type": "file", "format": "text", "content": "f"}, "f.txt")
    await manager.copy("f.txt", "g.txt")
    await manager.rename("g.txt", "h.txt")
    await manager.delete("h.txt")
    expected = [
        {"action": "get", "path": "e.txt"},
        {"action": "save", "path": "f.txt"},
        {"action": "copy", "path": "g.txt", "source_path": "f.txt"},
        {"action": "rename", "path": "h.txt", "source_path": "g.txt"},
        {"action": "delete", "path": "h.txt"},
    ]

    async def all_seen() -> bool:
        return len(seen) >= len(expected)

    await eventually(all_seen, timeout=10)
    assert seen == expected


# -- the connection ----------------------------------------------------------------------


async def test_an_upstream_that_goes_away_and_comes_back(
    manager: Any, upstream: UpstreamServer
) -> None:
    changes: list[tuple[bool, str]] = []
    manager.http.on_change.append(lambda reachable, error: changes.append((reachable, error)))
    (upstream.root / "here.txt").write_text("here")
    assert (await manager.get("here.txt"))["content"] == "here"
    assert manager.http.reachable and changes == []

    upstream.stop()
    with pytest.raises(HTTPError) as caught:  # jupyter_server's terms: a 503
        await manager.get("here.txt")
    assert caught.value.status_code == 503
    message = caught.value.log_message % caught.value.args
    assert message.startswith(f"the upstream {upstream.url} cannot be reached: ")
    assert "refused" in message.lower()
    assert not manager.http.reachable
    assert changes == [(False, message)]
    assert manager.unavailable() == message
    with pytest.raises(UpstreamUnreachable):  # the connection's own error
        await manager.http.request("GET", "/api/status")
    with pytest.raises(HTTPError):
        await manager.file_exists("here.txt")  # still away: no second report
    assert len(changes) == 1

    upstream.start()
    assert (await manager.get("here.txt"))["content"] == "here"
    assert manager.http.reachable and manager.unavailable() is None
    assert changes == [(False, message), (True, "")]


async def test_a_wrong_token_is_the_upstreams_403(upstream: UpstreamServer, tmp_path: Path) -> None:
    cm = UpstreamContentsManager(upstream_url=upstream.url, upstream_token="wrong")
    try:
        with pytest.raises(HTTPError) as caught:
            await cm.get("")
        assert caught.value.status_code == 403
        assert cm.http.reachable
    finally:
        cm.http.close()


async def test_an_upstream_http_given_after_construction(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    http = UpstreamHttp(upstream.url + "///", upstream.token)
    assert http.url == upstream.url
    cm = UpstreamContentsManager()
    cm.http = http
    (upstream.root / "x.txt").write_text("x")
    try:
        assert (await cm.get("x.txt"))["content"] == "x"
        assert cm.checkpoints.http is http
        assert await http.request("GET", "/api/status") is not None
    finally:
        http.close()


def test_urls_and_headers_for_other_connections() -> None:
    http = UpstreamHttp("http://example.test:8888/jupyter/", "tok")
    assert http.url == "http://example.test:8888/jupyter"
    assert http.ws_url("/api/events/subscribe") == (
        "ws://example.test:8888/jupyter/api/events/subscribe"
    )
    assert http.http_url("/api/contents/a b/c?.ipynb") == (
        "http://example.test:8888/jupyter/api/contents/a%20b/c%3F.ipynb"
    )
    assert http.headers() == {"Authorization": "token tok"}
    secure = UpstreamHttp("https://example.test")
    assert secure.ws_url("api/kernels/k/channels") == "wss://example.test/api/kernels/k/channels"
    assert secure.headers() == {}


def test_upstream_unreachable_is_a_503_of_ours() -> None:
    error = UpstreamUnreachable("the upstream http://up.test cannot be reached: 100% gone")
    assert isinstance(error, DatastoreError)
    assert (error.status, error.close_code) == (503, 4503)
    assert json.loads(error.reason()) == {"error": "upstream_unreachable", "detail": error.detail}


def test_without_an_upstream_url_there_is_no_upstream() -> None:
    cm = UpstreamContentsManager()
    assert cm.upstream is None and cm.unavailable() is None
    with pytest.raises(ValueError, match="upstream_url"):
        cm.http  # noqa: B018


def test_root_dir_is_the_servers_by_default(tmp_path: Path) -> None:
    from jupyter_server.serverapp import ServerApp

    app = ServerApp(root_dir=str(tmp_path))
    cm = UpstreamContentsManager(parent=app, upstream_url="http://127.0.0.1:1")
    assert cm.root_dir == str(tmp_path)
    assert UpstreamContentsManager(root_dir="/elsewhere").root_dir == "/elsewhere"


# -- behind a server of ours -------------------------------------------------------------


def our_api(
    server: Any, method: str, path: str, body: Any = None, query: str = ""
) -> tuple[int, Any]:
    """A REST call to our own server: the status and the JSON answer (errors too)."""
    request = urllib.request.Request(
        server.url + urllib.parse.quote(path) + (f"?{query}" if query else ""),
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, text.decode()


@pytest.fixture
def ours(upstream: UpstreamServer, make_server: Any, tmp_path: Path) -> Any:
    """A server of ours over the upstream, with a local root of its own (for its store)."""
    local = tmp_path / "local"
    local.mkdir()
    return make_server(
        [
            "--ServerApp.contents_manager_class="
            "jupyter_datastore.upstream.contents.UpstreamContentsManager",
            f"--UpstreamContentsManager.upstream_url={upstream.url}",
            f"--UpstreamContentsManager.upstream_token={upstream.token}",
        ],
        root=local,
    )


def test_our_server_serves_the_upstreams_files(ours: Any, upstream: UpstreamServer) -> None:
    server = ours
    write_notebook(upstream.root / "remote.ipynb", notebook(code_cell("print('up')", "c1")))
    (upstream.root / "folder").mkdir()
    (upstream.root / "folder" / "r.txt").write_text("remote text")
    for path in ("/api/contents/remote.ipynb", "/api/contents/folder/r.txt", "/api/contents/"):
        status, ours = our_api(server, "GET", path)
        assert status == 200, ours
        assert ours == upstream_api(upstream, "GET", path)
    status, ours = our_api(server, "GET", "/api/contents/folder/r.txt", query="content=0&hash=1")
    assert status == 200, ours
    assert ours["hash"] == hashlib.sha256(b"remote text").hexdigest()

    nb = notebook(code_cell("print('through')", "c9"))
    status, saved = our_api(
        server, "PUT", "/api/contents/folder/put.ipynb", {"type": "notebook", "content": nb}
    )
    assert status == 201, saved
    assert saved["path"] == "folder/put.ipynb"
    assert read_notebook(upstream.root / "folder" / "put.ipynb")["cells"][0]["id"] == "c9"
    assert not (server.root / "folder").exists()  # nothing of it is kept here

    status, missing = our_api(server, "GET", "/api/contents/folder/absent.txt")
    assert status == 404, missing
    status, missing = our_api(server, "DELETE", "/api/contents/absent.txt")
    assert status == 404, missing
    status, renamed = our_api(server, "PATCH", "/api/contents/folder/r.txt", {"path": "r2.txt"})
    assert (status, renamed["path"]) == (200, "r2.txt")
    assert (upstream.root / "r2.txt").read_text() == "remote text"

    upstream.stop()
    status, away = our_api(server, "GET", "/api/contents/r2.txt")
    assert status == 503, away
    assert away["message"] == f"the upstream {upstream.url} cannot be reached: Connection refused"
    upstream.start()
    status, back = our_api(server, "GET", "/api/contents/r2.txt")
    assert (status, back["content"]) == (200, "remote text")


async def test_a_live_document_over_the_upstream(ours: Any, upstream: UpstreamServer) -> None:
    """The datastore loads a notebook through the manager and saves edits to the upstream."""
    write_notebook(upstream.root / "live.ipynb", notebook(code_cell("print('up')", "c1")))
    client = await YClient.connect(ours.url, ours.token, "live.ipynb")
    try:
        source = client.doc.get("cells", type=Array)[0]["source"]
        assert str(source) == "print('up')"
        source.insert(len(str(source).encode()), "\nprint('edited')")
        reply = await client.save(7)
        assert reply["status"] == "success", reply
        saved = read_notebook(upstream.root / "live.ipynb")
        assert sources(saved) == ["print('up')\nprint('edited')"]
        assert [cell["id"] for cell in saved["cells"]] == ["c1"]
    finally:
        await client.close()
