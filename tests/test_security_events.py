"""The event bus and notifications as an attack surface, on a real server with three people
(see `two_users.py`): alice owns everything (configured), bob is editor on the root, carol
viewer on the root; `private/` is alice's alone.

Finding 9: nobody posts events under the server's schemas (forged audit entries, forged
notifications), a posted event says who posted it, and a notification says who sent it and
links only to this server. Finding 8: every event delivered to a user (replay, live, batched)
is about something that user may view.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from conftest import Server
from eventsapi import EventSocket
from execapi import ExecApi
from notebooks import code_cell, notebook, write_notebook
from roles import TOKENS, http
from yclient import YClient, eventually, until

from jupyter_datastore.events.catalog import (
    CONTENTS_SERVICE,
    EXECUTION,
    KERNEL_ACTIONS,
    NOTIFICATION,
    OUR_SCHEMAS,
    PERMISSION,
)

pytestmark = pytest.mark.timeout(180)

GATEWAY_CLIENT = "https://events.jupyter.org/jupyter_server/gateway_client/v1"
SERVER_SCHEMAS = (*OUR_SCHEMAS, KERNEL_ACTIONS, CONTENTS_SERVICE, GATEWAY_CLIENT)
TEAM_SCHEMA = "https://example.org/team/deploy/v1"
SECRETS = ("private/", "secret-evalue", "secret-fork-description")

FORGED_AUDIT = {
    "action": "changed",
    "path": "private",
    "user": "alice",
    "rule": {"users": {"bob": "owner"}},
}
FORGED_NOTIFICATION = {
    "recipients": ["alice"],
    "message": "Cell c1 in analysis.ipynb failed: session expired, log in again",
    "type": "error",
    "link": "https://evil.example/jupyter/login",
}
FORGED_EXECUTION = {
    "action": "finished",
    "execution_id": "forged",
    "kernel_id": "forged",
    "status": "error",
    "user": "alice",
    "path": "analysis.ipynb",
    "error": {"ename": "SessionExpired", "evalue": "log in at https://evil.example/jupyter"},
}


@pytest.fixture(scope="module")
def server(roles_server: Server) -> Server:
    return roles_server


@pytest.fixture(scope="module")
def shared(server: Server) -> Server:
    """bob editor and carol viewer on the root, `private/` nobody's but alice's."""

    headers = {"Authorization": f"token {TOKENS['alice']}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as alice:
        for path, rule in (
            ("", {"users": {"bob": "editor", "carol": "viewer"}}),
            ("private", {"default": "none", "users": {"bob": "none", "carol": "none"}}),
        ):
            response = alice.put(f"/api/datastore/permissions/{path}", json=rule)
            assert response.status_code == 200, response.text
        response = alice.post("/api/events/schemas", json=team_schema())
        assert response.status_code in (200, 201), response.text
    return server


def team_schema() -> dict[str, Any]:
    return {
        "$id": TEAM_SCHEMA,
        "version": "1",
        "title": "a team's deploys",
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}, "path": {"type": "string"}},
    }


async def replay(client: httpx.AsyncClient, **query: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/events", params={"since": 0, "limit": 10000, **query})
    assert response.status_code == 200, response.text
    return list(response.json()["events"])


async def subscribe_as(server: Server, user: str, **query: Any) -> EventSocket:
    """One user's subscription socket."""
    return await EventSocket.connect(server.url, TOKENS[user], **query)


def leaks(events: list[dict[str, Any]], secrets: tuple[str, ...]) -> list[str]:
    """The secrets that appear anywhere in these events."""
    text = json.dumps(events)
    return [secret for secret in secrets if secret in text]


# --- finding 9: forged events ---


@pytest.mark.parametrize("user", ["bob", "alice"])
async def test_nobody_posts_under_the_servers_schemas(shared, user) -> None:
    forged = {
        PERMISSION: FORGED_AUDIT,
        NOTIFICATION: FORGED_NOTIFICATION,
        EXECUTION: FORGED_EXECUTION,
    }
    async with http(shared, user) as client:
        before = (await client.get("/api/events", params={"since": 0})).json()["last_id"]
        for schema_id in SERVER_SCHEMAS:
            body = {"schema_id": schema_id, "version": "1", "data": forged.get(schema_id, {})}
            response = await client.post("/api/events", json=body)
            assert response.status_code == 403, (schema_id, response.text)
            assert response.json()["error"] == "forbidden"
            assert schema_id in response.json()["detail"]
        stored = (await client.get("/api/events", params={"since": before})).json()["events"]
    assert not [e for e in stored if e["schema_id"] in SERVER_SCHEMAS and "forged" in json.dumps(e)]
    assert not [e for e in stored if "evil.example" in json.dumps(e)]
    async with http(shared, "alice") as alice:
        rows = (await alice.get("/api/notifications")).json()["notifications"]
    assert not [row for row in rows if "evil.example" in json.dumps(row)]


async def test_a_schema_under_a_server_id_cannot_be_registered(shared) -> None:
    async with http(shared, "alice") as alice:  # even the owner of everything
        before = (await alice.get("/api/events/schemas")).json()["schemas"]
        for schema_id in (
            PERMISSION,
            "https://events.jupyter.org/jupyter_datastore/audit/v2",
            "https://events.jupyter.org/jupyter_server/kernel_actions/v2",
            "https://schema.jupyter.org/jupyter_collaboration/session/v1",
        ):
            document = {**team_schema(), "$id": schema_id}
            response = await alice.post("/api/events/schemas", json=document)
            assert response.status_code == 403, (schema_id, response.text)
            assert schema_id in response.json()["detail"]
        assert (await alice.get("/api/events/schemas")).json()["schemas"] == before


async def test_a_posted_event_names_who_posted_it(shared) -> None:
    forged_sender = {"username": "alice"}
    data = {"status": "deployed", "__posted_by__": forged_sender}
    async with http(shared, "bob") as bob:
        response = await bob.post(
            "/api/events", json={"schema_id": TEAM_SCHEMA, "version": "1", "data": data}
        )
        assert response.status_code == 201, response.text
        posted = response.json()
        assert posted["__posted_by__"] == {"username": "bob"}
        assert posted["status"] == "deployed"
    async with http(shared, "carol") as carol:  # a viewer on the root sees the team's events
        [seen] = [
            e for e in await replay(carol, schema_id=TEAM_SCHEMA) if e["__id__"] == posted["__id__"]
        ]
    assert seen["__posted_by__"] == {"username": "bob"}
    live = await subscribe_as(shared, "carol", since=posted["__id__"] - 1)
    try:
        await until(lambda: bool(live.events), what="the replayed event")
        assert live.events[0]["__posted_by__"] == {"username": "bob"}
    finally:
        await live.close()


async def test_a_notification_names_its_sender_and_links_only_here(shared) -> None:
    async with http(shared, "bob") as bob, http(shared, "alice") as alice:
        for link in (
            "https://evil.example/jupyter/login",
            "http://evil.example",
            "//evil.example/login",
            "javascript:alert(1)",
            " javascript:alert(1)",
            "\\\\evil.example/login",
            "data:text/html,<script>alert(1)</script>",
        ):
            body = {"recipients": ["alice"], "message": "log in again", "link": link}
            response = await bob.post("/api/notifications", json=body)
            assert response.status_code == 400, (link, response.text)
            assert "link" in response.json()["detail"]
        forged = {"recipients": ["alice"], "message": "from alice", "sender": "alice"}
        assert (await bob.post("/api/notifications", json=forged)).status_code == 400
        same_origin = shared.url + "/lab/tree/shared.ipynb"
        for link in ("shared.ipynb", "/lab/tree/shared.ipynb", same_origin):
            body = {"recipients": ["alice"], "message": f"look at {link}", "link": link}
            response = await bob.post("/api/notifications", json=body)
            assert response.status_code == 201, response.text

        async def rows() -> list[dict[str, Any]]:
            found = (await alice.get("/api/notifications")).json()["notifications"]
            return [row for row in found if row["message"].startswith("look at")]

        await until_count(rows, 3)
        for row in await rows():
            assert row["sender"] == {"username": "bob"}
        everything = (await alice.get("/api/notifications")).json()["notifications"]
        assert not [row for row in everything if row["message"] in ("log in again", "from alice")]


async def until_count(rows: Any, count: int) -> None:
    async def enough() -> bool:
        return len(await rows()) >= count

    await eventually(enough)


# --- finding 8: per-user views of the event log ---


async def test_events_of_a_private_notebook_reach_only_who_may_view_it(shared) -> None:
    cell = code_cell("raise ValueError('secret-evalue')", "boom")
    write_notebook(shared.root / "private" / "secret.ipynb", notebook(cell))
    write_notebook(shared.root / "public.ipynb", notebook(code_cell("1 + 1", "one")))
    watchers = {
        "carol": await subscribe_as(shared, "carol"),
        "carol batched": await subscribe_as(shared, "carol", batch="0.05"),
        "bob": await subscribe_as(shared, "bob"),
        "alice": await subscribe_as(shared, "alice"),
    }
    alice_exec = ExecApi(shared.url, TOKENS["alice"])
    try:
        async with http(shared, "alice") as alice:
            opened = await alice.put(
                "/api/collaboration/session/private/secret.ipynb",
                json={"format": "json", "type": "notebook"},
            )
            file_id = opened.json()["fileId"]
            room = f"json:notebook:{file_id}"
            peer = await YClient.connect(shared.url, TOKENS["alice"], "private/secret.ipynb")
            fork = await alice.put(
                f"/api/collaboration/fork/{room}",
                json={"title": "t", "description": "secret-fork-description"},
            )
            assert fork.status_code == 201, fork.text
            [record] = await alice_exec.run("private/secret.ipynb", "boom")
            finished = await alice_exec.wait(record["id"])
            assert finished["status"] == "error"
            await peer.close()
            public = await YClient.connect(shared.url, TOKENS["alice"], "public.ipynb")
            await public.close()
        async with http(shared, "bob") as bob:  # a refusal on private/, in the audit trail
            refused = await bob.put(
                "/api/collaboration/session/private/secret.ipynb",
                json={"format": "json", "type": "notebook"},
            )
            assert refused.status_code == 403
            marker = await bob.post(
                "/api/events",
                json={"schema_id": TEAM_SCHEMA, "version": "1", "data": {"status": "marker"}},
            )
            assert marker.status_code == 201, marker.text
            marker_id = marker.json()["__id__"]
        for name, live in watchers.items():  # every live stream has caught up with the marker
            await until(
                lambda live=live: marker_id in [e["__id__"] for e in live.events],
                timeout=30,
                what=f"the marker at {name}",
            )
        secrets = (*SECRETS, file_id)
        seen_by_alice = watchers["alice"].events
        assert leaks(seen_by_alice, secrets) == list(secrets)  # the owner sees everything

        for name in ("carol", "carol batched", "bob"):
            assert leaks(watchers[name].events, secrets) == [], name
            # not blind: what they may view reaches them (the public notebook's events)
            assert leaks(watchers[name].events, ("public.ipynb",)) == ["public.ipynb"], name
        for user in ("carol", "bob"):
            async with http(shared, user) as client:
                assert leaks(await replay(client), secrets) == [], user
                audit = await replay(client, schema_id=PERMISSION)
                assert audit == [], user
                resumed = await subscribe_as(shared, user, since=1)  # 0: live only
                try:
                    await until(
                        lambda resumed=resumed: marker_id in [e["__id__"] for e in resumed.events],
                        timeout=30,
                        what=f"the marker in {user}'s replay",
                    )
                    assert leaks(resumed.events, secrets) == [], user
                finally:
                    await resumed.close()
                rows = (await client.get("/api/notifications")).json()["notifications"]
                assert leaks(rows, secrets) == [], user
        async with http(shared, "alice") as alice:
            everything = await replay(alice)
            assert leaks(everything, secrets) == list(secrets)
            audit = await replay(alice, schema_id=PERMISSION)
            assert [e for e in audit if e["action"] == "refused" and e["user"] == "bob"]
    finally:
        await alice_exec.close()
        for live in watchers.values():
            await live.close()


async def test_a_posted_event_naming_a_path_is_shown_by_that_path(shared) -> None:
    async with http(shared, "alice") as alice:
        response = await alice.post(
            "/api/events",
            json={
                "schema_id": TEAM_SCHEMA,
                "version": "1",
                "data": {"status": "secret-evalue", "path": "private/plan.txt"},
            },
        )
        assert response.status_code == 201, response.text
        event_id = response.json()["__id__"]
        assert event_id in [e["__id__"] for e in await replay(alice, schema_id=TEAM_SCHEMA)]
    for user in ("bob", "carol"):
        async with http(shared, user) as client:
            assert event_id not in [e["__id__"] for e in await replay(client)], user
