"""The record of one cell's execution: what ran, where, how it ended.

A record is created `queued` when the request is accepted and moves on, persisted at every
change of status, only through its transition methods:

    start()          queued -> running
    await_input()    running -> awaiting_input
    resume()         awaiting_input -> running
    finish(status)   running | awaiting_input -> ok | error | interrupted | cancelled
                     (the kernel's reply; cancelled: the kernel aborted it)
    cancel(reason)   queued -> cancelled     (on request, deleted, an earlier cell failed)
    fail(reason)     queued | running | awaiting_input -> error   (failed outside the code:
                     the kernel died, the server could not run it)
    lose(reason)     queued | running | awaiting_input -> lost    (the server stopped, the
                     kernel went away)

Every other transition (finishing a finished record, starting a cancelled one) raises
`InvalidTransition`. Callers check what a client asks for first and answer `Conflict`
(executing an execution that has ended, answering one that is not waiting); so a refused
transition is a bug of the server, not a client's mistake: an internal error (500), never a
silent overwrite of how an execution ended.

A password typed in answer to `getpass()` is never recorded; neither is any other answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from ..errors import DatastoreError

__all__ = ["ACTIVE", "ExecutionRecord", "InvalidTransition", "Status", "utc_now"]

Status = Literal[
    "queued", "running", "awaiting_input", "ok", "error", "cancelled", "interrupted", "lost"
]
ACTIVE: frozenset[str] = frozenset({"queued", "running", "awaiting_input"})
_RUNNING: frozenset[str] = frozenset({"running", "awaiting_input"})
_REPLIES: frozenset[str] = frozenset({"ok", "error", "interrupted", "cancelled"})


class InvalidTransition(DatastoreError):
    """A record was asked to move where its state machine does not go (a server bug: 500)."""

    def __init__(self, record_id: str, current: str, transition: str) -> None:
        super().__init__(f"execution {record_id} is {current}: it cannot {transition}")
        self.record_id = record_id
        self.current = current
        """The record's status, which the transition does not leave."""
        self.transition = transition


def utc_now() -> str:
    """An ISO 8601 UTC timestamp; such strings sort in time order."""
    return datetime.fromtimestamp(time.time(), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ExecutionRecord:
    id: str
    kernel_id: str
    batch_id: str
    room_id: str | None = None
    path: str | None = None
    cell_id: str | None = None
    user: str | None = None
    """Who asked for it (jupyter_server's user name)."""
    code: str | None = None
    """The code to run instead of the cell's source (the jupyter-server-nbmodel API)."""
    status: Status = "queued"
    created_at: str = field(default_factory=utc_now)
    started_at: str | None = None
    finished_at: str | None = None
    execution_count: int | None = None
    error: dict[str, str] | None = None
    """`ename` and `evalue` of the exception a failed cell raised."""
    reason: str | None = None
    """Why it was cancelled, lost or interrupted, or why it failed outside the code."""
    input_request: dict[str, Any] | None = None
    """`prompt` and `password` while the code waits for input."""
    outputs: list[dict[str, Any]] = field(default_factory=list)
    """The nbformat outputs, once finished (the document holds them live)."""
    collected: bool = False
    """The final result was handed out through the jupyter-server-nbmodel API."""

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    # --- transitions ---

    def _check(self, allowed: frozenset[str], transition: str) -> None:
        if self.status not in allowed:
            raise InvalidTransition(self.id, self.status, transition)

    def start(self) -> None:
        """The code was sent to the kernel."""
        self._check(frozenset({"queued"}), "start")
        self.status, self.started_at = "running", utc_now()

    def await_input(self, request: dict[str, Any]) -> None:
        """The code asks for input (`prompt`, `password`)."""
        self._check(frozenset({"running"}), "wait for input")
        self.status, self.input_request = "awaiting_input", request

    def resume(self) -> None:
        """The input was answered: the code runs on."""
        self._check(frozenset({"awaiting_input"}), "resume")
        self.status, self.input_request = "running", None

    def finish(
        self,
        status: Status,
        *,
        execution_count: int | None = None,
        error: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        """The kernel replied: `ok`, `error` (with `error`), `interrupted`, or `cancelled`
        (the kernel aborted it)."""
        if status not in _REPLIES:
            raise InvalidTransition(self.id, self.status, f"finish as {status}")
        self._check(_RUNNING, f"finish as {status}")
        self.execution_count, self.error = execution_count, error
        self._end(status, reason)

    def cancel(self, reason: str) -> None:
        """It will not run."""
        self._check(frozenset({"queued"}), "be cancelled")
        self._end("cancelled", reason)

    def fail(self, reason: str, *, error: dict[str, str] | None = None) -> None:
        """It failed outside the code: the kernel died under it, the server could not run it."""
        self._check(ACTIVE, "fail")
        if error is not None:
            self.error = error
        self._end("error", reason)

    def lose(self, reason: str) -> None:
        """It was cut short without an answer (the server stopped, the kernel went away)."""
        self._check(ACTIVE, "be lost")
        self._end("lost", reason)

    def _end(self, status: Status, reason: str | None) -> None:
        self.status, self.finished_at, self.input_request = status, utc_now(), None
        if reason is not None:
            self.reason = reason

    def to_json(self, *, outputs: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "kernel_id": self.kernel_id,
            "batch_id": self.batch_id,
            "room_id": self.room_id,
            "path": self.path,
            "cell_id": self.cell_id,
            "user": self.user,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "execution_count": self.execution_count,
            "error": self.error,
            "reason": self.reason,
            "input_request": self.input_request,
        }
        if outputs:
            data["outputs"] = self.outputs
        return data

    def stored(self) -> dict[str, Any]:
        """What the store keeps."""
        return {**self.to_json(), "code": self.code, "collected": self.collected}

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> ExecutionRecord:
        known = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in known})
