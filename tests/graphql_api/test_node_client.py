"""A real Node GraphQL client (npm `graphql-ws` on `ws`, tests/js/graphql_client.mjs):
a query, and a subscription that sees a kernel started over REST."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from test_node_client import JS_DIR, check_node_modules, node_executable, stop_process

SCRIPT = JS_DIR / "graphql_client.mjs"


async def run_node(server: Any, query: str, wait_for: str = "") -> asyncio.subprocess.Process:
    args = [f"--url={server.url}", f"--token={server.token}", f"--query={query}"]
    if wait_for:
        args.append(f"--wait-for={wait_for}")
    return await asyncio.create_subprocess_exec(
        node_executable(),
        str(SCRIPT),
        *args,
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def results_of(node: asyncio.subprocess.Process) -> list[dict[str, Any]]:
    try:
        out, err = await asyncio.wait_for(node.communicate(), 60)
    finally:
        await stop_process(node)
    assert node.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines() if line]


async def test_a_query_from_node(server: Any) -> None:
    check_node_modules()
    results = await results_of(await run_node(server, "{ status { sessionId } }"))
    session_id = server.get("/api/datastore/status")["sessionId"]
    assert results == [{"data": {"status": {"sessionId": session_id}}}]


async def test_a_subscription_from_node_sees_a_kernel_start(server: Any) -> None:
    """The Node client's first result is the state; a kernel started after it arrives as
    a change (the client exits on seeing its id)."""
    check_node_modules()
    query = "subscription { stateChanges { state changes { map key } } }"
    node = await run_node(server, query, wait_for='"map":"kernels"')
    assert node.stdout is not None
    first = json.loads(await asyncio.wait_for(node.stdout.readline(), 60))
    headers = {"Authorization": f"token {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as http:
        kernel_id = (await http.post("/api/kernels", json={"name": "python3"})).json()["id"]
        try:
            results = await results_of(node)
        finally:
            await http.delete(f"/api/kernels/{kernel_id}")
    assert kernel_id not in first["data"]["stateChanges"]["state"]["kernels"]
    changes = results[-1]["data"]["stateChanges"]["changes"]
    assert {"map": "kernels", "key": kernel_id} in changes
