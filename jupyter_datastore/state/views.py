"""One user's view of the server's state: only what concerns documents they may view.

The state room holds the whole server; a user who may view every document sees all of it
(and may open the room). Anyone else gets this view of its snapshot over REST: sessions,
executions, open documents and changed contents of the paths they may view; the kernels
of those sessions and the kernels that serve no notebook; terminals only with a role on the
root; kernel specs and the server's status as they are (the upstream of supernode mode
only with a role on the root).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["hidden_kernels", "view_of"]

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
    hidden = hidden_kernels((snapshot.get("sessions") or {}).values(), may_view)
    view["kernels"] = {
        key: entry for key, entry in (snapshot.get("kernels") or {}).items() if key not in hidden
    }
    if not may_view(""):
        view["terminals"] = {}
        # Where the files come from (supernode mode) is the server's business, as its root.
        view["status"] = {
            key: value for key, value in (snapshot.get("status") or {}).items() if key != "upstream"
        }
    return view


def hidden_kernels(sessions: Iterable[Any], may_view: Callable[[str], bool]) -> set[Any]:
    """The ids of the kernels whose sessions are all of notebooks `may_view` refuses (a
    kernel that serves no notebook is not among them)."""
    shown: set[Any] = set()
    hidden: set[Any] = set()
    for session in sessions:
        path = session.get("path") if isinstance(session, dict) else None
        visible = isinstance(path, str) and may_view(path)
        (shown if visible else hidden).add(_kernel_id(session))
    return hidden - shown


def _kernel_id(session: Any) -> Any:
    kernel = session.get("kernel") if isinstance(session, dict) else None
    return kernel.get("id") if isinstance(kernel, dict) else None
