"""The state machine of an execution record: every transition it takes, every one it refuses."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jupyter_datastore.errors import DatastoreError
from jupyter_datastore.execution.records import (
    ExecutionRecord,
    InvalidTransition,
    Status,
)

ALL: tuple[Status, ...] = (
    "queued",
    "running",
    "awaiting_input",
    "ok",
    "error",
    "cancelled",
    "interrupted",
    "lost",
)
PROMPT = {"prompt": "name? ", "password": False}

Transition = Callable[[ExecutionRecord], None]

# name -> (the transition, the statuses it leaves, the status it reaches)
TRANSITIONS: dict[str, tuple[Transition, set[str], str]] = {
    "start": (lambda r: r.start(), {"queued"}, "running"),
    "await_input": (lambda r: r.await_input(PROMPT), {"running"}, "awaiting_input"),
    "resume": (lambda r: r.resume(), {"awaiting_input"}, "running"),
    "finish ok": (lambda r: r.finish("ok"), {"running", "awaiting_input"}, "ok"),
    "finish error": (lambda r: r.finish("error"), {"running", "awaiting_input"}, "error"),
    "finish interrupted": (
        lambda r: r.finish("interrupted"),
        {"running", "awaiting_input"},
        "interrupted",
    ),
    "finish cancelled": (
        lambda r: r.finish("cancelled"),
        {"running", "awaiting_input"},
        "cancelled",
    ),
    "cancel": (lambda r: r.cancel("on request"), {"queued"}, "cancelled"),
    "fail": (lambda r: r.fail("the kernel died"), {"queued", "running", "awaiting_input"}, "error"),
    "lose": (
        lambda r: r.lose("the server stopped"),
        {"queued", "running", "awaiting_input"},
        "lost",
    ),
}


def record_in(status: Status) -> ExecutionRecord:
    record = ExecutionRecord(id="e1", kernel_id="k1", batch_id="b1")
    record.status = status
    if status == "awaiting_input":
        record.input_request = dict(PROMPT)
    return record


ALLOWED = [(name, status) for name, (_, left, _) in TRANSITIONS.items() for status in sorted(left)]
REFUSED = [
    (name, status)
    for name, (_, left, _) in TRANSITIONS.items()
    for status in ALL
    if status not in left
]


@pytest.mark.parametrize(("name", "status"), ALLOWED)
def test_an_allowed_transition_reaches_its_status(name: str, status: Status) -> None:
    transition, _, reached = TRANSITIONS[name]
    record = record_in(status)
    transition(record)
    assert record.status == reached
    assert record.active == (reached in ("running", "awaiting_input"))
    if not record.active:
        assert record.finished_at is not None
        assert record.input_request is None


@pytest.mark.parametrize(("name", "status"), REFUSED)
def test_a_refused_transition_raises_and_changes_nothing(name: str, status: Status) -> None:
    transition, _, _ = TRANSITIONS[name]
    record = record_in(status)
    before = record.stored()
    with pytest.raises(InvalidTransition) as raised:
        transition(record)
    assert record.stored() == before
    assert raised.value.current == status
    assert raised.value.record_id == "e1"
    assert f"is {status}" in str(raised.value)
    assert isinstance(raised.value, DatastoreError)
    assert raised.value.status == 500  # a bug of the server, never the client's mistake


def test_every_status_pair_is_either_allowed_or_refused() -> None:
    assert len(ALLOWED) + len(REFUSED) == len(TRANSITIONS) * len(ALL)


@pytest.mark.parametrize("status", ["queued", "running", "lost"])
def test_finish_refuses_a_status_that_is_no_reply(status: Status) -> None:
    record = record_in("running")
    with pytest.raises(InvalidTransition):
        record.finish(status)
    assert record.status == "running"
    assert record.finished_at is None


def test_a_run_with_input_sets_times_and_fields() -> None:
    record = ExecutionRecord(id="e1", kernel_id="k1", batch_id="b1")
    assert (record.status, record.started_at, record.finished_at) == ("queued", None, None)
    record.start()
    assert record.started_at is not None
    assert record.finished_at is None
    record.await_input(PROMPT)
    assert record.input_request == PROMPT
    record.resume()
    assert record.input_request is None
    record.await_input(PROMPT)
    error = {"ename": "KeyboardInterrupt", "evalue": ""}
    record.finish("interrupted", execution_count=3, error=error, reason="interrupted on request")
    assert record.status == "interrupted"
    assert record.execution_count == 3
    assert record.error == error
    assert record.reason == "interrupted on request"
    assert record.input_request is None
    assert record.finished_at is not None
    assert record.started_at <= record.finished_at


def test_ending_without_a_reply_keeps_what_was_known() -> None:
    record = record_in("running")
    record.execution_count = 2
    record.fail("the kernel died", error={"ename": "KernelDied", "evalue": "the kernel died"})
    assert (record.status, record.reason) == ("error", "the kernel died")
    assert record.error == {"ename": "KernelDied", "evalue": "the kernel died"}
    assert record.execution_count == 2

    queued = record_in("queued")
    queued.cancel("an earlier cell failed")
    assert (queued.status, queued.reason, queued.started_at) == (
        "cancelled",
        "an earlier cell failed",
        None,
    )
    assert queued.finished_at is not None

    waiting = record_in("awaiting_input")
    waiting.lose("the server stopped")
    assert (waiting.status, waiting.reason, waiting.input_request) == (
        "lost",
        "the server stopped",
        None,
    )


def test_a_reloaded_record_follows_the_same_machine() -> None:
    record = record_in("running")
    record.finish("ok", execution_count=1)
    again = ExecutionRecord.from_stored(record.stored())
    with pytest.raises(InvalidTransition):
        again.finish("ok")
    with pytest.raises(InvalidTransition):
        again.start()
