"""Kernels, kernel specs, sessions, terminals and roles over GraphQL, decided as REST decides:
what the caller may not view is absent (or not found), never named."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from graphqls import query
from notebooks import code_cell, notebook, write_notebook
from roles import TOKENS, http, share
from yclient import eventually

from jupyter_datastore.events.catalog import KERNEL_ACTIONS

pytestmark = pytest.mark.timeout(180)

KERNEL_FIELDS = "id name executionState lastActivity connections paths"
SESSION_FIELDS = "id path name type kernel { id name }"
UNKNOWN_KERNEL = "00000000-0000-0000-0000-000000000000"


def rest(server: Any) -> httpx.AsyncClient:
    """REST with the server's own token (default role: owner)."""
    headers = {"Authorization": f"token {server.token}"}
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60)


def code(answer: dict[str, Any]) -> str:
    """The code of the one error of an answer."""
    (error,) = answer["errors"]
    return str(error["extensions"]["code"])


async def kernel_ids(client: httpx.AsyncClient) -> set[str]:
    response = await client.get("/api/kernels")
    assert response.status_code == 200, response.text
    return {k["id"] for k in response.json()}


async def session_count(client: httpx.AsyncClient) -> int:
    return len((await client.get("/api/sessions")).json())


async def ready(server: Any, kernel_id: str, token: str | None = None) -> None:
    """Until the kernel is idle (as the server's state knows it): interrupted while it
    still imports, a kernel prints a KeyboardInterrupt traceback into the server's log."""
    text = f'{{ kernel(id: "{kernel_id}") {{ executionState }} }}'

    async def idle() -> bool:
        answer = await query(server, text, token=token)
        return (answer.get("data") or {}).get("kernel", {}).get("executionState") == "idle"

    await eventually(idle, timeout=60)


async def kernel_actions(client: httpx.AsyncClient, kernel_id: str) -> list[str]:
    """jupyter_server's kernel_actions events about a kernel, in order."""
    params = {"since": 0, "schema_id": KERNEL_ACTIONS, "limit": 10_000}
    response = await client.get("/api/events", params=params)
    assert response.status_code == 200, response.text
    return [e["action"] for e in response.json()["events"] if e.get("kernel_id") == kernel_id]


# --- one user, the owner of everything (the `server` fixture) ---


async def test_kernels_and_sessions_started_over_rest(server: Any) -> None:
    write_notebook(server.root / "listed.ipynb", notebook(code_cell("1", "c1")))
    async with rest(server) as client:
        body = {"path": "listed.ipynb", "type": "notebook", "name": "Listed"}
        created = await client.post("/api/sessions", json=body)
        assert created.status_code == 201, created.text
        session = created.json()
        kernel_id = session["kernel"]["id"]
        try:
            answer = await query(
                server,
                f"{{ kernels {{ {KERNEL_FIELDS} }} sessions {{ {SESSION_FIELDS} }} "
                f'kernel(id: "{kernel_id}") {{ id paths }} }}',
            )
            data = answer["data"]
            (kernel,) = [k for k in data["kernels"] if k["id"] == kernel_id]
            assert kernel["name"] == "python3"
            assert kernel["paths"] == ["listed.ipynb"]
            assert kernel["executionState"] in ("starting", "idle", "busy")
            assert kernel["lastActivity"] and kernel["connections"] >= 0
            assert data["kernel"] == {"id": kernel_id, "paths": ["listed.ipynb"]}
            (listed,) = [s for s in data["sessions"] if s["id"] == session["id"]]
            assert listed == {
                "id": session["id"],
                "path": "listed.ipynb",
                "name": session["name"],
                "type": "notebook",
                "kernel": {"id": kernel_id, "name": "python3"},
            }
        finally:
            assert (await client.delete(f"/api/sessions/{session['id']}")).status_code == 204


async def test_kernelspecs_name_the_default(server: Any) -> None:
    answer = await query(server, "{ kernelspecs { default specs { name displayName language } } }")
    specs = answer["data"]["kernelspecs"]
    rest_specs = server.get("/api/kernelspecs")
    assert specs["default"] == rest_specs["default"] == "python3"
    python = [s for s in specs["specs"] if s["name"] == "python3"]
    assert python and python[0]["language"] == "python" and python[0]["displayName"]
    assert {s["name"] for s in specs["specs"]} == set(rest_specs["kernelspecs"])


async def test_start_interrupt_restart_and_shut_down_a_kernel(server: Any) -> None:
    started = await query(
        server, f'mutation {{ startKernel(name: "python3") {{ {KERNEL_FIELDS} }} }}'
    )
    kernel = started["data"]["startKernel"]
    kernel_id = kernel["id"]
    assert kernel["name"] == "python3" and kernel["paths"] == []
    async with rest(server) as client:
        try:
            assert kernel_id in await kernel_ids(client)
            await ready(server, kernel_id)
            interrupted = await query(server, f'mutation {{ interruptKernel(id: "{kernel_id}") }}')
            assert interrupted == {"data": {"interruptKernel": True}}
            restarted = await query(
                server, f'mutation {{ restartKernel(id: "{kernel_id}") {{ id name }} }}'
            )
            assert restarted["data"]["restartKernel"] == {"id": kernel_id, "name": "python3"}

            async def both_recorded() -> bool:
                actions = await kernel_actions(client, kernel_id)
                return "interrupt" in actions and "restart" in actions

            await eventually(both_recorded)
            await ready(server, kernel_id)  # the restarted kernel, before it is shut down
            assert kernel_id in await kernel_ids(client)  # the same kernel, restarted
            shut = await query(server, f'mutation {{ shutdownKernel(id: "{kernel_id}") }}')
            assert shut == {"data": {"shutdownKernel": True}}
            assert kernel_id not in await kernel_ids(client)
            gone = await query(server, f'{{ kernel(id: "{kernel_id}") {{ id }} }}')
            assert code(gone) == "not_found" and gone["data"] is None
        finally:
            if kernel_id in await kernel_ids(client):
                await client.delete(f"/api/kernels/{kernel_id}")


async def test_create_session_then_it_is_listed(server: Any) -> None:
    write_notebook(server.root / "made.ipynb", notebook(code_cell("2", "c1")))
    answer = await query(
        server,
        f'mutation {{ createSession(path: "made.ipynb", kernelName: "python3") '
        f"{{ {SESSION_FIELDS} }} }}",
    )
    session = answer["data"]["createSession"]
    assert session["path"] == "made.ipynb" and session["type"] == "notebook"
    assert session["name"] == "made.ipynb" and session["kernel"]["name"] == "python3"
    async with rest(server) as client:
        try:
            listed = await query(server, f"{{ sessions {{ {SESSION_FIELDS} }} }}")
            assert session in listed["data"]["sessions"]
            rest_sessions = (await client.get("/api/sessions")).json()
            assert session["id"] in {s["id"] for s in rest_sessions}
            # Asking again gives the path's session, not a second kernel.
            again = await query(
                server, 'mutation { createSession(path: "made.ipynb") { id kernel { id } } }'
            )
            assert again["data"]["createSession"] == {
                "id": session["id"],
                "kernel": {"id": session["kernel"]["id"]},
            }
        finally:
            await client.delete(f"/api/sessions/{session['id']}")


async def test_terminals_are_created_and_listed(server: Any) -> None:
    created = await query(server, "mutation { createTerminal { name lastActivity } }")
    terminal = created["data"]["createTerminal"]
    async with rest(server) as client:
        try:
            assert terminal["lastActivity"]
            listed = await query(server, "{ terminals { name lastActivity } }")
            assert terminal["name"] in {t["name"] for t in listed["data"]["terminals"]}
            rest_terminals = (await client.get("/api/terminals")).json()
            assert terminal["name"] in {t["name"] for t in rest_terminals}
        finally:
            await client.delete(f"/api/terminals/{terminal['name']}")


async def test_bad_input_is_refused_and_changes_nothing(server: Any) -> None:
    write_notebook(server.root / "bad.ipynb", notebook(code_cell("3", "c1")))
    async with rest(server) as client:
        kernels_before = await kernel_ids(client)
        sessions_before = await session_count(client)
        cases = {
            f'{{ kernel(id: "{UNKNOWN_KERNEL}") {{ id }} }}': "not_found",
            f'mutation {{ interruptKernel(id: "{UNKNOWN_KERNEL}") }}': "not_found",
            f'mutation {{ restartKernel(id: "{UNKNOWN_KERNEL}") {{ id }} }}': "not_found",
            f'mutation {{ shutdownKernel(id: "{UNKNOWN_KERNEL}") }}': "not_found",
            'mutation { shutdownKernel(id: "") }': "bad_request",
            'mutation { startKernel(name: "no-such-spec") { id } }': "not_found",
            'mutation { startKernel(name: "python3", path: "../x") { id } }': "not_found",
            'mutation { createSession(path: "../x.ipynb") { id } }': "not_found",
            'mutation { createSession(path: "a\\\\b.ipynb") { id } }': "bad_request",
            'mutation { createSession(path: "") { id } }': "bad_request",
            'mutation { createSession(path: "bad.ipynb", kernelName: "no-such-spec") { id } }': (
                "not_found"
            ),
            '{ role(path: "../x") { role } }': "not_found",
            'mutation { setRule(path: "bad.ipynb", rule: {users: {bob: "king"}}) { role } }': (
                "bad_request"
            ),
            'mutation { setRule(path: "bad.ipynb", rule: [1]) { role } }': "bad_request",
        }
        for text, expected in cases.items():
            answer = await query(server, text)
            assert code(answer) == expected, (text, answer)
            assert answer["data"] is None, text
        assert await kernel_ids(client) == kernels_before
        assert await session_count(client) == sessions_before
        described = (await client.get("/api/datastore/permissions/bad.ipynb")).json()
        assert described["rule"] is None


# --- named people with roles (the `roles_server` fixture: alice owns everything) ---


async def create_session(server: Any, path: str) -> dict[str, Any]:
    answer = await query(
        server,
        f'mutation {{ createSession(path: "{path}") {{ {SESSION_FIELDS} }} }}',
        token=TOKENS["alice"],
    )
    return dict(answer["data"]["createSession"])


async def test_no_role_sees_nothing_of_a_private_notebook(roles_server: Any) -> None:
    server = roles_server
    write_notebook(server.root / "private.ipynb", notebook(code_cell("secret", "c1")))
    session = await create_session(server, "private.ipynb")
    kernel_id = session["kernel"]["id"]
    mallory = TOKENS["mallory"]
    async with http(server, "alice") as alice:
        try:
            listed = await query(
                server,
                f"{{ kernels {{ {KERNEL_FIELDS} }} sessions {{ {SESSION_FIELDS} }} "
                "terminals { name } }",
                token=mallory,
            )
            assert kernel_id not in {k["id"] for k in listed["data"]["kernels"]}
            assert listed["data"]["sessions"] == []
            assert listed["data"]["terminals"] == []
            assert "private" not in json.dumps(listed)
            # as REST shows them to her
            async with http(server, "mallory") as rest_mallory:
                assert kernel_id not in await kernel_ids(rest_mallory)
            for text in (
                f'{{ kernel(id: "{kernel_id}") {{ id paths }} }}',
                f'mutation {{ interruptKernel(id: "{kernel_id}") }}',
                f'mutation {{ restartKernel(id: "{kernel_id}") {{ id }} }}',
                f'mutation {{ shutdownKernel(id: "{kernel_id}") }}',
            ):
                answer = await query(server, text, token=mallory)
                assert code(answer) == "not_found", (text, answer)
                assert answer["data"] is None and "private" not in json.dumps(answer)
            for text in (
                '{ role(path: "private.ipynb") { role rule } }',
                'mutation { createSession(path: "private.ipynb") { id } }',
                'mutation { startKernel(name: "python3") { id } }',
                "mutation { createTerminal { name } }",
            ):
                answer = await query(server, text, token=mallory)
                assert code(answer) == "forbidden", (text, answer)
                assert answer["data"] is None
            assert kernel_id in await kernel_ids(alice)  # still running
            owner = await query(server, "{ kernels { id paths } }", token=TOKENS["alice"])
            assert {"id": kernel_id, "paths": ["private.ipynb"]} in owner["data"]["kernels"]
        finally:
            await alice.delete(f"/api/sessions/{session['id']}")


async def test_a_viewer_sees_the_kernel_but_may_not_restart_it(roles_server: Any) -> None:
    server = roles_server
    write_notebook(server.root / "shared.ipynb", notebook(code_cell("x = 1", "c1")))
    await share(server, "shared.ipynb", {"users": {"bob": "viewer", "carol": "runner"}})
    session = await create_session(server, "shared.ipynb")
    kernel_id = session["kernel"]["id"]
    bob, carol = TOKENS["bob"], TOKENS["carol"]
    async with http(server, "alice") as alice:
        try:
            seen = await query(
                server,
                f'{{ kernel(id: "{kernel_id}") {{ id paths }} sessions {{ id path }} }}',
                token=bob,
            )
            assert seen["data"]["kernel"] == {"id": kernel_id, "paths": ["shared.ipynb"]}
            assert {"id": session["id"], "path": "shared.ipynb"} in seen["data"]["sessions"]
            for text in (
                f'mutation {{ interruptKernel(id: "{kernel_id}") }}',
                f'mutation {{ restartKernel(id: "{kernel_id}") {{ id }} }}',
                f'mutation {{ shutdownKernel(id: "{kernel_id}") }}',
                'mutation { createSession(path: "shared.ipynb") { id } }',
            ):
                answer = await query(server, text, token=bob)
                assert code(answer) == "forbidden", (text, answer)
                assert answer["data"] is None
            assert kernel_id in await kernel_ids(alice)
            assert "restart" not in await kernel_actions(alice, kernel_id)
            # A runner may use it.
            await ready(server, kernel_id, TOKENS["alice"])
            interrupted = await query(
                server, f'mutation {{ interruptKernel(id: "{kernel_id}") }}', token=carol
            )
            assert interrupted == {"data": {"interruptKernel": True}}
            joined = await query(
                server, 'mutation { createSession(path: "shared.ipynb") { id } }', token=carol
            )
            assert joined == {"data": {"createSession": {"id": session["id"]}}}
        finally:
            await alice.delete(f"/api/sessions/{session['id']}")


async def test_only_an_owner_sets_a_rule(roles_server: Any) -> None:
    server = roles_server
    write_notebook(server.root / "ruled.ipynb", notebook(code_cell("y = 2", "c1")))
    await share(server, "ruled.ipynb", {"users": {"bob": "viewer", "carol": "editor"}})
    fields = "path role rule decidedBy defaultRole"
    bob = TOKENS["bob"]
    grant = 'mutation { setRule(path: "ruled.ipynb", rule: {users: {bob: "runner"}}) { role } }'
    for user in ("bob", "carol", "mallory"):
        refused = await query(server, grant, token=TOKENS[user])
        assert code(refused) == "forbidden", (user, refused)
        assert refused["data"] is None
    async with http(server, "alice") as alice:
        unchanged = (await alice.get("/api/datastore/permissions/ruled.ipynb")).json()
        assert unchanged["rule"]["users"] == {"bob": "viewer", "carol": "editor"}
    before = await query(server, f'{{ role(path: "ruled.ipynb") {{ {fields} }} }}', token=bob)
    assert before["data"]["role"] == {
        "path": "ruled.ipynb",
        "role": "viewer",
        "rule": {"users": {"bob": "viewer", "carol": "editor"}, "groups": {}, "default": None},
        "decidedBy": "ruled.ipynb",
        "defaultRole": "none",
    }
    granted = await query(
        server,
        'mutation { setRule(path: "ruled.ipynb", rule: {users: {bob: "runner"}}) '
        "{ path role rule } }",
        token=TOKENS["alice"],
    )
    assert granted["data"]["setRule"] == {
        "path": "ruled.ipynb",
        "role": "owner",
        "rule": {"users": {"bob": "runner"}, "groups": {}, "default": None},
    }
    after = await query(server, '{ role(path: "ruled.ipynb") { role } }', token=bob)
    assert after["data"]["role"] == {"role": "runner"}
    removed = await query(
        server,
        'mutation { setRule(path: "ruled.ipynb", rule: null) { rule decidedBy } }',
        token=TOKENS["alice"],
    )
    assert removed["data"]["setRule"] == {"rule": None, "decidedBy": None}
    gone = await query(server, '{ role(path: "ruled.ipynb") { role } }', token=bob)
    assert code(gone) == "forbidden" and gone["data"] is None
