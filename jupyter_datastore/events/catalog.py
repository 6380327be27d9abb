"""The event schemas of jupyter-datastore itself (`events/schemas/*.json`), registered on the
server's EventLogger at start, each published at GET /api/events/schemas."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

__all__ = ["EXECUTION", "NOTIFICATION", "OUR_SCHEMAS", "load_schemas"]

_BASE = "https://events.jupyter.org/jupyter_datastore"
EXECUTION = f"{_BASE}/execution/v1"
NOTIFICATION = f"{_BASE}/notification/v1"


def load_schemas() -> list[dict[str, Any]]:
    folder = files("jupyter_datastore.events").joinpath("schemas")
    return [
        json.loads(entry.read_text())
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    ]


OUR_SCHEMAS: tuple[str, ...] = (EXECUTION, NOTIFICATION)
