"""jupyter_server's authorizer decides GraphQL's root fields as it decides their REST
routes: a deployment's authorizer that refuses `events` refuses them here too."""

from __future__ import annotations

from typing import Any

import pytest
from gql import gql
from gql.transport.exceptions import TransportQueryError
from graphqls import query, ws_client
from two_users import two_users_env

from jupyter_datastore.graphql.authorize import ROOT_FIELDS
from jupyter_datastore.graphql.schema import make_schema


def test_every_root_field_is_decided() -> None:
    schema = make_schema()._schema
    roots = (schema.query_type, schema.mutation_type, schema.subscription_type)
    names = {name for root in roots if root is not None for name in root.fields}
    assert names - ROOT_FIELDS.keys() == set(), "add them to graphql/authorize.py"
    assert ROOT_FIELDS.keys() - names == set(), "no longer in the schema"


@pytest.fixture
def denying_server(make_server: Any) -> Any:
    return make_server(["--ServerApp.authorizer_class=deny_events.DenyEvents"], env=two_users_env())


async def test_an_authorizer_that_refuses_events_refuses_them_over_graphql(
    denying_server: Any,
) -> None:
    server = denying_server
    refused = await query(server, "{ events(first: 5) { edges { node { id } } } }")
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["forbidden"]
    assert refused["data"] is None
    mutation = 'mutation { postEvent(schemaId: "x", version: "1", data: {}) { id } }'
    assert (await query(server, mutation))["errors"][0]["extensions"]["code"] == "forbidden"
    # What it allows still works, in the same operation's neighbours too.
    assert "errors" not in await query(server, "{ kernels { id } status { version } }")
    both = await query(server, "{ kernels { id } events { edges { cursor } } }")
    assert both["data"] is None and both["errors"][0]["extensions"]["code"] == "forbidden"
    async with ws_client(server) as session:
        with pytest.raises(TransportQueryError) as stream_refused:
            async for _ in session.subscribe(gql("subscription { events { id } }")):
                pass
    assert stream_refused.value.errors is not None
    assert stream_refused.value.errors[0]["extensions"]["code"] == "forbidden"
