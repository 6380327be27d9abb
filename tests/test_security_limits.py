"""Limits that keep one client from hurting the others or the server, on a real server with
three people (alice owns everything, bob and carol get what alice shares).

Awareness entries are bound to the socket that introduced them and bounded per socket;
refusal audit events are aggregated; deeply nested JSON is a 400; a viewer's frames are
small, refused at the frame header.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import websockets
from notebooks import code_cell, notebook, read_notebook, write_notebook
from pycrdt import Array
from roles import TOKENS, http, share
from yclient import YClient, eventually, until

from jupyter_datastore.protocol.awareness import AwarenessEntry, encode_awareness_update
from jupyter_datastore.protocol.messages import awareness_message, sync_update

pytestmark = pytest.mark.timeout(180)

PERMISSION = "https://events.jupyter.org/jupyter_datastore/permission/v1"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(roles_server: Any) -> Any:
    return roles_server


async def shared_notebook(server: Any, name: str, users: dict[str, str]) -> None:
    write_notebook(server.root / name, notebook(code_cell("x = 1", "c1")))
    await share(server, name, {"users": users})


async def connect(server: Any, user: str, path: str) -> YClient:
    return await YClient.connect(server.url, TOKENS[user], path)


def awareness(entries: list[tuple[int, int, Any]]) -> bytes:
    update = [AwarenessEntry(cid, clock, json.dumps(state)) for cid, clock, state in entries]
    return awareness_message(encode_awareness_update(update))


async def send_until_closed(client: YClient, messages: list[bytes]) -> None:
    """Send each message unless the server has closed the socket meanwhile."""
    for message in messages:
        if client.closed.is_set():
            return
        try:
            await client.send(message)
        except websockets.ConnectionClosed:
            return


async def close_all(*clients: YClient) -> None:
    for client in clients:
        await client.close()


# --- 10: awareness ---


async def test_an_awareness_flood_closes_only_its_sender(server) -> None:
    await shared_notebook(server, "flood.ipynb", {"bob": "editor", "carol": "viewer"})
    alice, carol = (
        await connect(server, "alice", "flood.ipynb"),
        await connect(server, "carol", "flood.ipynb"),
    )
    bob = await connect(server, "bob", "flood.ipynb")  # an editor: frames up to 64 MB
    try:
        big = "x" * 60_000
        flood = [
            awareness([(1_000_000 + 250 * n + i, 1, {"junk": big}) for i in range(250)])
            for n in range(8)
        ]
        await send_until_closed(bob, flood)
        code, reason = await bob.wait_closed(timeout=60)
        assert code == 4400 and json.loads(reason)["error"] == "bad_request", (code, reason)
        # The others stay, saw none of it, and still see each other.
        assert not alice.closed.is_set() and not carol.closed.is_set()
        await carol.set_awareness(carol.doc.client_id, 1, {"user": {"name": "carol"}})
        await until(lambda: carol.doc.client_id in alice.awareness, what="carol's presence")
        assert not any(1_000_000 <= cid < 1_002_000 for cid in alice.awareness)
        assert not alice.closed.is_set() and not carol.closed.is_set()
    finally:
        await close_all(alice, bob, carol)


async def test_a_peer_cannot_overwrite_anothers_awareness(server) -> None:
    await shared_notebook(server, "spoof.ipynb", {"bob": "editor", "carol": "viewer"})
    alice, bob = (
        await connect(server, "alice", "spoof.ipynb"),
        await connect(server, "bob", "spoof.ipynb"),
    )
    carol = await connect(server, "carol", "spoof.ipynb")
    try:
        bob_id, carol_id = bob.doc.client_id, carol.doc.client_id
        await bob.set_awareness(bob_id, 1, {"user": {"name": "bob"}})
        await until(lambda: bob_id in alice.awareness and bob_id in carol.awareness)
        # carol rewrites bob's entry (a higher clock) and sets her own, in one message.
        spoof = awareness(
            [(bob_id, 9, {"user": {"name": "mallory"}}), (carol_id, 1, {"user": {"name": "carol"}})]
        )
        await carol.send(spoof)
        await until(lambda: carol_id in alice.awareness, what="carol's own entry at alice")
        # ... and removes it: dropped as well.
        await carol.send(
            awareness([(bob_id, 10, None), (carol_id, 2, {"user": {"name": "carol2"}})])
        )
        await until(lambda: alice.awareness[carol_id]["user"]["name"] == "carol2")
        assert alice.awareness[bob_id] == {"user": {"name": "bob"}}
        assert not carol.closed.is_set()  # clients echo others' entries: not an error
        # A newcomer's snapshot has the real entry too.
        late = await connect(server, "alice", "spoof.ipynb")
        await until(lambda: bob_id in late.awareness, what="the snapshot")
        assert late.awareness[bob_id] == {"user": {"name": "bob"}}
        await late.close()
    finally:
        await close_all(alice, bob, carol)


async def test_a_peer_may_introduce_only_a_few_clients(server) -> None:
    await shared_notebook(server, "clients.ipynb", {"bob": "editor"})
    alice, bob = (
        await connect(server, "alice", "clients.ipynb"),
        await connect(server, "bob", "clients.ipynb"),
    )
    try:
        await bob.send(awareness([(500 + i, 1, {"n": i}) for i in range(8)]))
        await until(lambda: all(500 + i in alice.awareness for i in range(8)))
        await send_until_closed(bob, [awareness([(600, 1, {"n": 9})])])  # a ninth
        code, reason = await bob.wait_closed()
        assert code == 4400 and json.loads(reason)["error"] == "bad_request", reason
        assert "client" in json.loads(reason)["detail"]
        await until(lambda: not any(500 <= cid <= 600 for cid in alice.awareness))
        assert not alice.closed.is_set()
    finally:
        await close_all(alice, bob)


# --- 11: refusal events are aggregated ---


def store_bytes(server: Any) -> int:
    folder = Path(server.root) / ".jupyter"
    return sum(f.stat().st_size for f in folder.glob("datastore.db*"))


async def test_repeated_refusals_are_one_counted_event(server) -> None:
    before = store_bytes(server)
    body = {"format": "json", "type": "notebook"}
    async with http(server, "carol") as carol:
        for n in range(300):
            # Paths as long as the server takes (4096), in names of a file system's size.
            path = f"refused-{n}/" + ("p" * 199 + "/") * 19 + "x.ipynb"
            response = await carol.put(f"/api/collaboration/session/{path}", json=body)
            assert response.status_code == 403
            assert len(response.text) < 4096  # the message names a shortened path

    async with http(server, "alice") as alice:

        async def counted() -> list[dict[str, Any]] | None:
            url = f"/api/events?schema_id={urllib.parse.quote(PERMISSION)}&limit=10000"
            events = (await alice.get(url)).json()["events"]
            ours = [
                e
                for e in events
                if e.get("action") == "refused"
                and e.get("user") == "carol"
                and e.get("path", "").startswith("refused-")
            ]
            total = sum(e.get("count", 1) for e in ours)
            assert total <= 300, total
            return ours if total == 300 else None

        events = await eventually(counted, timeout=60)
    assert 2 <= len(events) <= 4, [e.get("count") for e in events]
    assert events[0]["count"] == 1  # the first refusal at once
    assert all(len(e["path"]) <= 1024 for e in events)
    assert all(e["operation"] == "open" and e["needed"] == "viewer" for e in events)
    assert store_bytes(server) - before < 256 * 1024  # 300 events would be 1.2 MB


# --- 14: deeply nested JSON ---


def nested_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


async def test_deeply_nested_json_is_a_bad_request(server) -> None:
    targets = [
        ("POST", "/api/datastore/executions"),
        ("PUT", "/api/datastore/permissions/x"),
        ("PUT", "/api/collaboration/session/x"),
        ("POST", "/api/kernels/00000000-0000-0000-0000-000000000000/execute"),
        ("POST", "/api/events"),
        ("PUT", "/api/collaboration/fork/json:notebook:0000"),
    ]
    async with http(server, "alice") as alice:
        for body in (nested_list(300_000), nested_object(60_000), nested_list(65)):
            for method, url in targets:
                response = await alice.request(
                    method, url, content=body, headers={"Content-Type": "application/json"}
                )
                assert response.status_code == 400, (method, url, response.text[:300])
                answer = response.json()
                assert answer["error"] == "bad_request" and "64" in answer["detail"], answer
        deep = urllib.parse.quote(nested_list(5_000))
        response = await alice.get(f"/api/events?filter={deep}")
        assert response.status_code == 400, response.text[:300]
        assert response.json()["error"] == "bad_request"
        # 64 levels are fine (an unknown schema id: a 400, but not about nesting).
        ok = await alice.get(f"/api/events?filter={urllib.parse.quote(nested_list(64))}")
        assert "64" not in ok.json().get("detail", ""), ok.text


async def test_a_nested_subscription_message_is_answered_with_an_error(server) -> None:
    url = server.url.replace("http", "ws", 1) + "/api/events/subscribe?token=alice-token"
    async with websockets.connect(url) as socket:
        await socket.send(nested_list(30_000))
        answer = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert answer["__control__"] == "error" and "64" in answer["detail"], answer
        await socket.send(json.dumps({"type": "subscribe", "since": 0}))
        answer = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert answer["__control__"] == "subscribed", answer


# --- 15: a viewer's frames are small ---


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def type_into(client: YClient, text: str) -> None:
    source = client.doc.get("cells", type=Array)[0]["source"]
    source += text


def cell_source(client: YClient) -> str:
    return str(client.doc.get("cells", type=Array)[0]["source"])


async def test_a_viewers_large_frame_is_refused_at_its_header(server) -> None:
    await shared_notebook(server, "big.ipynb", {"bob": "editor", "carol": "viewer"})
    alice, bob = (
        await connect(server, "alice", "big.ipynb"),
        await connect(server, "bob", "big.ipynb"),
    )
    carol = await connect(server, "carol", "big.ipynb")
    try:
        pid = server.process.pid
        reset_peak_rss(pid)
        before = peak_rss(pid)
        await send_until_closed(carol, [sync_update(b"\x01" * (20 * MB))])
        code, _ = await carol.wait_closed(timeout=60)
        assert code == 1009
        grown = peak_rss(pid) - before
        assert grown < 8 * MB, grown / MB
        # An editor still sends a 2 MB change.
        type_into(bob, "y" * (2 * MB))
        await until(lambda: len(cell_source(alice)) > 2 * MB, timeout=60, what="bob's 2 MB")
        assert not bob.closed.is_set()
    finally:
        await close_all(alice, bob, carol)


async def test_a_promoted_viewer_gets_the_full_limit_on_the_next_message(server) -> None:
    await shared_notebook(server, "promote.ipynb", {"carol": "viewer"})
    alice, carol = (
        await connect(server, "alice", "promote.ipynb"),
        await connect(server, "carol", "promote.ipynb"),
    )
    try:
        await share(server, "promote.ipynb", {"users": {"carol": "editor"}})
        type_into(carol, "z" * (2 * MB))
        await until(lambda: len(cell_source(alice)) > 2 * MB, timeout=60, what="carol's 2 MB")
        assert not carol.closed.is_set()
        path = server.root / "promote.ipynb"
        await until(lambda: "zzz" in "".join(read_notebook(path)["cells"][0]["source"]), 60)
    finally:
        await close_all(alice, carol)
