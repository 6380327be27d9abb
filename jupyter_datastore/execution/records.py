"""The record of one cell's execution: what ran, where, how it ended.

A record is created `queued` when the request is accepted and moves on, persisted at every
change of status:

    queued -> running <-> awaiting_input -> ok | error | interrupted
    queued -> cancelled                          (deleted, or an earlier cell of its batch failed)
    queued | running | awaiting_input -> lost    (the server stopped, or the kernel went away)

A password typed in answer to `getpass()` is never recorded; neither is any other answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

__all__ = ["ACTIVE", "ExecutionRecord", "Status", "utc_now"]

Status = Literal[
    "queued", "running", "awaiting_input", "ok", "error", "cancelled", "interrupted", "lost"
]
ACTIVE: frozenset[str] = frozenset({"queued", "running", "awaiting_input"})


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
