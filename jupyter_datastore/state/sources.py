"""What the Jupyter server's managers say, read into the state room's JSON entries.

Each reader returns the map's whole content, as the standard REST API shows it (the same
models as `GET /api/kernels`, `/api/sessions`, `/api/terminals`, `/api/kernelspecs` and
`/api/status`), so a client of the state room and a client of the REST API agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server._tz import isoformat
from tornado.web import HTTPError

__all__ = [
    "ContentUnreadable",
    "JupyterServices",
    "content_entry",
    "kernel_entries",
    "kernelspec_entries",
    "session_entries",
    "status_entry",
    "terminal_entries",
]


@dataclass(frozen=True)
class JupyterServices:
    """The jupyter_server managers the datastore acts through and mirrors."""

    kernels: Any
    """MappingKernelManager (or the gateway's)."""
    sessions: Any
    kernelspecs: Any
    contents: Any
    terminals: Any = None
    """jupyter_server_terminals' TerminalManager; None when terminals are off."""
    web_app: Any = None
    """The server's web application: its start time, last activity and base URL."""
    identity: Any = None
    """The IdentityProvider: who a request is, and (if it knows) their groups."""


async def kernel_entries(services: JupyterServices, states: dict[str, str]) -> dict[str, Any]:
    """Every running kernel's model; `states` (the kernel watcher's) has the freshest
    execution state where it differs from what jupyter_server recorded.

    A kernel still being started is registered before its model is complete (reading it
    raises); it is left out until its `start` event, which comes once it is complete.
    """
    manager = services.kernels
    entries: dict[str, Any] = {}
    for kernel_id in list(manager.list_kernel_ids()):
        try:
            model = await ensure_async(manager.kernel_model(kernel_id))
        except Exception:
            continue
        state = states.get(kernel_id) or model.get("execution_state")
        entries[kernel_id] = {**model, "execution_state": state}
    return entries


async def session_entries(services: JupyterServices) -> dict[str, Any]:
    return {s["id"]: s for s in await ensure_async(services.sessions.list_sessions())}


def terminal_entries(services: JupyterServices) -> dict[str, Any]:
    if services.terminals is None:
        return {}
    return {t["name"]: t for t in services.terminals.list()}


async def kernelspec_entries(services: JupyterServices) -> dict[str, Any]:
    """Each kernelspec as `GET /api/kernelspecs` lists it: name, spec, resource URLs, and
    whether it is the default."""
    manager = services.kernelspecs
    specs = await ensure_async(manager.get_all_specs())
    default = getattr(services.kernels, "default_kernel_name", None)
    base_url = _setting(services, "base_url", "/")
    entries: dict[str, Any] = {}
    for name, found in specs.items():
        resource_dir = found.get("resource_dir") or ""
        resources = {}
        if resource_dir and os.path.isdir(resource_dir):
            for filename in sorted(os.listdir(resource_dir)):
                if filename in ("kernel.js", "kernel.css"):
                    resources[filename] = f"{base_url}kernelspecs/{name}/{filename}"
                elif filename.startswith("logo-"):
                    key = os.path.splitext(filename)[0]
                    resources[key] = f"{base_url}kernelspecs/{name}/{filename}"
        entries[name] = {
            "name": name,
            "spec": found.get("spec", {}),
            "resources": resources,
            "default": name == default,
        }
    return entries


def status_entry(services: JupyterServices, kernels: dict[str, Any], terminals: int) -> Any:
    """`GET /api/status` with the terminal count; live kernels only (not the dead ones, nor
    the launches that failed)."""
    live = [k for k in kernels.values() if k.get("execution_state") not in ("dead", "failed")]
    web_app = services.web_app
    started = _setting(services, "started", None)
    last_activity = web_app.last_activity() if web_app is not None else None
    return {
        "started": isoformat(started) if started is not None else None,
        "last_activity": isoformat(last_activity) if last_activity is not None else None,
        "kernels": len(live),
        "connections": sum(int(k.get("connections") or 0) for k in live),
        "terminals": terminals,
    }


class ContentUnreadable(Exception):
    """The contents manager failed to read a path for another reason than its absence."""


async def content_entry(services: JupyterServices, path: str) -> Any:
    """A file's or folder's model without its content; None when it is gone (404) or not
    ours to show (403). Any other failure raises `ContentUnreadable`: the file may well
    be there."""
    try:
        model = await ensure_async(services.contents.get(path, content=False))
    except HTTPError as exc:
        if exc.status_code in (403, 404):
            return None
        raise ContentUnreadable(f"{path}: {exc}") from exc
    except Exception as exc:
        raise ContentUnreadable(f"{path}: {exc}") from exc
    return {key: model.get(key) for key in _CONTENT_KEYS}


_CONTENT_KEYS = (
    "name",
    "path",
    "type",
    "created",
    "last_modified",
    "size",
    "writable",
    "mimetype",
    "format",
)


def _setting(services: JupyterServices, name: str, fallback: Any) -> Any:
    if services.web_app is None:
        return fallback
    return services.web_app.settings.get(name, fallback)
