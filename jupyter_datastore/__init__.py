"""jupyter-datastore: a real-time, durable datastore for Jupyter."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import DatastoreApp

    return [{"module": "jupyter_datastore", "app": DatastoreApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt front-end extension is (`jupyter-builder develop` links it)."""
    return [{"src": "labextension", "dest": "jupyter-datastore"}]
