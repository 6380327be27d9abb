"""The event log and notifications over GraphQL, on a real server with named people (see
`roles.py`): alice owns everything, carol is viewer on the root, bob viewer on
`shared.ipynb` only, mallory has no role at all. What each gets is what REST gives them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import httpx
import pytest
from conftest import Server
from gql import GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from graphqls import LEGACY_WS, TRANSPORT_WS, http_client, ws_client
from notebooks import code_cell, notebook
from roles import TOKENS, http
from yclient import eventually

from jupyter_datastore.events.catalog import CONTENTS_SERVICE, NOTIFICATION, PERMISSION

pytestmark = pytest.mark.timeout(180)

SCHEMA_ID = "https://example.org/tests/graphql/build/v1"
WAIT = 30.0  # seconds a subscription may take to give its next result

EVENT_FIELDS = "id schemaId version timestamp data postedBy"
EVENTS = f"""
query ($since: ID, $after: String, $filter: JSON, $schemaIds: [String!], $first: Int) {{
  events(since: $since, after: $after, filter: $filter, schemaIds: $schemaIds, first: $first) {{
    edges {{ cursor node {{ {EVENT_FIELDS} }} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""
POST_EVENT = f"""
mutation ($schemaId: String!, $version: String!, $data: JSON!) {{
  postEvent(schemaId: $schemaId, version: $version, data: $data) {{ {EVENT_FIELDS} }}
}}
"""
EVENTS_LIVE = f"""
subscription ($since: ID, $filter: JSON, $schemaIds: [String!]) {{
  events(since: $since, filter: $filter, schemaIds: $schemaIds) {{ {EVENT_FIELDS} }}
}}
"""
NOTIFICATION_FIELDS = (
    "id type message link path cellId data source sender read readAt createdAt eventId"
)
NOTIFICATIONS = f"""
query ($unreadOnly: Boolean!, $first: Int) {{
  notifications(unreadOnly: $unreadOnly, first: $first) {{ {NOTIFICATION_FIELDS} }}
}}
"""
MARK = f"""
mutation ($id: ID!, $read: Boolean!) {{
  markNotification(id: $id, read: $read) {{ {NOTIFICATION_FIELDS} }}
}}
"""
DELETE = "mutation ($id: ID!) { deleteNotification(id: $id) }"
NOTIFICATIONS_LIVE = f"""
subscription ($since: String) {{
  notifications(since: $since) {{ kind id notification {{ {NOTIFICATION_FIELDS} }} }}
}}
"""


@pytest.fixture(scope="module")
def server(roles_server: Server) -> Server:
    """carol viewer on the root, bob viewer on `shared.ipynb`, a client schema registered."""
    headers = {"Authorization": f"token {TOKENS['alice']}"}
    with httpx.Client(base_url=roles_server.url, headers=headers, timeout=60) as alice:
        for path, rule in (
            ("", {"users": {"carol": "viewer"}}),
            ("shared.ipynb", {"users": {"bob": "viewer"}}),
        ):
            response = alice.put(f"/api/datastore/permissions/{path}", json=rule)
            assert response.status_code == 200, response.text
        response = alice.post("/api/events/schemas", json=build_schema())
        assert response.status_code in (200, 201), response.text
    return roles_server


def build_schema() -> dict[str, Any]:
    return {
        "$id": SCHEMA_ID,
        "version": "1",
        "title": "builds, for GraphQL tests",
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["ok", "failed"]},
            "target": {"type": "string"},
            "path": {"type": "string"},
        },
    }


# --- helpers ---


def codes(answer: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in answer.get("errors") or []]


def request(text: str, **variables: Any) -> GraphQLRequest:
    """An operation with its variables (gql deprecates passing them to `execute`)."""
    return GraphQLRequest(text, variable_values=variables or None)


async def as_user(server: Server, user: str, text: str, **variables: Any) -> dict[str, Any]:
    """One GraphQL operation over HTTP as `user`: `{"data"}` or `{"errors", "data"}`."""
    async with http_client(server, TOKENS[user]) as session:
        try:
            return {"data": await session.execute(request(text, **variables))}
        except TransportQueryError as exc:
            return {"errors": exc.errors or [], "data": exc.data}


async def post_rest(server: Server, user: str, data: dict[str, Any]) -> dict[str, Any]:
    """POST /api/events as `user`; the stored event as REST gives it."""
    async with http(server, user) as client:
        body = {"schema_id": SCHEMA_ID, "version": "1", "data": data}
        response = await client.post("/api/events", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())


async def post_graphql(server: Server, user: str, data: dict[str, Any]) -> dict[str, Any]:
    """postEvent as `user`; the event as GraphQL gives it."""
    answer = await as_user(server, user, POST_EVENT, schemaId=SCHEMA_ID, version="1", data=data)
    assert "errors" not in answer, answer
    return dict(answer["data"]["postEvent"])


async def rest_events(server: Server, user: str, since: int, **query: Any) -> list[dict[str, Any]]:
    """GET /api/events as `user`: the events after `since` of their view."""
    async with http(server, user) as client:
        params = {"since": since, "limit": 10000, **query}
        response = await client.get("/api/events", params=params)
        assert response.status_code == 200, response.text
        return list(response.json()["events"])


async def graphql_events(server: Server, user: str, since: int, **variables: Any) -> list[Any]:
    """The events query as `user`: the events after `since` (at most 1000)."""
    answer = await as_user(server, user, EVENTS, since=str(since), first=1000, **variables)
    assert "errors" not in answer, answer
    return [edge["node"] for edge in answer["data"]["events"]["edges"]]


async def last_event_id(server: Server) -> int:
    """The id of the newest event now (alice sees them all): later ones are after it."""
    return int((await post_rest(server, "alice", {"status": "ok", "target": "mark"}))["__id__"])


@asynccontextmanager
async def subscription(
    server: Server, user: str, text: str, subprotocol: str = TRANSPORT_WS, **variables: Any
) -> AsyncIterator[AsyncGenerator[dict[str, Any], None]]:
    """A subscription of `user` over its own WebSocket, with `subprotocol`; it starts with
    the first result asked for, and ends (the client stops it) when the block is left."""
    async with (
        ws_client(server, TOKENS[user], subprotocol) as session,
        aclosing(session.subscribe(request(text, **variables))) as results,
    ):
        yield results


async def next_result(results: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return await asyncio.wait_for(anext(results), WAIT)


async def notify(server: Server, recipients: list[str], message: str, **extra: Any) -> int:
    """Alice notifies `recipients` (POST /api/notifications); the id of the event."""
    async with http(server, "alice") as alice:
        body = {"recipients": recipients, "message": message, **extra}
        response = await alice.post("/api/notifications", json=body)
        assert response.status_code == 201, response.text
        return int(response.json()["event_id"])


async def row_of(server: Server, user: str, event_id: int) -> dict[str, Any]:
    """`user`'s notification made from an event, over REST, once it is there."""

    async def find() -> list[dict[str, Any]]:
        async with http(server, user) as client:
            response = await client.get("/api/notifications", params={"limit": 1000})
            rows = response.json()["notifications"]
        return [row for row in rows if row["event_id"] == event_id]

    [row] = await eventually(find)
    return dict(row)


# --- events: query and mutation ---


async def test_an_event_posted_over_graphql_is_read_over_rest_and_the_reverse(server) -> None:
    posted = await post_graphql(server, "alice", {"status": "ok", "target": "graphql"})
    assert posted["schemaId"] == SCHEMA_ID and posted["version"] == "1"
    assert posted["data"] == {"status": "ok", "target": "graphql"}  # no __posted_by__ in data
    assert posted["postedBy"] == "alice" and posted["timestamp"].endswith("Z")
    event_id = int(posted["id"])

    [over_rest] = await rest_events(server, "alice", event_id - 1, schema_id=SCHEMA_ID)
    assert over_rest["__id__"] == event_id and over_rest["__timestamp__"] == posted["timestamp"]
    assert over_rest["target"] == "graphql" and over_rest["__posted_by__"] == {"username": "alice"}

    from_rest = await post_rest(server, "alice", {"status": "failed", "target": "rest"})
    [over_graphql] = await graphql_events(server, "alice", event_id, schemaIds=[SCHEMA_ID])
    assert over_graphql == {
        "id": str(from_rest["__id__"]),
        "schemaId": SCHEMA_ID,
        "version": "1",
        "timestamp": from_rest["__timestamp__"],
        "data": {"status": "failed", "target": "rest"},
        "postedBy": "alice",
    }


async def test_events_are_paged_with_first_and_after(server) -> None:
    mark = await last_event_id(server)
    posted = [
        await post_rest(server, "alice", {"status": "ok", "target": f"page-{n}"}) for n in range(5)
    ]
    ids = [str(event["__id__"]) for event in posted]

    pages: list[list[str]] = []
    variables: dict[str, Any] = {"since": str(mark), "schemaIds": [SCHEMA_ID], "first": 2}
    while True:
        answer = await as_user(server, "alice", EVENTS, **variables)
        assert "errors" not in answer, answer
        connection = answer["data"]["events"]
        page = [edge["node"]["id"] for edge in connection["edges"]]
        assert [edge["cursor"] for edge in connection["edges"]] == page
        info = connection["pageInfo"]
        if not page:
            assert info == {"hasNextPage": False, "endCursor": None}
            break
        assert info["endCursor"] == page[-1]
        pages.append(page)
        if not info["hasNextPage"]:
            break
        variables = {"after": info["endCursor"], "schemaIds": [SCHEMA_ID], "first": 2}
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]
    # After the last page: nothing, and no cursor.
    answer = await as_user(server, "alice", EVENTS, after=ids[-1], schemaIds=[SCHEMA_ID])
    assert answer["data"]["events"] == {
        "edges": [],
        "pageInfo": {"hasNextPage": False, "endCursor": None},
    }
    # An id as an argument may be a number too.
    arguments = f'since: {ids[3]}, schemaIds: ["{SCHEMA_ID}"], first: 1'
    literal = f"{{ events({arguments}) {{ edges {{ node {{ id }} }} }} }}"
    answer = await as_user(server, "alice", literal)
    assert answer["data"]["events"]["edges"] == [{"node": {"id": ids[4]}}]
    # A filter as REST takes it.
    match = {"schema_ids": [SCHEMA_ID], "match": {"target": "page-3"}}
    [third] = await graphql_events(server, "alice", mark, filter=match)
    assert third["id"] == ids[3]
    rest = await rest_events(server, "alice", mark, filter=json.dumps(match))
    assert [str(event["__id__"]) for event in rest] == [ids[3]]


async def test_only_editors_on_the_root_post_events(server) -> None:
    mark = await last_event_id(server)
    for user in ("mallory", "carol", "bob"):  # no role, viewer on the root, viewer of a file
        answer = await as_user(
            server, user, POST_EVENT, schemaId=SCHEMA_ID, version="1", data={"status": "ok"}
        )
        assert codes(answer) == ["forbidden"] and answer["data"] is None, (user, answer)
    # Nobody posts under the server's schemas, not even its owner.
    for schema_id in (PERMISSION, NOTIFICATION):
        forged = {"action": "changed", "path": "", "user": "alice", "recipients": ["bob"]}
        answer = await as_user(
            server, "alice", POST_EVENT, schemaId=schema_id, version="1", data=forged
        )
        assert codes(answer) == ["forbidden"], answer
    assert await rest_events(server, "alice", mark, schema_id=SCHEMA_ID) == []
    assert await rest_events(server, "alice", mark, schema_id=NOTIFICATION) == []


async def test_a_user_sees_only_events_about_what_they_may_view(server) -> None:
    """alice saves a private notebook and posts about it and about `shared.ipynb`: mallory
    (no role) gets none of it, in the query nor live; bob only what is about his notebook;
    each user's GraphQL events are exactly their REST events."""
    mark = await last_event_id(server)
    async with subscription(server, "mallory", EVENTS_LIVE, since=str(mark)) as live:
        started = asyncio.ensure_future(next_result(live))  # starts the subscription
        async with http(server, "alice") as alice:
            model = {
                "type": "notebook",
                "format": "json",
                "content": notebook(code_cell("1", "c1")),
            }
            response = await alice.put("/api/contents/private.ipynb", json=model)
            assert response.status_code in (200, 201), response.text

            async def saved() -> list[dict[str, Any]]:
                events = await rest_events(server, "alice", mark, schema_id=CONTENTS_SERVICE)
                return [e for e in events if e.get("path") == "private.ipynb"]

            await eventually(saved)  # stored before what follows
        await post_rest(server, "alice", {"status": "failed", "path": "private.ipynb"})
        about_shared = await post_rest(server, "alice", {"status": "ok", "path": "shared.ipynb"})
        sentinel = await notify(server, ["mallory"], "a notification for mallory")

        # Live: the first event mallory gets is her notification; nothing came before it.
        first = await asyncio.wait_for(started, WAIT)
        assert first["events"]["schemaId"] == NOTIFICATION
        assert int(first["events"]["id"]) == sentinel

    mallorys = await graphql_events(server, "mallory", mark)
    assert [int(event["id"]) for event in mallorys] == [sentinel]
    assert "private.ipynb" not in json.dumps(mallorys)

    for user in ("alice", "bob", "carol", "mallory"):
        over_graphql = [int(event["id"]) for event in await graphql_events(server, user, mark)]
        over_rest = [event["__id__"] for event in await rest_events(server, user, mark)]
        assert over_graphql == over_rest, user
    bobs = await graphql_events(server, "bob", mark)
    assert [int(event["id"]) for event in bobs] == [about_shared["__id__"]]
    alices = await graphql_events(server, "alice", mark, schemaIds=[CONTENTS_SERVICE])
    assert any(event["data"].get("path") == "private.ipynb" for event in alices)


# --- events: the subscription ---


@pytest.mark.parametrize("subprotocol", [TRANSPORT_WS, LEGACY_WS])
async def test_the_subscription_gives_stored_then_live_events_and_resumes(
    server, subprotocol: str
) -> None:
    """Events after `since` first, then live ones, in id order, none twice; once away, a
    subscription with the last id received gets what was missed and goes on live."""
    mine = {"match": {"target": subprotocol}}  # this test's events only
    mark = await last_event_id(server)
    stored = await post_rest(server, "alice", {"status": "ok", "target": subprotocol})
    received: list[int] = []
    variables = {"since": str(mark), "filter": mine, "schemaIds": [SCHEMA_ID]}
    async with subscription(server, "alice", EVENTS_LIVE, subprotocol, **variables) as results:
        first = (await next_result(results))["events"]
        assert int(first["id"]) == stored["__id__"] and first["postedBy"] == "alice"
        received.append(int(first["id"]))
        for status in ("ok", "failed"):  # live, through the mutation
            posted = await post_graphql(server, "alice", {"status": status, "target": subprotocol})
            event = (await next_result(results))["events"]
            assert event == posted
            received.append(int(event["id"]))
    missed = await post_rest(server, "alice", {"status": "ok", "target": subprotocol})

    variables = {"since": str(received[-1]), "filter": mine}
    async with subscription(server, "alice", EVENTS_LIVE, subprotocol, **variables) as results:
        resumed = (await next_result(results))["events"]
        assert int(resumed["id"]) == missed["__id__"]
        received.append(int(resumed["id"]))
        posted = await post_rest(server, "alice", {"status": "failed", "target": subprotocol})
        live = (await next_result(results))["events"]
        assert int(live["id"]) == posted["__id__"] and live["data"]["status"] == "failed"
        received.append(int(live["id"]))
    assert received == sorted(set(received)) and len(received) == 5


# --- bad input ---


async def test_bad_input_is_refused_clearly_and_changes_nothing(server) -> None:
    mark = await last_event_id(server)
    bad_queries: list[tuple[dict[str, Any], str]] = [
        ({"filter": "not an object"}, "filter"),
        ({"filter": {"colour": 1}}, "unknown filter"),
        ({"filter": {"match": {"target": {"nested": 1}}}}, "match"),
        ({"since": "-1"}, "since"),
        ({"since": "1e3"}, "since"),
        ({"since": str(2**63)}, "since"),
        ({"after": "not-a-cursor"}, "after"),
        ({"since": "1", "after": "2"}, "not both"),
        ({"first": 0}, "first"),
        ({"first": 1001}, "first"),
    ]
    for variables, says in bad_queries:
        answer = await as_user(server, "alice", EVENTS, **variables)
        assert codes(answer) == ["bad_request"], (variables, answer)
        assert says in answer["errors"][0]["message"], (variables, answer)
        assert answer["data"] is None

    bad_posts: list[tuple[dict[str, Any], str]] = [
        (
            {"schemaId": "https://example.org/not/registered/v1", "data": {"status": "ok"}},
            "register",
        ),
        ({"schemaId": SCHEMA_ID, "version": "2", "data": {"status": "ok"}}, "version"),
        ({"schemaId": SCHEMA_ID, "data": {"status": "maybe"}}, "does not match"),
        ({"schemaId": SCHEMA_ID, "data": ["not", "an", "object"]}, "object"),
    ]
    for variables, says in bad_posts:
        answer = await as_user(server, "alice", POST_EVENT, **{"version": "1", **variables})
        assert codes(answer) == ["bad_request"], (variables, answer)
        assert says in answer["errors"][0]["message"], (variables, answer)
    assert await rest_events(server, "alice", mark, schema_id=SCHEMA_ID) == []

    for text in (MARK, DELETE):
        unknown = {"id": "00000000-0000-0000-0000-000000000000", "read": True}
        answer = await as_user(server, "alice", text, **unknown)
        assert codes(answer) == ["not_found"], answer

    async with ws_client(server, TOKENS["alice"]) as session:
        for text, variables in (
            (EVENTS_LIVE, {"since": "-1"}),
            (EVENTS_LIVE, {"filter": ["a", "list"]}),
            (NOTIFICATIONS_LIVE, {"since": "yesterday"}),
        ):
            with pytest.raises(TransportQueryError) as refused:
                await next_result(session.subscribe(request(text, **variables)))
            errors = refused.value.errors or []
            assert [e["extensions"]["code"] for e in errors] == ["bad_request"], errors


# --- notifications ---


async def test_notifications_are_listed_marked_and_deleted_by_their_recipient_only(
    server,
) -> None:
    event_id = await notify(server, ["bob"], "look at this", type="warning", link="shared.ipynb")
    row = await row_of(server, "bob", event_id)
    answer = await as_user(server, "bob", NOTIFICATIONS, unreadOnly=True)
    [mine] = [n for n in answer["data"]["notifications"] if n["id"] == row["id"]]
    assert mine == {
        "id": row["id"],
        "type": "warning",
        "message": "look at this",
        "link": "shared.ipynb",
        "path": None,
        "cellId": None,
        "data": None,
        "source": None,
        "sender": "alice",
        "read": False,
        "readAt": None,
        "createdAt": row["created_at"],
        "eventId": str(event_id),
    }

    # Mallory: not in her list; by id it is missing, for marking and deleting alike.
    answer = await as_user(server, "mallory", NOTIFICATIONS, unreadOnly=False, first=1000)
    assert row["id"] not in json.dumps(answer)
    for text in (MARK, DELETE):
        answer = await as_user(server, "mallory", text, id=row["id"], read=True)
        assert codes(answer) == ["not_found"] and answer["data"] is None, answer
    assert await row_of(server, "bob", event_id) == row  # untouched

    # Bob marks it read: REST sees it; unread-only lists leave it out.
    answer = await as_user(server, "bob", MARK, id=row["id"], read=True)
    marked = answer["data"]["markNotification"]
    assert marked["read"] is True and marked["readAt"]
    async with http(server, "bob") as bob:
        over_rest = (await bob.get(f"/api/notifications/{row['id']}")).json()
        assert over_rest["read"] is True and over_rest["read_at"] == marked["readAt"]
        unread = await as_user(server, "bob", NOTIFICATIONS, unreadOnly=True, first=1000)
        assert row["id"] not in [n["id"] for n in unread["data"]["notifications"]]

        answer = await as_user(server, "bob", DELETE, id=row["id"])
        assert answer["data"] == {"deleteNotification": row["id"]}
        assert (await bob.get(f"/api/notifications/{row['id']}")).status_code == 404


async def test_a_notification_arrives_live_on_its_recipients_subscription_only(server) -> None:
    start = (await row_of(server, "bob", await notify(server, ["bob"], "before")))["created_at"]
    since = {"since": start}
    async with (
        subscription(server, "bob", NOTIFICATIONS_LIVE, **since) as bobs,
        subscription(server, "mallory", NOTIFICATIONS_LIVE, **since) as mallorys,
    ):
        for_bob = await notify(server, ["bob"], "for bob")
        got = (await next_result(bobs))["notifications"]
        assert got["kind"] == "CREATED" and got["notification"]["message"] == "for bob"
        assert got["notification"]["eventId"] == str(for_bob)
        await notify(server, ["mallory"], "for mallory")
        # Mallory's first is hers (made after bob's): bob's never came to her.
        theirs = (await next_result(mallorys))["notifications"]
        assert theirs["notification"]["message"] == "for mallory"

        async with http(server, "bob") as client:  # read in another window of bob's
            response = await client.patch(f"/api/notifications/{got['id']}", json={"read": True})
            assert response.status_code == 200, response.text
        changed = (await next_result(bobs))["notifications"]
        assert changed["kind"] == "UPDATED" and changed["id"] == got["id"]
        assert changed["notification"]["read"] is True
        answer = await as_user(server, "bob", DELETE, id=got["id"])  # and deleted
        assert answer["data"] == {"deleteNotification": got["id"]}
        deleted = (await next_result(bobs))["notifications"]
        assert deleted == {"kind": "DELETED", "id": got["id"], "notification": None}

    # Away, then back with the time of the last one received: the missed one, once.
    await notify(server, ["bob"], "while away")
    resume = {"since": got["notification"]["createdAt"]}
    async with subscription(server, "bob", NOTIFICATIONS_LIVE, **resume) as bobs:
        missed = (await next_result(bobs))["notifications"]
        assert missed["kind"] == "CREATED" and missed["notification"]["message"] == "while away"
        await notify(server, ["bob"], "live again")
        live = (await next_result(bobs))["notifications"]
        assert live["notification"]["message"] == "live again"


async def test_subscribers_with_the_same_operation_share_results_not_views(server) -> None:
    """alice, bob and mallory run the very same subscription (its results are computed once
    per event for all of them: graphql/sharing.py): each still gets only their own view."""
    mark = await last_event_id(server)
    received: dict[str, list[dict[str, Any]]] = {}
    async with (
        subscription(server, "alice", EVENTS_LIVE, since=str(mark)) as alices,
        subscription(server, "bob", EVENTS_LIVE, since=str(mark)) as bobs,
        subscription(server, "mallory", EVENTS_LIVE, since=str(mark)) as mallorys,
    ):
        streams = {"alice": alices, "bob": bobs, "mallory": mallorys}
        firsts = {user: asyncio.ensure_future(next_result(s)) for user, s in streams.items()}
        private = await post_rest(server, "alice", {"status": "failed", "path": "private.ipynb"})
        shared = await post_rest(server, "alice", {"status": "ok", "path": "shared.ipynb"})
        sentinel = await notify(server, ["alice", "bob", "mallory"], "the end")
        for user, stream in streams.items():
            got = [(await firsts[user])["events"]]
            while int(got[-1]["id"]) != sentinel:
                got.append((await next_result(stream))["events"])
            received[user] = got
    ids = {user: [int(e["id"]) for e in got] for user, got in received.items()}
    assert ids["alice"] == [private["__id__"], shared["__id__"], sentinel]
    assert ids["bob"] == [shared["__id__"], sentinel]
    assert ids["mallory"] == [sentinel]
    assert received["bob"][0] == received["alice"][1]  # the same result, as computed once
