"""Schemathesis against the served OpenAPI document: no server error, answers as documented.

One real server (two notebooks and a text file in its root) and its document as served at
`GET /api/datastore/openapi.json`. Every operation in it gets schema-generated requests,
valid (positive) and invalid (negative), then requests aimed at real things (the files, a
room, executions queued, finished and waiting for input, their kernel, an nbmodel request,
a notification, the event schemas), then a few fixed edge cases (bugs found before). Each
answer must not be a 5xx and must conform to the document: status code, content type, body
schema, headers; an invalid request must be refused with a 4xx. The server's log must hold
no traceback at the end.

Schemathesis' pytest loader (`schemathesis.pytest.from_fixture`) fails on pytest 9.2 (it
sets `Node._nodeid`), so each operation is a plain parametrized test that drives the
operation's documented strategies (`APIOperation.as_strategy`) with Hypothesis itself.
Generation is derandomized: a run sends the same requests every time.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import Server
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from notebooks import code_cell, markdown_cell, notebook, write_notebook
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from two_users import ARGS, two_users_env

from jupyter_datastore.events.catalog import NOTIFICATION

pytestmark = pytest.mark.timeout(180)

MAX_EXAMPLES = 15  # per strategy of an operation
TOKEN = "alice-token"  # a named user (`two_users.py`): notifications are per user
AUTH = {"Authorization": f"token {TOKEN}"}

SPEC = json.loads(files("jupyter_datastore").joinpath("openapi.json").read_text())
OPERATIONS = [(method.upper(), path) for path, ops in SPEC["paths"].items() for method in ops]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
NOTEBOOKS = ["a.ipynb", "sub/b.ipynb"]
PATHS = [*NOTEBOOKS, "notes.txt", "sub", "missing.ipynb", "../outside.ipynb", "sub/../a.ipynb"]
CELL_IDS = ["c1", "m1", "c2", "no-such-cell"]
FINISHED = {"ok", "error", "cancelled", "interrupted", "lost"}

# Event schemas that jupyter_events takes but that cannot validate every event
UNRESOLVABLE = "https://example.org/schemathesis/unresolvable/v1"
LOOP = "https://example.org/schemathesis/loop/v1"
BROKEN_SCHEMAS = [
    {"$id": UNRESOLVABLE, "version": "1", "properties": {"a": {"$ref": "#/definitions/nope"}}},
    {"$id": LOOP, "version": "1", "properties": {"a": {"$ref": "#/properties/a"}}},
]


def schema_document(name: str, **extra: Any) -> dict[str, Any]:
    return {"$id": f"https://example.org/schemathesis/{name}/v1", "version": "1", **extra}


# Fixed requests, each once (the bugs found so far, and the document's corners)
EDGE_CASES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("GET", "/api/datastore/executions"): [
        {"query": {"path": "../outside.ipynb"}},
        {"query": {"path": ""}},
    ],
    ("GET", "/api/kernels/{kernel_id}/execute"): [{"path_parameters": {"kernel_id": "nope"}}],
    ("POST", "/api/events"): [
        {"body": {"schema_id": UNRESOLVABLE, "version": "1", "data": {"a": 1}}},
        {"body": {"schema_id": LOOP, "version": "1", "data": {"a": 1}}},
    ],
    ("GET", "/api/events"): [
        {"query": {"limit": "false"}},
        {"query": {"limit": ""}},
        {"query": {"since": str(2**63 - 1)}},
        {"query": {"since": str(2**63)}},
        {"query": {"since": str(10**30)}},
    ],
    ("POST", "/api/events/schemas"): [
        {"body": {"version": 1, "properties": {}}},
        {"body": schema_document("required", properties={}, required=5)},
        {"body": schema_document("pattern", properties={"a": {"pattern": "("}})},
        {"body": schema_document("type", properties={"a": {"type": "bogus"}})},
        {"body": schema_document("ref", properties={}, **{"$ref": "#/definitions/x"})},
    ],
    ("GET", "/api/notifications"): [
        {"query": {"since": "0001-01-01T00:00:00+01:00"}},
        {"query": {"until": "9999-12-31T23:59:59-01:00"}},
        {"query": {"since": "0999-01-01T00:00:00"}},
    ],
}
# Operations that get an execution waiting for input (answered afterwards)
WAITING = {
    ("GET", "/api/datastore/executions/{execution_id}"),
    ("DELETE", "/api/datastore/executions/{execution_id}"),
    ("POST", "/api/datastore/executions/{execution_id}/input"),
    ("GET", "/api/kernels/{kernel_id}/requests/{uid}"),
    ("POST", "/api/kernels/{kernel_id}/input"),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("root")
    write_notebook(root / "a.ipynb", notebook(code_cell("1 + 1", "c1"), markdown_cell("# A", "m1")))
    write_notebook(root / "sub" / "b.ipynb", notebook(code_cell("x = 2", "c2")))
    (root / "notes.txt").write_text("plain text\n")
    instance = Server(root, ARGS, env=two_users_env()).start()
    yield instance
    instance.stop()
    instance.check_log()  # no traceback: every bad request was handled, none crashed
    instance.remove_home()


@pytest.fixture(scope="module")
def http(served: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, headers=AUTH, timeout=30) as client:
        yield client


def ok(response: httpx.Response) -> Any:
    assert response.is_success, response.text
    return response.json()


def poll(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """`check()` until it is truthy, and that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {result!r} after {timeout}s")
        time.sleep(0.05)
    return result


def status_of(http: httpx.Client, execution_id: str) -> str:
    return str(ok(http.get(f"/api/datastore/executions/{execution_id}"))["status"])


@dataclass
class Known:
    """Real things on the server, for requests that reach past the 404s."""

    room_id: str
    kernel_id: str
    execution_id: str  # finished
    request_id: str  # an nbmodel request
    notification_id: str
    schemas: dict[str, str]  # $id -> version
    waiting: list[str] = field(default_factory=list)  # executions the test made wait


@pytest.fixture(scope="module")
def known(http: httpx.Client) -> Known:
    session = ok(
        http.put("/api/collaboration/session/a.ipynb", json={"format": "json", "type": "notebook"})
    )
    body = {"path": "a.ipynb", "cell_ids": ["c1"]}
    [record] = ok(http.post("/api/datastore/executions", json=body))["executions"]
    kernel_id = record["kernel_id"]
    request = ok(http.post(f"/api/kernels/{kernel_id}/execute", json={"code": "2 + 2"}))
    sent = ok(http.post("/api/notifications", json={"recipients": ["alice"], "message": "hello"}))
    [row] = poll(
        lambda: [
            row
            for row in ok(http.get("/api/notifications"))["notifications"]
            if row["event_id"] == sent["event_id"]
        ]
    )
    for document in BROKEN_SCHEMAS:
        ok(http.post("/api/events/schemas", json=document))
    schemas = {s["$id"]: s["version"] for s in ok(http.get("/api/events/schemas"))["schemas"]}
    poll(lambda: status_of(http, record["id"]) in FINISHED)
    return Known(
        room_id=f"json:notebook:{session['fileId']}",
        kernel_id=kernel_id,
        execution_id=record["id"],
        request_id=request["request_id"],
        notification_id=row["id"],
        schemas=schemas,
    )


@contextlib.contextmanager
def waiting_for_input(http: httpx.Client, known: Known) -> Iterator[None]:
    """An execution on the known kernel waiting for input, and one queued behind it; both
    are answered or cancelled at the end, so that the kernel is free again."""
    code = {"code": "input('name? ')"}
    waiting = ok(http.post(f"/api/kernels/{known.kernel_id}/execute", json=code))["request_id"]
    queued = ok(http.post(f"/api/kernels/{known.kernel_id}/execute", json={"code": "3"}))
    poll(lambda: status_of(http, waiting) == "awaiting_input")
    known.waiting = [waiting, queued["request_id"]]
    try:
        yield
    finally:
        known.waiting = []
        # 200, or 409 when the test ended it already (interrupted, or answered)
        http.post(f"/api/datastore/executions/{waiting}/input", json={"value": "x"})
        for execution_id in (waiting, queued["request_id"]):
            poll(lambda id=execution_id: status_of(http, id) in FINISHED)


@pytest.fixture(scope="module")
def api_schema(served: Server) -> Any:
    config = SchemathesisConfig.from_dict({"base-url": served.url, "headers": AUTH})
    return schemathesis.openapi.from_url(
        f"{served.url}/api/datastore/openapi.json", config=config, headers=AUTH
    )


def aimed(operation: Any, method: str, path: str, known: Known) -> list[Any]:
    """Strategies of valid requests at real things, for the operations that take them."""

    def at(**fixed: Any) -> Any:
        """Cases with these parts drawn from the given strategies, the rest generated."""
        return st.fixed_dictionaries(fixed).flatmap(lambda parts: operation.as_strategy(**parts))

    kernel = st.just(known.kernel_id)
    cells = st.lists(st.sampled_from(CELL_IDS), min_size=1, max_size=3, unique=True)
    key = (method, path)
    if key == ("PUT", "/api/collaboration/session/{path}"):
        kinds = st.sampled_from([("json", "notebook"), ("text", "file"), ("base64", "file")])
        return [
            at(
                path_parameters=st.fixed_dictionaries({"path": st.sampled_from(PATHS)}),
                body=kinds.map(lambda kind: {"format": kind[0], "type": kind[1]}),
            )
        ]
    if key == ("GET", "/api/datastore/executions"):
        query = st.fixed_dictionaries(
            {}, optional={"path": st.sampled_from(PATHS), "kernel_id": kernel}
        )
        return [at(query=query)]
    if key == ("POST", "/api/datastore/executions"):
        target = st.one_of(
            st.fixed_dictionaries({"path": st.sampled_from(NOTEBOOKS)}),
            st.fixed_dictionaries({"room_id": st.just(known.room_id)}),
        )
        kernels = st.one_of(
            st.fixed_dictionaries({"id": kernel}),
            st.fixed_dictionaries({"name": st.sampled_from(["python3", "nope"])}),
        )
        extra = st.fixed_dictionaries(
            {}, optional={"kernel": kernels, "source_hashes": st.just({"c1": "0" * 64})}
        )
        bodies = st.tuples(target, cells, extra).map(
            lambda parts: {**parts[0], "cell_ids": parts[1], **parts[2]}
        )
        return [at(body=bodies)]
    if path.startswith("/api/datastore/executions/{execution_id}"):
        ids = st.sampled_from([known.execution_id, *known.waiting])
        return [at(path_parameters=st.fixed_dictionaries({"execution_id": ids}))]
    if key == ("GET", "/api/kernels/{kernel_id}/requests/{uid}"):
        uids = st.sampled_from([known.request_id, *known.waiting[:1]])
        return [at(path_parameters=st.fixed_dictionaries({"kernel_id": kernel, "uid": uids}))]
    if path.startswith("/api/kernels/{kernel_id}/"):
        strategies = [at(path_parameters=st.fixed_dictionaries({"kernel_id": kernel}))]
        if key == ("POST", "/api/kernels/{kernel_id}/execute"):
            # JupyterLab's server-side executor: a cell of a document, no code
            document_cell = st.fixed_dictionaries(
                {"cell_id": st.sampled_from(CELL_IDS), "document_id": st.just(known.room_id)}
            )
            ids = st.fixed_dictionaries({"kernel_id": kernel})
            strategies.append(at(path_parameters=ids, body=document_cell))
        return strategies
    if key == ("POST", "/api/events"):
        event = st.fixed_dictionaries(
            {
                "schema_id": st.sampled_from(sorted(known.schemas)),
                "version": st.sampled_from(sorted(set(known.schemas.values()))),
                "data": st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10)),
            }
        )
        notification = st.fixed_dictionaries(
            {
                "schema_id": st.just(NOTIFICATION),
                "version": st.just("1"),
                "data": st.fixed_dictionaries(
                    {"recipients": st.just(["alice"]), "message": st.text(max_size=20)},
                    optional={"type": st.sampled_from(["info", "error", "bogus"])},
                ),
            }
        )
        return [at(body=event), at(body=notification)]
    if key == ("GET", "/api/events"):
        filters = ['{"schema_ids": ["x"]}', '{"match": {"message": "hello"}}', "{}", "[]", "{"]
        query = st.fixed_dictionaries(
            {},
            optional={
                "schema_id": st.sampled_from(sorted(known.schemas)),
                "since": st.integers(min_value=0, max_value=5).map(str),
                "filter": st.sampled_from(filters),
            },
        )
        return [at(query=query)]
    if key == ("POST", "/api/events/schemas"):
        ids = [*sorted(known.schemas)[:2], "https://example.org/schemathesis/new/v1"]
        document = st.fixed_dictionaries(
            {
                "$id": st.sampled_from(ids),
                "version": st.sampled_from(["1", "2"]),
                "type": st.just("object"),
                "properties": st.just({"name": {"type": "string", "title": "name"}}),
            }
        )
        return [at(body=document)]
    if path == "/api/notifications/{notification_id}":
        ids = st.fixed_dictionaries({"notification_id": st.just(known.notification_id)})
        return [at(path_parameters=ids)]
    return []


def exercise(strategy: Any, may_be_unsatisfiable: bool = False) -> None:
    """Up to MAX_EXAMPLES cases of `strategy`, each called and checked."""

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking against a server with state
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        negative = case.meta is not None and case.meta.generation.mode.is_negative
        case.call_and_validate(checks=[*CHECKS, *([negative_data_rejection] if negative else [])])

    try:
        run()
    except Unsatisfiable:
        # No invalid request exists (no parameter or body, or only free-form strings)
        if not may_be_unsatisfiable:
            raise


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation(
    api_schema: Any, http: httpx.Client, known: Known, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    with contextlib.ExitStack() as stack:
        if (method, path) in WAITING:
            stack.enter_context(waiting_for_input(http, known))
        exercise(operation.as_strategy(GenerationMode.POSITIVE))
        exercise(operation.as_strategy(GenerationMode.NEGATIVE), may_be_unsatisfiable=True)
        for strategy in aimed(operation, method, path, known):
            exercise(strategy)
    for parts in EDGE_CASES.get((method, path), []):
        response = operation.Case(**parts).call_and_validate(headers=AUTH, checks=CHECKS)
        assert response.status_code != 403, response.text  # reached the handler
