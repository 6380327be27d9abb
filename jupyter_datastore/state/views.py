"""One user's view of the server's state: only what concerns documents they may view.

The state room holds the whole server; a user who may view every document sees all of it
(and may open the room). Anyone else gets this view of its snapshot over REST: sessions,
executions, open documents and changed contents of the paths they may view; the kernels
of those sessions and the kernels that serve no notebook; terminals only with a role on the
root; kernel specs and the server's status as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["view_of"]

BY_PATH = ("sessions", "executions", "documents", "contents")


def view_of(snapshot: dict[str, Any], may_view: Callable[[str], bool]) -> dict[str, Any]:
    """`snapshot` (as `ServerState.snapshot()` gives it) as a user sees it."""
    view = dict(snapshot)
    for name in BY_PATH:
        entries = snapshot.get(name) or {}
        view[name] = {
            key: entry
            for key, entry in entries.items()
            if isinstance(entry, dict) and may_view(str(entry.get("path") or ""))
        }
    sessions = (snapshot.get("sessions") or {}).values()
    hidden = {_kernel_id(s) for s in sessions} - {_kernel_id(s) for s in view["sessions"].values()}
    view["kernels"] = {
        key: entry for key, entry in (snapshot.get("kernels") or {}).items() if key not in hidden
    }
    if not may_view(""):
        view["terminals"] = {}
    return view


def _kernel_id(session: Any) -> Any:
    kernel = session.get("kernel") if isinstance(session, dict) else None
    return kernel.get("id") if isinstance(kernel, dict) else None
