"""JupyterLab's global presence (`JupyterLab:globalAwareness`) as one user may see it.

Each JupyterLab tab shows in that room who it is (`user`), the paths of the documents it has
open (`documents`) and its current widget (`current`, `"<factory>:<path>"`, say
`"notebook:team/a.ipynb"`). A receiver sees every person, but only the paths of documents
they may view: the others are left out of `documents`, and a `current` they may not view
is null. Pure: the caller says what may be viewed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..protocol.awareness import AwarenessEntry

__all__ = ["presence_entries", "presence_view"]


def presence_view(state: Any, may_view: Callable[[str], bool]) -> Any:
    """`state` (one client's awareness state, parsed) without the paths `may_view` refuses."""
    if not isinstance(state, dict):
        return state
    view = dict(state)
    documents = state.get("documents")
    if isinstance(documents, list):
        view["documents"] = [p for p in documents if isinstance(p, str) and may_view(p)]
    elif "documents" in state:
        view["documents"] = []
    current = state.get("current")
    if current is not None:
        _, _, path = str(current).partition(":")
        if not (isinstance(current, str) and path and may_view(path)):
            view["current"] = None
    return view


def presence_entries(
    entries: list[AwarenessEntry], may_view: Callable[[str], bool]
) -> list[AwarenessEntry]:
    """Awareness entries of the presence room as a receiver may see them (re-encoded only
    where a path was left out)."""
    shown = []
    for entry in entries:
        state = None if entry.removed else json.loads(entry.state)
        view = presence_view(state, may_view)
        if view == state:
            shown.append(entry)
        else:
            shown.append(AwarenessEntry(entry.client_id, entry.clock, json.dumps(view)))
    return shown
