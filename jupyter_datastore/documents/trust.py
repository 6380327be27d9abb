"""Which cells' outputs a browser may render as active content (HTML, JavaScript, widgets).

Jupyter's notion of trust, kept in the shared document as JupyterLab keeps it: a code cell's
metadata `trusted` (JupyterLab reads it when it makes a cell, and its outputs render as
HTML, JavaScript and widgets only when it is true). The file never holds the flag: a notebook
is trusted on this machine when the contents manager's notary knows its signature.

- Loading: each code cell is trusted when the file's signature is known, or when it has no
  output that could be active (nbformat's own rule); the signature is checked only when some
  output could be.
- Saving: a notebook whose code cells are all trusted (or safe) is signed, as jupyter_server
  signs what it saves, so that it is trusted when it is loaded again.
- Running: a cell the server runs is trusted, as JupyterLab trusts a cell it runs
  (`execution.cells.mark_running`).
- Between users: a user below `runner` cannot make a cell trusted. Their change that sets a
  cell's flag, changes a trusted cell's outputs or inserts a cell is integrated, and in the
  same broadcast the server clears the flag of each cell it touched (`TrustScreen`). A runner
  can run any code as the server's user, so what they mark trusted gives them nothing more;
  an editor could otherwise put a script into another user's page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import nbformat
from pycrdt import Array, Doc, Map

__all__ = ["Notary", "TrustScreen", "all_trusted", "marked", "trust_all", "unsafe"]

log = logging.getLogger(__name__)

_ACTIVE_OUTPUTS = ("execute_result", "display_data")
_SAFE_KEYS = {"output_type", "execution_count", "metadata"}


def unsafe(cell: dict[str, Any]) -> bool:
    """Whether a code cell has an output that could be active (nbformat's rule: a display or
    a result carrying data)."""
    return any(
        isinstance(output, dict)
        and output.get("output_type") in _ACTIVE_OUTPUTS
        and bool(output.keys() - _SAFE_KEYS)
        for output in cell.get("outputs") or ()
    )


def marked(content: dict[str, Any], signed: bool) -> dict[str, Any]:
    """Notebook content with each code cell's `trusted` flag set (a copy; `content` is
    left as the file has it)."""
    cells = [
        {**cell, "metadata": {**cell["metadata"], "trusted": signed or not unsafe(cell)}}
        if cell["cell_type"] == "code"
        else cell
        for cell in content["cells"]
    ]
    return {**content, "cells": cells}


def all_trusted(doc: Doc[Any], content: dict[str, Any]) -> bool:
    """Whether every code cell of a notebook is trusted or safe, so that the file may be
    signed; False also when no cell has an output that needs it (nothing to sign).
    `content`: what `notebook.read` gives of `doc` (its cells in the same order, without
    their flags), so that only the flags are read from the Y document."""
    ycells = [ycell for ycell in doc.get("cells", type=Array) if isinstance(ycell, Map)]
    needs_signature = False
    for ycell, cell in zip(ycells, content["cells"], strict=False):
        if cell["cell_type"] != "code" or not unsafe(cell):
            continue
        metadata = ycell.get("metadata")
        if not (isinstance(metadata, Map) and metadata.get("trusted") is True):
            return False
        needs_signature = True
    return needs_signature


def trust_all(doc: Doc[Any]) -> None:
    """Mark every code cell of a notebook Y document trusted."""
    with doc.transaction():
        for ycell in doc.get("cells", type=Array):
            if isinstance(ycell, Map) and ycell.get("cell_type") == "code":
                metadata = ycell.get("metadata")
                if not isinstance(metadata, Map):
                    ycell["metadata"] = Map({"trusted": True})
                elif metadata.get("trusted") is not True:
                    metadata["trusted"] = True


def _node(content: dict[str, Any]) -> Any:
    return nbformat.from_dict(content)  # type: ignore[no-untyped-call]


class Notary:
    """The contents manager's notary (nbformat's signatures of trusted notebooks), or none:
    then nothing loaded is signed and nothing saved is signed."""

    def __init__(self, contents_manager: Any) -> None:
        self._notary = getattr(contents_manager, "notary", None)

    def signed(self, content: dict[str, Any]) -> bool:
        """Whether the notebook's signature is known; checked only if it has outputs that
        need it (a notebook with none renders the same either way)."""
        if self._notary is None or not any(
            cell["cell_type"] == "code" and unsafe(cell) for cell in content["cells"]
        ):
            return False
        try:
            return bool(self._notary.check_signature(_node(content)))
        except Exception:  # a broken signature store: untrusted, as jupyter_server does
            log.warning("cannot check the signature of a notebook", exc_info=True)
            return False

    def sign(self, content: dict[str, Any]) -> None:
        if self._notary is None:
            return
        try:
            self._notary.sign(_node(content))
        except Exception:
            log.warning("cannot sign a notebook", exc_info=True)


class TrustScreen:
    """Clears the `trusted` flag of the cells a change touched, for changes of users who
    may not trust (see the module docstring). Used by a room around one peer's update."""

    def __init__(self, may_trust: Callable[[str | None], bool]) -> None:
        self._may_trust = may_trust

    def screens(self, user: str | None) -> bool:
        return not self._may_trust(user)

    @contextmanager
    def watching(self, doc: Doc[Any]) -> Iterator[None]:
        touched: list[Map[Any]] = []
        cells = doc.get("cells", type=Array)

        def collect(events: list[Any]) -> None:
            for event in events:
                path = list(event.path)
                keys = getattr(event, "keys", {})
                if not path:  # cells inserted into the list
                    for item in getattr(event, "delta", ()):
                        touched.extend(c for c in item.get("insert", ()) if isinstance(c, Map))
                elif (
                    (len(path) == 1 and {"metadata", "outputs"} & set(keys))
                    or (len(path) > 1 and path[1] == "outputs")
                    or (path[1:] == ["metadata"] and "trusted" in keys)
                ):
                    cell = cells[path[0]]
                    if isinstance(cell, Map):
                        touched.append(cell)

        subscription = cells.observe_deep(collect)
        try:
            yield
        finally:
            cells.unobserve(subscription)
        self._untrust(doc, touched)

    @staticmethod
    def _untrust(doc: Doc[Any], cells: list[Map[Any]]) -> None:
        with doc.transaction():
            for cell in cells:
                metadata = cell.get("metadata")
                if isinstance(metadata, Map) and metadata.get("trusted"):
                    metadata["trusted"] = False
