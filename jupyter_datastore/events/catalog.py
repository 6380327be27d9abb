"""The event schemas of jupyter-datastore itself (`events/schemas/*.json`), registered on the
server's EventLogger at start, each published at GET /api/events/schemas.

The layers (rooms, documents, execution) emit through a plain callable, `Emit`, handed to
them by the datastore: they never see the bus. `no_emit` is the default for a layer used on
its own (in tests, for instance).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.resources import files
from typing import Any

__all__ = [
    "CONTENTS_SERVICE",
    "DOCUMENT",
    "EXECUTION",
    "FORK",
    "KERNEL_ACTIONS",
    "KERNEL_STATUS",
    "NOTIFICATION",
    "OUR_SCHEMAS",
    "PEER",
    "PERMISSION",
    "STORE_FAULT",
    "Emit",
    "load_schemas",
    "no_emit",
]

_BASE = "https://events.jupyter.org/jupyter_datastore"
EXECUTION = f"{_BASE}/execution/v1"
NOTIFICATION = f"{_BASE}/notification/v1"
KERNEL_STATUS = f"{_BASE}/kernel_status/v1"
DOCUMENT = f"{_BASE}/document/v1"
PEER = f"{_BASE}/peer/v1"
STORE_FAULT = f"{_BASE}/store_fault/v1"
PERMISSION = f"{_BASE}/permission/v1"

FORK = "https://schema.jupyter.org/jupyter_collaboration/fork/v1"
"""jupyter-collaboration's: JupyterLab's fork manager listens for it."""

KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
"""jupyter_server's own: a kernel was started, interrupted, restarted or shut down."""
CONTENTS_SERVICE = "https://events.jupyter.org/jupyter_server/contents_service/v1"
"""jupyter_server's own: a file or folder was read, saved, renamed, copied or deleted."""

Emit = Callable[[str, dict[str, Any]], None]
"""`emit(schema_id, data)`: send an event of a registered schema (never raises)."""


def no_emit(schema_id: str, data: dict[str, Any]) -> None:
    """An `Emit` that sends nothing."""


def load_schemas() -> list[dict[str, Any]]:
    folder = files("jupyter_datastore.events").joinpath("schemas")
    return [
        json.loads(entry.read_text())
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    ]


OUR_SCHEMAS: tuple[str, ...] = (
    EXECUTION,
    NOTIFICATION,
    KERNEL_STATUS,
    DOCUMENT,
    PEER,
    STORE_FAULT,
    PERMISSION,
    FORK,
)
