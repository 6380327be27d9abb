"""Server-side runs over GraphQL with real kernels: run cells, follow them live over a
WebSocket, list, cancel and answer input; decided as REST decides (roles, hidden records)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from execapi import ExecApi
from gql import GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from graphqls import http_client, ws_client
from notebooks import code_cell, markdown_cell, notebook, read_notebook, write_notebook
from roles import TOKENS, http, share
from yclient import eventually

pytestmark = pytest.mark.timeout(180)

FIELDS = """id path cellId status executionCount queuedAt startedAt finishedAt duration
outputs error { ename evalue } reason pendingInput { prompt password } finished"""
RUN = f"""mutation($path: String!, $cells: [String!]!) {{
  runCells(path: $path, cellIds: $cells) {{ {FIELDS} }} }}"""
ONE = f"query($id: ID!) {{ execution(id: $id) {{ {FIELDS} }} }}"
PROGRESS = f"subscription($id: ID!) {{ executionProgress(id: $id) {{ {FIELDS} }} }}"
LIST = """query($path: String, $status: String, $first: Int, $after: String) {
  executions(path: $path, status: $status, first: $first, after: $after) {
    edges { cursor node { id path cellId status } } pageInfo { hasNextPage endCursor } } }"""
CANCEL = "mutation($id: ID!) { cancelExecution(id: $id) { id status } }"
ANSWER = "mutation($id: ID!, $value: String!) { answerInput(id: $id, value: $value) { id status } }"


async def query(
    server: Any, text: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    """One operation over HTTP: `{"data": ...}` or `{"errors": [...], "data": ...}` (as
    graphqls.query, with the variables in the request, the way gql 4 wants them)."""
    async with http_client(server, token) as session:
        try:
            data = await session.execute(GraphQLRequest(text, variable_values=variables))
        except TransportQueryError as exc:
            return {"errors": exc.errors or [], "data": exc.data}
    return {"data": data}


def progress(execution_id: str) -> GraphQLRequest:
    return GraphQLRequest(PROGRESS, variable_values={"id": execution_id})


def codes(answer: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in answer.get("errors") or []]


def text_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(str(o.get("text", "")) for o in outputs if o.get("output_type") == "stream")


async def run(
    server: Any, path: str, *cells: str, token: str | None = None
) -> list[dict[str, Any]]:
    answer = await query(server, RUN, {"path": path, "cells": list(cells)}, token)
    assert "errors" not in answer, answer
    return list(answer["data"]["runCells"])


async def follow(server: Any, execution_id: str, token: str | None = None) -> list[dict[str, Any]]:
    """Every update `executionProgress` sends until it ends."""
    updates = []
    async with ws_client(server, token) as session:
        async for update in session.subscribe(progress(execution_id)):
            updates.append(update["executionProgress"])
    return updates


# --- with the owner (the shared `server`) ---


async def test_a_run_is_followed_live_until_it_finishes_with_its_output(server: Any) -> None:
    code = "import time\nprint('one', flush=True)\ntime.sleep(0.5)\nprint('two')\n6 * 7"
    write_notebook(server.root / "live.ipynb", notebook(code_cell(code, "c1")))
    (queued,) = await run(server, "live.ipynb", "c1")
    assert queued["status"] == "queued" and queued["cellId"] == "c1"
    assert queued["path"] == "live.ipynb" and not queued["finished"]

    updates = await follow(server, queued["id"])
    last = updates[-1]
    assert last["status"] == "ok" and last["finished"] and last["executionCount"] == 1
    assert text_of(last["outputs"]) == "one\ntwo\n"
    assert last["outputs"][-1]["data"]["text/plain"] == "42"
    assert last["duration"] >= 0.5 and last["startedAt"] <= last["finishedAt"]
    assert [u["finished"] for u in updates] == [False] * (len(updates) - 1) + [True]
    # Each update says something new: a status, or more outputs.
    seen = [(u["status"], str(u["outputs"])) for u in updates]
    assert len(set(seen)) == len(seen)

    rest = ExecApi(server.url, server.token)
    try:
        record = await rest.get(queued["id"])
    finally:
        await rest.close()
    assert record["status"] == "ok" and record["outputs"] == last["outputs"]
    one = await query(server, ONE, {"id": queued["id"]})
    assert one["data"]["execution"] == last

    async def saved() -> dict[str, Any] | None:
        cell: dict[str, Any] = read_notebook(server.root / "live.ipynb")["cells"][0]
        return cell if cell["execution_count"] == 1 else None

    cell = await eventually(saved)
    assert "".join(cell["outputs"][0]["text"]) == "one\ntwo\n"


CELL_STATES = "query ($path: String!) { notebook(path: $path) { cells { id executionState } } }"


async def test_input_is_asked_in_progress_and_answered(server: Any) -> None:
    code = "print('before', flush=True)\nname = input('name? ')\nprint('hello', name)"
    write_notebook(server.root / "ask.ipynb", notebook(code_cell(code, "ask")))
    (queued,) = await run(server, "ask.ipynb", "ask")
    updates = []
    async with ws_client(server) as session:
        async for update in session.subscribe(progress(queued["id"])):
            now = update["executionProgress"]
            updates.append(now)
            if now["status"] == "awaiting_input" and "before" in text_of(now["outputs"]):
                assert now["pendingInput"] == {"prompt": "name? ", "password": False}
                cells = await query(server, CELL_STATES, {"path": "ask.ipynb"})
                assert cells["data"]["notebook"]["cells"][0]["executionState"] == "running"
                answered = await query(server, ANSWER, {"id": queued["id"], "value": "Ada"})
                assert answered["data"]["answerInput"]["status"] == "running"
    last = updates[-1]
    assert last["status"] == "ok" and last["pendingInput"] is None
    assert text_of(last["outputs"]) == "before\nname? Ada\nhello Ada\n"
    # Answering again: it waits for nothing now, and nothing changes.
    again = await query(server, ANSWER, {"id": queued["id"], "value": "Bob"})
    assert codes(again) == ["conflict"]
    assert (await query(server, ONE, {"id": queued["id"]}))["data"]["execution"] == last


async def test_cancel_interrupts_a_long_sleep(server: Any) -> None:
    code = "import time\nprint('sleeping', flush=True)\ntime.sleep(120)"
    write_notebook(server.root / "sleep.ipynb", notebook(code_cell(code, "zz")))
    (queued,) = await run(server, "sleep.ipynb", "zz")
    updates, cancelled = [], None
    async with ws_client(server) as session:
        async for update in session.subscribe(progress(queued["id"])):
            now = update["executionProgress"]
            updates.append(now)
            sleeping = now["status"] == "running" and "sleeping" in text_of(now["outputs"])
            if sleeping and cancelled is None:
                cancelled = await query(server, CANCEL, {"id": queued["id"]})
                assert "errors" not in cancelled, cancelled
    last = updates[-1]
    assert last["status"] == "interrupted" and last["finished"]
    assert last["duration"] < 60
    after = await query(server, CANCEL, {"id": queued["id"]})
    assert codes(after) == ["conflict"]


async def test_executions_are_listed_newest_first_in_pages(server: Any) -> None:
    write_notebook(server.root / "paged.ipynb", notebook(code_cell("1", "a"), code_cell("2", "b")))
    first, second = await run(server, "paged.ipynb", "a", "b")
    assert (await follow(server, second["id"]))[-1]["status"] == "ok"

    page = (await query(server, LIST, {"path": "paged.ipynb", "first": 1}))["data"]
    edges = page["executions"]["edges"]
    assert len(edges) == 1 and page["executions"]["pageInfo"]["hasNextPage"]
    cursor = page["executions"]["pageInfo"]["endCursor"]
    rest = await query(server, LIST, {"path": "paged.ipynb", "first": 1, "after": cursor})
    more = rest["data"]["executions"]
    assert len(more["edges"]) == 1 and not more["pageInfo"]["hasNextPage"]
    listed = [edges[0]["node"], more["edges"][0]["node"]]
    assert [n["id"] for n in listed] == [second["id"], first["id"]]
    assert all(n["path"] == "paged.ipynb" and n["status"] == "ok" for n in listed)

    errors = await query(server, LIST, {"path": "paged.ipynb", "status": "error"})
    assert errors["data"]["executions"]["edges"] == []
    everything = await query(server, LIST, {"first": 1000})
    ids = [e["node"]["id"] for e in everything["data"]["executions"]["edges"]]
    assert {first["id"], second["id"]} <= set(ids)


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"status": "finished"}, "bad_request"),
        ({"first": 0}, "bad_request"),
        ({"after": "no-such-cursor"}, "bad_request"),
    ],
)
async def test_a_bad_list_argument_is_refused(
    server: Any, variables: dict[str, Any], code: str
) -> None:
    answer = await query(server, LIST, variables)
    assert codes(answer) == [code] and answer["data"] is None


async def test_bad_runs_are_refused_and_queue_nothing(server: Any) -> None:
    write_notebook(
        server.root / "bad.ipynb", notebook(code_cell("1", "c"), markdown_cell("# md", "m"))
    )
    (server.root / "plain.txt").write_text("not a notebook\n")
    cases = [
        ("bad.ipynb", ["nope"], "not_found"),
        ("bad.ipynb", ["m"], "bad_request"),
        ("bad.ipynb", [], "bad_request"),
        ("bad.ipynb", ["c", "c"], "bad_request"),
        ("plain.txt", ["c"], "bad_request"),
        ("missing.ipynb", ["c"], "not_found"),
        ("../outside.ipynb", ["c"], "not_found"),
    ]
    for path, cells, code in cases:
        answer = await query(server, RUN, {"path": path, "cells": cells})
        assert codes(answer) == [code], (path, cells, answer)
        assert answer["data"] is None
    listed = await query(server, LIST, {"path": "bad.ipynb"})
    assert listed["data"]["executions"]["edges"] == []
    assert read_notebook(server.root / "bad.ipynb")["cells"][0]["execution_count"] is None


async def test_an_unknown_execution_id_is_not_found(server: Any) -> None:
    unknown = {"id": "00000000-0000-0000-0000-000000000000"}
    assert codes(await query(server, ONE, unknown)) == ["not_found"]
    assert codes(await query(server, CANCEL, unknown)) == ["not_found"]
    assert codes(await query(server, ANSWER, {**unknown, "value": "x"})) == ["not_found"]
    async with ws_client(server) as session:
        with pytest.raises(TransportQueryError) as refused:
            async for _ in session.subscribe(progress(unknown["id"])):
                pass
    assert refused.value.errors is not None
    assert [e["extensions"]["code"] for e in refused.value.errors] == ["not_found"]


# --- with people and roles (alice owns everything; see tests/roles.py) ---


@pytest.fixture
async def shared_runs(roles_server: Any, request: pytest.FixtureRequest) -> dict[str, str]:
    """A test's own notebooks, each with a finished run of alice: `private` (only alice's)
    and `team` (bob may run it, carol may view it); their paths and the runs' ids."""
    root: Path = roles_server.root
    names = {kind: f"{request.node.name}-{kind}.ipynb" for kind in ("private", "team")}
    write_notebook(root / names["private"], notebook(code_cell("print('secret')", "p")))
    write_notebook(root / names["team"], notebook(code_cell("print('team')", "t")))
    await share(roles_server, names["team"], {"users": {"bob": "runner", "carol": "viewer"}})
    (private,) = await run(roles_server, names["private"], "p", token=TOKENS["alice"])
    (team,) = await run(roles_server, names["team"], "t", token=TOKENS["alice"])
    for execution_id in (private["id"], team["id"]):
        updates = await follow(roles_server, execution_id, TOKENS["alice"])
        assert updates[-1]["status"] == "ok"
    return {
        "private": private["id"],
        "team": team["id"],
        "private_path": names["private"],
        "team_path": names["team"],
    }


async def test_no_role_sees_nothing_of_a_private_run(
    roles_server: Any, shared_runs: dict[str, str]
) -> None:
    token = TOKENS["mallory"]
    hidden = {"id": shared_runs["private"]}
    answer = await query(roles_server, ONE, hidden, token)
    assert codes(answer) == ["not_found"] and answer["data"] is None
    assert shared_runs["private_path"] not in str(answer)
    listed = await query(roles_server, LIST, {}, token)
    assert listed["data"]["executions"]["edges"] == []
    for mutation, variables in ((CANCEL, hidden), (ANSWER, {**hidden, "value": "x"})):
        refused = await query(roles_server, mutation, variables, token)
        assert codes(refused) == ["not_found"] and shared_runs["private_path"] not in str(refused)
    async with ws_client(roles_server, token) as session:
        with pytest.raises(TransportQueryError) as refused_live:
            async for _ in session.subscribe(progress(hidden["id"])):
                pass
    assert shared_runs["private_path"] not in str(refused_live.value.errors)
    assert [e["extensions"]["code"] for e in refused_live.value.errors or []] == ["not_found"]
    run_there = await query(
        roles_server, RUN, {"path": shared_runs["private_path"], "cells": ["p"]}, token
    )
    assert codes(run_there) == ["forbidden"]
    # REST decides the same: the record is not found, its notebook not named.
    async with http(roles_server, "mallory") as rest:
        got = await rest.get(f"/api/datastore/executions/{shared_runs['private']}")
        listed_rest = await rest.get("/api/datastore/executions")
    assert got.status_code == 404 and shared_runs["private_path"] not in got.text
    assert listed_rest.json()["executions"] == []


async def test_a_viewer_reads_runs_but_may_not_run_or_cancel(
    roles_server: Any, shared_runs: dict[str, str]
) -> None:
    token = TOKENS["carol"]
    seen = await query(roles_server, ONE, {"id": shared_runs["team"]}, token)
    assert text_of(seen["data"]["execution"]["outputs"]) == "team\n"
    # A finished run is followed as it is, once, and the subscription ends.
    (only,) = await follow(roles_server, shared_runs["team"], token)
    assert only == seen["data"]["execution"]
    team = shared_runs["team_path"]
    listed = await query(roles_server, LIST, {}, token)
    assert shared_runs["private"] not in str(listed)
    listed = await query(roles_server, LIST, {"path": team}, token)
    assert [e["node"]["id"] for e in listed["data"]["executions"]["edges"]] == [shared_runs["team"]]
    refused = await query(roles_server, RUN, {"path": team, "cells": ["t"]}, token)
    assert codes(refused) == ["forbidden"] and refused["data"] is None
    cancel = await query(roles_server, CANCEL, {"id": shared_runs["team"]}, token)
    assert codes(cancel) == ["forbidden"]
    after = await query(roles_server, LIST, {"path": team}, TOKENS["alice"])
    assert len(after["data"]["executions"]["edges"]) == 1  # nothing more was queued


async def test_a_runner_runs_a_shared_notebook(
    roles_server: Any, shared_runs: dict[str, str]
) -> None:
    token = TOKENS["bob"]
    team = shared_runs["team_path"]
    (queued,) = await run(roles_server, team, "t", token=token)
    updates = await follow(roles_server, queued["id"], token)
    assert updates[-1]["status"] == "ok" and text_of(updates[-1]["outputs"]) == "team\n"
    listed = await query(roles_server, LIST, {"path": team, "status": "ok"}, token)
    ids = {e["node"]["id"] for e in listed["data"]["executions"]["edges"]}
    assert ids == {queued["id"], shared_runs["team"]}
