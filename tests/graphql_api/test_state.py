"""The `stateChanges` subscription as people with roles see it: only what concerns the
documents they may view, and live when a rule changes what that is."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import pytest
from gql import gql
from graphqls import ws_client
from notebooks import code_cell, notebook, write_notebook
from roles import TOKENS, http, share

pytestmark = pytest.mark.timeout(180)

SUBSCRIPTION = gql("subscription { stateChanges { state changes { map key value } } }")


def session_paths(state: dict[str, Any]) -> set[str]:
    return {session["path"] for session in state["sessions"].values()}


async def test_a_user_sees_a_private_session_only_once_it_is_shared(roles_server: Any) -> None:
    path = "state-private.ipynb"
    write_notebook(roles_server.root / path, notebook(code_cell("1", "c1")))
    async with http(roles_server, "alice") as alice:
        body = {"path": path, "type": "notebook", "kernel": {"name": "python3"}}
        created = await alice.post("/api/sessions", json=body)
        assert created.status_code == 201, created.text
        session = created.json()
        try:
            async with (
                ws_client(roles_server, TOKENS["alice"]) as owner,
                aclosing(owner.subscribe(SUBSCRIPTION)) as alices,
            ):
                first = await anext(alices)
                assert path in session_paths(first["stateChanges"]["state"])
            # Each subscription ends before its session closes (else gql waits 10 s for it).
            async with (
                ws_client(roles_server, TOKENS["mallory"]) as mallory,
                aclosing(mallory.subscribe(SUBSCRIPTION)) as updates,
            ):
                state = (await anext(updates))["stateChanges"]["state"]
                assert path not in session_paths(state)
                assert session["kernel"]["id"] not in state["kernels"]
                await share(roles_server, path, {"users": {"mallory": "viewer"}})
                async for update in updates:  # the rule's change, with no write of the state
                    changes = update["stateChanges"]["changes"]
                    if any(c["map"] == "sessions" and c["key"] == session["id"] for c in changes):
                        break
                await share(roles_server, path, {"users": {"mallory": "none"}})
                async for update in updates:  # and gone again: the entry left (null)
                    changes = update["stateChanges"]["changes"]
                    if {"map": "sessions", "key": session["id"], "value": None} in changes:
                        break
        finally:
            await alice.delete(f"/api/sessions/{session['id']}")
