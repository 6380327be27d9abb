"""Roles per document with three people on one server: alice owns everything (configured),
bob and carol get what alice shares; everything else is private (default role `none`)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from execapi import outputs_text
from notebooks import code_cell, notebook, read_notebook, write_notebook
from pycrdt import Array, Doc, Text
from roles import TOKENS, http, share
from yclient import YClient, eventually, until

from jupyter_datastore.protocol.lib0 import var_uint
from jupyter_datastore.protocol.messages import sync_step2, sync_update

pytestmark = pytest.mark.timeout(180)

PERMISSION = "https://events.jupyter.org/jupyter_datastore/permission/v1"


@pytest.fixture(scope="module")
def server(roles_server: Any) -> Any:
    return roles_server


def source(client: YClient, index: int = 0) -> str:
    return str(client.doc.get("cells", type=Array)[index]["source"])


def type_into(client: YClient, text: str, index: int = 0) -> None:
    cell_source = client.doc.get("cells", type=Array)[index]["source"]
    cell_source += text


def refusals(client: YClient) -> list[dict[str, Any]]:
    return [r for r in client.raw if r.get("type") == "refused"]


def roles_told(client: YClient) -> list[tuple[str, bool]]:
    """The roles the room told the peer (RAW `role`), in order."""
    return [(r["role"], r["edit"]) for r in client.raw if r.get("type") == "role"]


async def test_a_viewer_reads_but_their_edits_reach_no_one(server) -> None:
    write_notebook(server.root / "shared.ipynb", notebook(code_cell("x = 1", "c1")))
    await share(server, "shared.ipynb", {"users": {"bob": "editor", "carol": "viewer"}})
    bob = await YClient.connect(server.url, TOKENS["bob"], "shared.ipynb")
    carol = await YClient.connect(server.url, TOKENS["carol"], "shared.ipynb")
    try:
        assert source(carol) == "x = 1"  # a viewer syncs
        # Each peer is told its role on joining: a front end opens it read-only for carol.
        await until(lambda: roles_told(carol) == [("viewer", False)], what="carol's role")
        await until(lambda: roles_told(bob) == [("editor", True)], what="bob's role")
        type_into(carol, " # carol was here")
        await until(lambda: len(refusals(carol)) == 1, what="the refusal")
        assert "needs the role editor" in refusals(carol)[0]["reason"]
        assert "carol is viewer" in refusals(carol)[0]["reason"]
        assert refusals(carol)[0]["reload"] is True  # her copy now differs from the room's
        saved = await carol.save(request_id=7)  # Ctrl-S from a viewer is refused too
        assert saved["status"] == "failed" and len(refusals(carol)) == 2
        assert refusals(carol)[1]["reload"] is False  # nothing of hers is in her copy only
        # bob's edit goes through, to carol as well; carol's never reached bob or the file.
        type_into(bob, " # bob")
        await until(lambda: "# bob" in source(carol), what="bob's edit at carol")
        assert "carol" not in source(bob)
        path = server.root / "shared.ipynb"
        await until(lambda: "# bob" in "".join(read_notebook(path)["cells"][0]["source"]))
        assert "carol" not in "".join(read_notebook(path)["cells"][0]["source"])
        # Presence still works for a viewer.
        await carol.set_awareness(carol.doc.client_id, 1, {"user": {"name": "carol"}})
        await until(lambda: carol.doc.client_id in bob.awareness, what="carol's presence")
    finally:
        await bob.close()
        await carol.close()


async def test_a_role_changed_while_the_room_is_open_applies_to_the_next_message(server) -> None:
    write_notebook(server.root / "demote.ipynb", notebook(code_cell("a", "c1")))
    await share(server, "demote.ipynb", {"users": {"bob": "editor"}})
    alice = await YClient.connect(server.url, TOKENS["alice"], "demote.ipynb")
    bob = await YClient.connect(server.url, TOKENS["bob"], "demote.ipynb")
    try:
        type_into(bob, "b")
        await until(lambda: source(alice) == "ab", what="bob's first edit")
        await share(server, "demote.ipynb", {"users": {"bob": "viewer"}})
        # The open room tells bob at once (a front end switches to read-only)...
        told = [("editor", True), ("viewer", False)]
        await until(lambda: roles_told(bob) == told, what="bob told he is a viewer")
        type_into(bob, "c")
        await until(lambda: len(refusals(bob)) == 1, what="bob's refusal")
        assert source(alice) == "ab"
        # Promoted again, bob edits from a fresh copy (his old one holds the refused "c",
        # on which his next edits would depend).
        await share(server, "demote.ipynb", {"users": {"bob": "editor"}})
        told.append(("editor", True))
        await until(lambda: roles_told(bob) == told, what="bob told he edits again")
        assert roles_told(alice) == [("owner", True)]  # a rule that changes nothing for alice
        again = await YClient.connect(server.url, TOKENS["bob"], "demote.ipynb")
        type_into(again, "d")
        await until(lambda: source(alice) == "abd", what="bob's edit after promotion")
        await again.close()
    finally:
        await alice.close()
        await bob.close()


async def test_the_python_client_knows_its_role_and_reloads_after_a_refused_edit(server) -> None:
    """A viewer's client is told its role; an edit it makes anyway is refused, and the
    client starts again from the room's content (flush says the edit was dropped) instead of
    keeping a copy of its own."""
    from jupyter_datastore.client import Client, EditsDiscarded

    write_notebook(server.root / "client.ipynb", notebook(code_cell("x = 1", "c1")))
    await share(server, "client.ipynb", {"users": {"carol": "viewer", "bob": "editor"}})
    async with (
        Client(server.url, TOKENS["carol"]) as carol,
        Client(server.url, TOKENS["bob"]) as bob,
    ):
        mine = await carol.open_notebook("client.ipynb")
        theirs = await bob.open_notebook("client.ipynb")
        await mine.wait_for(lambda nb: nb.role == "viewer")
        await theirs.wait_for(lambda nb: nb.role == "editor")
        mine.cell("c1").set_source("x = 2  # carol")
        with pytest.raises(EditsDiscarded):
            await mine.synced(timeout=30)
        await mine.wait_for(lambda nb: nb.reloads == 1 and nb.connected)
        assert [c.source for c in mine.cells] == ["x = 1"]
        # Live again, from the room's content: bob's edit reaches her.
        theirs.cell("c1").set_source("x = 3  # bob")
        await mine.wait_for(lambda nb: [c.source for c in nb.cells] == ["x = 3  # bob"])
        assert mine.role == "viewer"


async def test_contents_say_writable_only_to_those_who_may_edit(server) -> None:
    """JupyterLab opens a file whose contents model is not writable read-only, with its own
    mark, and refuses Ctrl-S: a viewer's models say so, an editor's do not."""
    folder = server.root / "writable"
    folder.mkdir()
    write_notebook(folder / "nb.ipynb", notebook(code_cell("x", "c1")))
    (folder / "notes.txt").write_text("notes")
    await share(server, "writable", {"users": {"bob": "editor", "carol": "viewer"}})
    await share(server, "writable/notes.txt", {"users": {"carol": "editor"}, "default": "viewer"})
    for user, nb, notes in (("bob", True, False), ("carol", False, True), ("alice", True, True)):
        async with http(server, user) as client:
            listing = (await client.get("/api/contents/writable")).json()
            entries = {e["name"]: e["writable"] for e in listing["content"]}
            assert entries == {"nb.ipynb": nb, "notes.txt": notes}, user
            model = (await client.get("/api/contents/writable/nb.ipynb?content=0")).json()
            assert model["writable"] is nb, user
            assert listing["writable"] is nb, user  # the folder: as the notebook, by the rule


async def test_runners_run_viewers_do_not(server) -> None:
    write_notebook(server.root / "run.ipynb", notebook(code_cell("6 * 7", "c1")))
    await share(server, "run.ipynb", {"users": {"bob": "runner", "carol": "viewer"}})
    body = {"path": "run.ipynb", "cell_ids": ["c1"]}
    async with http(server, "carol") as carol, http(server, "bob") as bob:
        refused = await carol.post("/api/datastore/executions", json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "forbidden"
        ran = await bob.post("/api/datastore/executions", json=body)
        assert ran.status_code == 202, ran.text
        (record,) = ran.json()["executions"]

        async def finished() -> dict[str, Any] | None:
            got = (await carol.get(f"/api/datastore/executions/{record['id']}")).json()
            return got if got["status"] == "ok" else None

        done = await eventually(finished)  # a viewer may read the record
        assert done["outputs"][0]["data"]["text/plain"] == "42"
        # jupyter_server's own API: the viewer may read the notebook, not write it or run it.
        assert (await carol.get("/api/contents/run.ipynb")).status_code == 200
        put = await carol.put("/api/contents/run.ipynb", json=read_notebook_model(server))
        assert put.status_code == 403
        assert (await carol.post("/api/kernels", json={"name": "python3"})).status_code == 403
        kernel_id = done["kernel_id"]
        assert (await carol.post(f"/api/kernels/{kernel_id}/interrupt")).status_code == 403
        assert (await bob.post(f"/api/kernels/{kernel_id}/interrupt")).status_code == 204
        # nobody outside the share sees the notebook at all
        assert (await carol.get("/api/contents/private.ipynb")).status_code in (403, 404)
    reader = await YClient.connect(server.url, TOKENS["bob"], "run.ipynb")
    try:
        assert outputs_text(reader.doc, "c1") == "42"
    finally:
        await reader.close()


def read_notebook_model(server: Any) -> dict[str, Any]:
    content = read_notebook(server.root / "run.ipynb")
    return {"type": "notebook", "format": "json", "content": content}


async def test_no_role_means_no_room_and_no_session(server) -> None:
    write_notebook(server.root / "private.ipynb", notebook(code_cell("secret", "c1")))
    async with http(server, "carol") as carol:
        response = await carol.put(
            "/api/collaboration/session/private.ipynb", json={"format": "json", "type": "notebook"}
        )
        assert response.status_code == 403
        # Server-wide lists answer, with nothing of what she may not view.
        for url in ("/api/events", "/api/datastore/state", "/api/datastore/status"):
            response = await carol.get(url)
            assert response.status_code == 200 and "private.ipynb" not in response.text, url
        event = {"schema_id": PERMISSION, "version": "1", "data": {"action": "changed", "path": ""}}
        assert (await carol.post("/api/events", json=event)).status_code == 403
    # With the room id known (from alice), carol's socket is closed with 4403.
    alice = await YClient.connect(server.url, TOKENS["alice"], "private.ipynb")
    try:
        session_id = server.get("/api/datastore/status")["sessionId"]
        intruder = await YClient.connect(
            server.url, TOKENS["carol"], room=alice.room, session_id=session_id, wait_sync=False
        )
        code, reason = await intruder.wait_closed()
        assert code == 4403 and json.loads(reason)["error"] == "forbidden"
        await intruder.close()
    finally:
        await alice.close()


async def test_rules_are_inherited_and_groups_count(server) -> None:
    (server.root / "team").mkdir(exist_ok=True)
    write_notebook(server.root / "team" / "plan.ipynb", notebook(code_cell("plan", "c1")))
    await share(server, "team", {"groups": {"team": "editor"}, "default": "viewer"})
    async with http(server, "bob") as bob, http(server, "carol") as carol:
        mine = (await bob.get("/api/datastore/permissions/team/plan.ipynb")).json()
        assert mine["role"] == "editor" and mine["decided_by"] == "team"
        theirs = (await carol.get("/api/datastore/permissions/team/plan.ipynb")).json()
        assert theirs["role"] == "viewer"
        # Only an owner shares.
        denied = await bob.put("/api/datastore/permissions/team", json={"default": "owner"})
        assert denied.status_code == 403
    # Bad rules change nothing.
    async with http(server, "alice") as alice:
        for bad in ({"users": {"bob": "admin"}}, {"users": ["bob"]}, {"other": 1}, [1]):
            response = await alice.put("/api/datastore/permissions/team", json=bad)
            assert response.status_code == 400, (bad, response.text)
        outside = await alice.put("/api/datastore/permissions/../x", json={})
        assert outside.status_code in (400, 404)
        rule = (await alice.get("/api/datastore/permissions/team")).json()["rule"]
        assert rule == {"users": {}, "groups": {"team": "editor"}, "default": "viewer"}


async def test_every_change_and_refusal_is_an_event(server) -> None:
    write_notebook(server.root / "audit.ipynb", notebook(code_cell("", "c1")))
    await share(server, "audit.ipynb", {"users": {"carol": "viewer"}})
    async with http(server, "carol") as carol:
        body = {"path": "audit.ipynb", "cell_ids": ["c1"]}
        assert (await carol.post("/api/datastore/executions", json=body)).status_code == 403
    async with http(server, "alice") as alice:

        async def audit() -> list[dict[str, Any]]:
            events = (await alice.get(f"/api/events?schema_id={PERMISSION}")).json()["events"]
            return [e for e in events if e["path"] == "audit.ipynb"]

        events = await eventually(lambda: _both(audit))
        changed = next(e for e in events if e["action"] == "changed")
        assert changed["user"] == "alice" and changed["rule"]["users"] == {"carol": "viewer"}
        refused = next(e for e in events if e["action"] == "refused")
        assert refused["user"] == "carol" and refused["needed"] == "runner"
        assert refused["operation"] == "execute"


async def _both(audit: Any) -> list[dict[str, Any]] | None:
    events = await audit()
    actions = {e["action"] for e in events}
    return events if actions >= {"changed", "refused"} else None


async def test_a_viewers_fuzzed_messages_change_nothing(server) -> None:
    write_notebook(server.root / "fuzz.ipynb", notebook(code_cell("keep me", "c1")))
    await share(server, "fuzz.ipynb", {"users": {"carol": "viewer", "bob": "editor"}})
    bob = await YClient.connect(server.url, TOKENS["bob"], "fuzz.ipynb")
    carol = await YClient.connect(server.url, TOKENS["carol"], "fuzz.ipynb")
    before = bob.doc.get_update()
    rng = random.Random(7)
    try:
        # Crafted: real updates made on a copy of the document (new cells, deleted text),
        # sent as updates and as SyncStep2 replies.
        for n in range(20):
            copy = Doc()
            copy.apply_update(carol.doc.get_update())
            cells = copy.get("cells", type=Array)
            if n % 2:
                source_text = cells[0]["source"]
                assert isinstance(source_text, Text)
                del source_text[0 : len(str(source_text))]
            else:
                cells[0]["source"] += f" {n}"
            update = copy.get_update(carol.doc.get_state())
            await carol.send(sync_update(update) if n % 3 else sync_step2(update))
        # Random: arbitrary payloads framed as updates.
        for _ in range(50):
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
            await carol.send(var_uint(0) + var_uint(2) + var_uint(len(junk)) + junk)
        await until(lambda: len(refusals(carol)) >= 70, what="a refusal for each")
        type_into(bob, "!")  # the room still works, and is as bob left it
        await until(lambda: source(carol) == "keep me!", what="bob's edit at carol")
        assert source(bob) == "keep me!"
        check = Doc()
        check.apply_update(before)
        assert bob.doc.get_state() != check.get_state()  # only bob's "!" was added
        path = server.root / "fuzz.ipynb"
        await until(lambda: "".join(read_notebook(path)["cells"][0]["source"]) == "keep me!")
    finally:
        await bob.close()
        await carol.close()


async def test_a_viewer_cannot_undo(server) -> None:
    write_notebook(server.root / "undo.ipynb", notebook(code_cell("", "c1")))
    await share(server, "undo.ipynb", {"users": {"bob": "editor"}})
    bob = await YClient.connect(server.url, TOKENS["bob"], "undo.ipynb")
    try:
        type_into(bob, "typed by bob")
        await until(
            lambda: (
                "typed" in "".join(read_notebook(server.root / "undo.ipynb")["cells"][0]["source"])
            )
        )
        await share(server, "undo.ipynb", {"users": {"bob": "viewer"}})
        async with http(server, "bob") as client:
            refused = await client.post(f"/api/datastore/rooms/{bob.room}/undo")
            assert refused.status_code == 403, refused.text
            await share(server, "undo.ipynb", {"users": {"bob": "editor"}})
            done = await client.post(f"/api/datastore/rooms/{bob.room}/undo")
            assert done.status_code == 200, done.text
        await until(lambda: source(bob) == "", what="bob's text undone")
    finally:
        await bob.close()
