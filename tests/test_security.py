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
from conftest import TOKEN
from notebooks import code_cell, notebook, read_notebook, write_notebook
from roles import ROLE_ARGS
from roles import TOKENS as USER_TOKENS
from two_users import two_users_env
from yclient import YClient, eventually, until

pytestmark = pytest.mark.timeout(180)

TOKENS = {**USER_TOKENS, "anonymous": TOKEN}  # the server's own token: no name
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
    instance = Server(root, ROLE_ARGS, env=two_users_env()).start()
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


async def test_notebook_7_pages_of_a_file_need_viewer_on_it(as_user) -> None:
    """Notebook 7's tree page looks the path up (a folder's page, or a redirect to the
    file's): not for a path the user may not view, whose existence it would tell."""
    for user in ("mallory", "anonymous", "bob", "carol"):
        for page in ("tree", "notebooks", "edit"):
            response = await as_user(user).get(f"/{page}/{SECRET}", follow_redirects=False)
            assert refused(response), (user, page, response.status_code)
    for user in ("alice", "carol"):
        shared = await as_user(user).get("/tree/team/notes.ipynb", follow_redirects=False)
        assert shared.status_code == 302, (user, shared.status_code)
    assert (await as_user("mallory").get("/tree", follow_redirects=False)).status_code == 200


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


async def start_session(client: httpx.AsyncClient, path: str) -> str:
    body = {"path": path, "type": "notebook", "name": path, "kernel": {"name": "python3"}}
    response = await client.post("/api/sessions", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["kernel"]["id"])


async def run_code(client: httpx.AsyncClient, kernel_id: str, code: str) -> str:
    """Run code through nbmodel's API and return its outputs (JSON text)."""
    started = await client.post(f"/api/kernels/{kernel_id}/execute", json={"code": code})
    assert started.status_code == 202, started.text

    async def result() -> str | None:
        got = await client.get(started.headers["Location"])
        return str(got.json()["outputs"]) if got.status_code == 200 else None

    return str(await eventually(result, timeout=60))


async def test_code_runs_on_a_kernel_only_with_runner_on_its_notebooks(as_user, server) -> None:
    alice, bob = as_user("alice"), as_user("bob")
    private_kernel = await start_session(alice, SECRET)
    write_notebook(server.root / "bobspace/plant.ipynb", notebook(code_cell("pwned = 1", "p1")))
    via_executions = await bob.post(
        "/api/datastore/executions",
        json={"path": "bobspace/plant.ipynb", "cell_ids": ["p1"], "kernel": {"id": private_kernel}},
    )
    assert via_executions.status_code == 403, via_executions.text
    assert "private" not in via_executions.text  # nor the notebook's name
    assert "not a runner" in via_executions.json()["message"]
    via_nbmodel = await bob.post(
        f"/api/kernels/{private_kernel}/execute",
        json={"code": "pwned = 2", "metadata": {"document_path": "bobspace/plant.ipynb"}},
    )
    assert via_nbmodel.status_code == 403, via_nbmodel.text
    session = await bob.put(
        "/api/collaboration/session/bobspace/plant.ipynb",
        json={"format": "json", "type": "notebook"},
    )
    room = f"json:notebook:{session.json()['fileId']}"
    via_cell = await bob.post(
        f"/api/kernels/{private_kernel}/execute", json={"cell_id": "p1", "document_id": room}
    )
    assert via_cell.status_code == 403, via_cell.text
    assert (await bob.post(f"/api/kernels/{private_kernel}/interrupt")).status_code == 403
    assert "False" in await run_code(alice, private_kernel, "print('pwned' in globals())")
    # A notebook that has its own kernel runs only there.
    bobs_kernel = await start_session(bob, "bobspace/mine.ipynb")
    other = await bob.post(
        "/api/datastore/executions",
        json={"path": "bobspace/mine.ipynb", "cell_ids": ["m1"], "kernel": {"id": bobs_kernel}},
    )
    assert other.status_code == 202, other.text
    assert "42" in await run_code(bob, bobs_kernel, "print(40 + 2)")


async def test_outputs_go_only_into_documents_the_runner_may_run(as_user, server) -> None:
    bob = as_user("bob")
    kernel_id = await start_session(bob, "bobspace/mine.ipynb")
    before = read_notebook(server.root / SECRET)
    unparsable = await bob.post(
        f"/api/kernels/{kernel_id}/execute",
        json={
            "code": "print('planted')",
            "metadata": {"cell_id": "s1", "document_id": "not-a-room", "document_path": SECRET},
        },
    )
    assert unparsable.status_code == 400, unparsable.text
    by_path = await bob.post(
        f"/api/kernels/{kernel_id}/execute",
        json={"code": "print('planted')", "metadata": {"cell_id": "s1", "document_path": SECRET}},
    )
    assert by_path.status_code == 403, by_path.text
    assert read_notebook(server.root / SECRET) == before
    secret = await as_user("alice").get(f"/api/contents/{SECRET}")
    assert "planted" not in secret.text


async def test_open_sockets_lose_what_a_changed_rule_takes_away(as_user, server) -> None:
    write_notebook(server.root / "team/live.ipynb", notebook(code_cell("l = 1", "l1")))
    carol = await YClient.connect(server.url, TOKENS["carol"], "team/live.ipynb")
    state = await as_user("carol").get("/api/datastore/state")
    try:
        await as_user("alice").put(
            "/api/datastore/permissions/team/live.ipynb", json={"users": {"carol": "none"}}
        )
        await until(carol.closed.is_set, timeout=3, what="carol's socket closed")
        assert carol.close_code == 4403
        assert "carol is none" in carol.close_reason
    finally:
        await carol.close()
    # The state room shows every document: carol (who may not view them all) is refused.
    session_id = state.json()["session_id"]
    refused_state = await YClient.connect(
        server.url, TOKENS["carol"], room="datastore:state", session_id=session_id, wait_sync=False
    )
    await until(refused_state.closed.is_set, what="the state room refused")
    assert refused_state.close_code == 4403
    await refused_state.close()


async def test_lists_and_lookups_show_only_what_the_user_may_view(as_user, server) -> None:
    alice = as_user("alice")
    await start_session(alice, SECRET)
    opened = await YClient.connect(server.url, TOKENS["alice"], SECRET)
    try:
        file_id = (
            await alice.put(
                f"/api/collaboration/session/{SECRET}", json={"format": "json", "type": "notebook"}
            )
        ).json()["fileId"]
        everything = json.dumps((await alice.get("/api/datastore/state")).json())
        assert SECRET in everything
        for user in ("carol", "mallory", "bob"):
            client = as_user(user)
            status = (await client.get("/api/datastore/status")).json()
            assert file_id not in json.dumps(status), user
            state = await client.get("/api/datastore/state")
            assert state.status_code == 200 and SECRET not in state.text, user
            sessions = await client.get("/api/sessions")
            assert sessions.status_code == 200 and SECRET not in sessions.text, user
            lookup = await client.get("/api/fileid/path", params={"id": file_id})
            assert lookup.status_code == 403 and "secret" not in lookup.text, user
            by_path = await client.get("/api/fileid/id", params={"path": SECRET})
            assert by_path.status_code == 403, user
        assert SECRET in (await alice.get("/api/sessions")).text
    finally:
        await opened.close()


async def test_the_event_log_keeps_its_size_while_the_server_runs(make_server) -> None:
    server = make_server(["--DatastoreApp.events_kept=50"])
    schema = {"$id": "https://example.org/tick/v1", "version": "1", "type": "object",
              "properties": {"n": {"type": "integer"}}}  # fmt: skip
    headers = {"Authorization": f"token {TOKENS['anonymous']}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as client:
        assert (await client.post("/api/events/schemas", json=schema)).status_code == 201
        for n in range(300):
            body = {"schema_id": schema["$id"], "version": 1, "data": {"n": n}}
            assert (await client.post("/api/events", json=body)).status_code == 201

        async def kept() -> list[Any] | None:
            events = (await client.get("/api/events", params={"since": 0})).json()["events"]
            return events if len(events) <= 55 else None

        events = await eventually(kept)
    assert events[-1]["n"] == 299  # the newest are the ones kept


async def test_global_presence_shows_only_paths_the_receiver_may_view(server) -> None:
    room = "JupyterLab:globalAwareness"
    peers = {
        user: await YClient.connect(server.url, TOKENS[user], room=room, wait_sync=False)
        for user in ("alice", "carol", "mallory")
    }
    try:
        state = {
            "user": {"name": "alice"},
            "current": f"notebook:{SECRET}",
            "documents": [SECRET, "team/notes.ipynb"],
        }
        alice = peers["alice"]
        await alice.set_awareness(alice.doc.client_id, 1, state)
        client = alice.doc.client_id
        for peer in peers.values():
            await until(lambda p=peer: client in p.awareness, what="alice's presence")
        assert peers["alice"].awareness[client] == state
        seen_by_carol = peers["carol"].awareness[client]
        assert seen_by_carol["user"] == {"name": "alice"}  # she sees who is there
        assert seen_by_carol["documents"] == ["team/notes.ipynb"]
        assert seen_by_carol["current"] is None
        assert peers["mallory"].awareness[client]["documents"] == []
        assert SECRET not in json.dumps(peers["mallory"].awareness)
    finally:
        for peer in peers.values():
            await peer.close()


async def test_a_user_with_no_role_gets_nothing_from_any_route(as_user) -> None:
    mallory = as_user("mallory")
    refused_routes = [
        ("POST", "/api/notifications", {"recipients": ["alice"], "message": "hi"}),
        ("POST", "/api/kernels", {"name": "python3"}),
        ("POST", "/api/terminals", {}),
        ("GET", f"/api/contents/{SECRET}", None),
        ("GET", "/api/contents/team", None),
        ("GET", f"/files/{SECRET}", None),
        ("PUT", "/lab/api/settings/@jupyterlab/apputils-extension:themes", {"raw": "{}"}),
        ("GET", "/metrics", None),
        ("POST", "/api/datastore/executions", {"path": SECRET, "cell_ids": ["s1"]}),
        ("PUT", "/api/datastore/permissions/", {"users": {"mallory": "owner"}}),
    ]
    for method, url, body in refused_routes:
        response = await mallory.request(method, url, json=body)
        assert response.status_code == 403, (method, url, response.status_code, response.text)
    # What she may use shows her nothing of others.
    for url in ("/api/sessions", "/api/kernels", "/api/terminals", "/api/events"):
        response = await mallory.get(url)
        assert response.status_code == 200 and SECRET not in response.text, url
    for url in ("/lab", "/api/me", "/api/kernelspecs", "/lab/api/workspaces/default"):
        assert (await mallory.get(url)).status_code == 200, url
