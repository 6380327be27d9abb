"""The server as an attacker tries it: roles must hold on every way in.

alice owns everything (configured owner); bob is editor on the root and runner on
`bobspace/`; carol is viewer on the root and has no role on `team/hidden.ipynb`; mallory has
no role anywhere; `private/` is alice's alone. The server's own token is an anonymous user
(role: the default, none). Each test is a finding of the security review, refused now.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from notebooks import code_cell, notebook, read_notebook, write_notebook
from two_users import ARGS, two_users_env

pytestmark = pytest.mark.timeout(180)

TOKENS = {
    "alice": "alice-token",
    "bob": "bob-token",
    "carol": "carol-token",
    "mallory": "mallory-token",
    "anonymous": "test-token",
}
SECRET = "private/secret.ipynb"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from conftest import Server

    root = tmp_path_factory.mktemp("root")
    for folder in ("private", "team", "bobspace"):
        (root / folder).mkdir()
    write_notebook(root / SECRET, notebook(code_cell("password = 'hunter2'", "s1")))
    write_notebook(root / "team/notes.ipynb", notebook(code_cell("1 + 1", "n1")))
    write_notebook(root / "team/hidden.ipynb", notebook(code_cell("'hidden'", "h1")))
    write_notebook(root / "bobspace/mine.ipynb", notebook(code_cell("40 + 2", "m1")))
    args = [*ARGS, "--DatastoreApp.default_role=none", "--DatastoreApp.owners=alice"]
    instance = Server(root, args, env=two_users_env()).start()
    rules = {
        "": {"users": {"bob": "editor", "carol": "viewer"}},
        "bobspace": {"users": {"bob": "runner"}},
        "private": {"users": {"alice": "owner"}, "default": "none"},
        "team/hidden.ipynb": {"users": {"carol": "none"}},
    }
    for path, rule in rules.items():
        instance_put(instance, f"/api/datastore/permissions/{path}", rule)
    yield instance
    instance.stop()
    instance.check_log()
    instance.remove_home()


def instance_put(server: Any, path: str, body: Any) -> None:
    response = httpx.put(server.url + path, json=body, headers=auth("alice"), timeout=30)
    assert response.status_code == 200, response.text


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"token {TOKENS[user]}"}


@pytest.fixture
async def as_user(server: Any) -> AsyncIterator[Any]:
    clients: dict[str, httpx.AsyncClient] = {}

    def client(user: str) -> httpx.AsyncClient:
        if user not in clients:
            clients[user] = httpx.AsyncClient(base_url=server.url, headers=auth(user), timeout=60)
        return clients[user]

    yield client
    for instance in clients.values():
        await instance.aclose()


def refused(response: httpx.Response) -> bool:
    return response.status_code in (403, 404) and "hunter2" not in response.text


async def test_nbconvert_needs_viewer_on_the_file(as_user) -> None:
    for user in ("mallory", "anonymous", "bob", "carol"):
        for exporter in ("script", "html", "notebook", "markdown"):
            response = await as_user(user).get(f"/nbconvert/{exporter}/{SECRET}")
            assert refused(response), (user, exporter, response.status_code)
    mine = await as_user("alice").get(f"/nbconvert/script/{SECRET}")
    assert mine.status_code == 200 and "hunter2" in mine.text
    shared = await as_user("carol").get("/nbconvert/script/team/notes.ipynb")
    assert shared.status_code == 200 and "1 + 1" in shared.text


ESCAPES = ["team/..%2fprivate%2fsecret.ipynb", "team/%2e%2e/private/secret.ipynb"]


async def test_an_encoded_dot_dot_is_judged_on_the_real_path(as_user, server) -> None:
    carol, bob = as_user("carol"), as_user("bob")
    for escape in ESCAPES:
        for url in (
            f"/api/contents/{escape}",
            f"/files/{escape}",
            f"/api/contents/{escape}/checkpoints",
            "/api/contents/team/..%2fprivate",
            f"/view/{escape}",
        ):
            response = await carol.get(url)
            assert refused(response), (url, response.status_code, response.text[:200])
    text = {"type": "file", "format": "text", "content": "planted"}
    put = await bob.put("/api/contents/team/..%2fprivate%2fplanted.txt", json=text)
    assert refused(put), put.text
    assert not (server.root / "private/planted.txt").exists()
    secret = "/api/contents/team/..%2fprivate%2fsecret.ipynb"
    assert refused(await bob.put(secret, json=text))
    assert refused(await bob.delete(secret))
    assert refused(await bob.patch(secret, json={"path": "team/stolen.ipynb"}))
    assert "hunter2" in json.dumps(read_notebook(server.root / SECRET))
    assert not (server.root / "team/stolen.ipynb").exists()
    before = (await as_user("alice").get("/api/kernels")).json()
    session = await bob.post(
        "/api/sessions",
        json={"path": "bobspace/../private/secret.ipynb", "type": "notebook", "name": "x",
              "kernel": {"name": "python3"}},
    )  # fmt: skip
    assert session.status_code == 403, session.text
    assert (await as_user("alice").get("/api/kernels")).json() == before


async def test_shutdown_and_server_wide_config_need_the_owner(as_user, server) -> None:
    for user in ("mallory", "anonymous", "bob", "carol"):
        assert (await as_user(user).post("/api/shutdown")).status_code == 403
        patch = await as_user(user).patch("/api/config/notebook", json={"planted": 1})
        assert patch.status_code == 403, (user, patch.status_code)
    assert (await as_user("carol").get("/api/config/notebook")).status_code == 200
    assert "planted" not in (await as_user("alice").get("/api/config/notebook")).json()
    assert server.process.poll() is None  # still running


async def test_a_copy_needs_viewer_on_its_source(as_user, server) -> None:
    copy = await as_user("bob").post("/api/contents/team", json={"copy_from": SECRET})
    assert refused(copy), copy.text
    assert not any("secret" in p.name for p in (server.root / "team").iterdir())
    allowed = await as_user("bob").post(
        "/api/contents/team", json={"copy_from": "team/notes.ipynb"}
    )
    assert allowed.status_code == 201, allowed.text


async def test_moves_never_widen_who_reads_a_file(as_user, server) -> None:
    bob, carol = as_user("bob"), as_user("carol")
    assert (await carol.get("/api/contents/team/hidden.ipynb")).status_code == 403
    renamed = await bob.patch("/api/contents/team/hidden.ipynb", json={"path": "team/open.ipynb"})
    assert renamed.status_code == 403, renamed.text
    assert "carol" in renamed.json()["message"]
    assert (server.root / "team/hidden.ipynb").exists()
    into_private = await bob.patch(
        "/api/contents/bobspace/mine.ipynb", json={"path": "private/mine.ipynb"}
    )
    assert into_private.status_code == 403
    # An owner's move is the owner's decision (the rule stays on the old path).
    write_notebook(server.root / "team/draft.ipynb", notebook(code_cell("'draft'", "d1")))
    fine = await bob.patch("/api/contents/team/draft.ipynb", json={"path": "team/final.ipynb"})
    assert fine.status_code == 200, fine.text


async def test_links_are_judged_on_their_targets(as_user, server, tmp_path) -> None:
    os.symlink(server.root / SECRET, server.root / "team/link.ipynb")
    outside = tmp_path / "outside.txt"
    outside.write_text("content from elsewhere")
    os.symlink(outside, server.root / "team/outside.txt")
    carol = as_user("carol")
    for url in ("/api/contents/team/link.ipynb", "/files/team/link.ipynb"):
        assert refused(await carol.get(url)), url
    for user in ("carol", "alice"):
        response = await as_user(user).get("/api/contents/team/outside.txt")
        assert response.status_code == 404 and "elsewhere" not in response.text


async def test_listings_leave_out_what_the_user_may_not_open(as_user) -> None:
    root = (await as_user("carol").get("/api/contents")).json()
    assert {e["name"] for e in root["content"]} >= {"team", "bobspace"}
    assert "private" not in {e["name"] for e in root["content"]}
    team = (await as_user("carol").get("/api/contents/team")).json()
    assert "notes.ipynb" in {e["name"] for e in team["content"]}
    assert "hidden.ipynb" not in {e["name"] for e in team["content"]}
    mine = (await as_user("alice").get("/api/contents")).json()
    assert "private" in {e["name"] for e in mine["content"]}
