"""Notebooks between three forms: the .ipynb file, plain JSON content, and the Y document.

`parse` turns a file's JSON into content: nbformat 4, multi-line strings joined, the
transient `trusted` flag dropped, every cell with an id (missing ones derived from the
position, so a reload gives the same ids). `read` gets the same content back out of a Y
document, `dumps` writes content byte for byte as nbformat does (sorted keys, one-space
indent, multi-line strings split), and `apply` changes a Y document into given content with
the smallest edits it can find (cells matched by id, text diffed by line), so that the
changes merge with concurrent edits instead of replacing them.
"""

from __future__ import annotations

import json
import uuid
from difflib import SequenceMatcher
from typing import Any

from pycrdt import Array, Doc, Map, Text

from ..errors import DocumentError
from .text import apply_text

__all__ = ["TRANSIENT_CELL_KEYS", "apply", "dumps", "new_output", "parse", "read"]

_CELL_TYPES = ("code", "markdown", "raw")
TRANSIENT_CELL_KEYS = ("execution_state", "input_request")
"""Keys of a Y cell that live only in the shared document, never in the file."""
_ID_NAMESPACE = uuid.UUID("6c1d9e0e-64b5-4a7a-9d43-5b1f2d6b0a11")
# Mime types nbformat stores as lists of lines although they are not text/*.
_SPLIT_MIMES = ("application/javascript", "image/svg+xml")


def parse(notebook: Any) -> dict[str, Any]:
    """Content from a notebook file's JSON (any nbformat; older versions are upgraded)."""
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells", []), list):
        raise DocumentError("not a notebook: expected an object with a list of cells")
    if notebook.get("nbformat") != 4:
        notebook = _upgrade(notebook)
    metadata = notebook.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    for key in ("orig_nbformat", "orig_nbformat_minor", "signature"):
        metadata.pop(key, None)
    cells = []
    seen: set[str] = set()
    for index, raw in enumerate(notebook.get("cells") or []):
        if not isinstance(raw, dict) or raw.get("cell_type") not in _CELL_TYPES:
            raise DocumentError(f"cell {index} is not a code, markdown or raw cell")
        cell = _parse_cell(raw)
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or not cell_id or cell_id in seen:
            base = cell_id if isinstance(cell_id, str) and cell_id else "cell"
            cell["id"] = f"{base}-{uuid.uuid5(_ID_NAMESPACE, str(index)).hex[:8]}"
        seen.add(cell["id"])
        cells.append(cell)
    minor = notebook.get("nbformat_minor", 5)
    return {
        "cells": cells,
        "metadata": metadata,
        "nbformat": 4,
        "nbformat_minor": minor if isinstance(minor, int) else 5,
    }


def _upgrade(notebook: dict[str, Any]) -> dict[str, Any]:
    import nbformat

    try:
        node = nbformat.reads(  # type: ignore[no-untyped-call]
            json.dumps(notebook), as_version=4, capture_validation_error={}
        )
    except Exception as exc:
        raise DocumentError(f"cannot read this notebook format: {exc}") from exc
    upgraded: dict[str, Any] = json.loads(json.dumps(node))
    return upgraded


def _joined(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(value)
    return value


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def _joined_bundle(bundle: Any) -> Any:
    if not isinstance(bundle, dict):
        return bundle
    return {k: v if _is_json_mime(k) else _joined(v) for k, v in bundle.items()}


def _parse_cell(raw: dict[str, Any]) -> dict[str, Any]:
    cell_type = raw["cell_type"]
    metadata = raw.get("metadata")
    metadata = (
        {k: v for k, v in metadata.items() if k != "trusted"} if isinstance(metadata, dict) else {}
    )
    cell: dict[str, Any] = {"id": raw.get("id"), "cell_type": cell_type}
    cell["source"] = _joined(raw.get("source", "")) if raw.get("source") is not None else ""
    if not isinstance(cell["source"], str):
        raise DocumentError("a cell's source must be text")
    cell["metadata"] = metadata
    if cell_type == "code":
        outputs = raw.get("outputs")
        cell["execution_count"] = raw.get("execution_count")
        cell["outputs"] = [_parse_output(o) for o in outputs] if isinstance(outputs, list) else []
    elif raw.get("attachments"):
        cell["attachments"] = {k: _joined_bundle(v) for k, v in raw["attachments"].items()}
    for key, value in raw.items():  # keep what we do not know about rather than lose it
        if key not in cell and key not in ("attachments", "outputs", "execution_count"):
            cell[key] = value
    return cell


def _parse_output(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise DocumentError("an output must be an object")
    output: dict[str, Any] = dict(raw)
    kind = output.get("output_type")
    if kind == "stream":
        output["text"] = _joined(output.get("text", ""))
    elif kind in ("execute_result", "display_data") and "data" in output:
        output["data"] = _joined_bundle(output["data"])
    return output


def for_document(content: dict[str, Any]) -> dict[str, Any]:
    """Content as the Y document holds it: code cells also carry `execution_state`."""
    cells = [
        {**cell, "execution_state": "idle"} if cell["cell_type"] == "code" else cell
        for cell in content["cells"]
    ]
    return {**content, "cells": cells}


def read(doc: Doc[Any]) -> dict[str, Any]:
    """Content from a notebook Y document (the inverse of building it from `parse`)."""
    meta = json.loads(str(doc.get("meta", type=Map)))
    cells = []
    seen: set[str] = set()
    for index, cell in enumerate(json.loads(str(doc.get("cells", type=Array)))):
        if not isinstance(cell, dict):
            continue
        for key in TRANSIENT_CELL_KEYS:
            cell.pop(key, None)
        cell_type = cell.setdefault("cell_type", "code")
        cell.setdefault("source", "")
        metadata = cell.setdefault("metadata", {})
        if isinstance(metadata, dict):
            metadata.pop("trusted", None)
        if cell_type == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
        elif "attachments" in cell and not cell["attachments"]:
            del cell["attachments"]
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or not cell_id or cell_id in seen:
            cell["id"] = f"cell-{uuid.uuid5(_ID_NAMESPACE, f'{index}:{cell_id}').hex[:8]}"
        seen.add(cell["id"])
        cells.append(cell)
    return {
        "cells": cells,
        "metadata": meta.get("metadata", {}),
        "nbformat": int(meta.get("nbformat", 4)),
        "nbformat_minor": int(meta.get("nbformat_minor", 5)),
    }


def dumps(content: dict[str, Any]) -> str:
    """The .ipynb text nbformat would write for this content (cell ids dropped before 4.5)."""
    keep_ids = content["nbformat"] > 4 or content["nbformat_minor"] >= 5
    cells = []
    for cell in content["cells"]:
        cell = dict(cell)
        if not keep_ids:
            cell.pop("id", None)
        cell["source"] = _split(cell.get("source", ""))
        if "attachments" in cell:
            cell["attachments"] = {k: _split_bundle(v) for k, v in cell["attachments"].items()}
        if cell.get("cell_type") == "code":
            cell["outputs"] = [_split_output(o) for o in cell.get("outputs", [])]
        cells.append(cell)
    notebook = {**content, "cells": cells}
    return json.dumps(notebook, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def _split(value: Any) -> Any:
    return value.splitlines(True) if isinstance(value, str) else value


def _split_bundle(bundle: Any) -> Any:
    if not isinstance(bundle, dict):
        return bundle
    return {
        k: _split(v) if k.startswith("text/") or k in _SPLIT_MIMES else v for k, v in bundle.items()
    }


def _split_output(output: dict[str, Any]) -> dict[str, Any]:
    kind = output.get("output_type")
    if kind == "stream":
        return {**output, "text": _split(output.get("text", ""))}
    if kind in ("execute_result", "display_data") and "data" in output:
        return {**output, "data": _split_bundle(output["data"])}
    return output


# --- granular updates of a Y document ---


def apply(doc: Doc[Any], content: dict[str, Any]) -> None:
    """Change `doc` into `content` with granular edits, in one transaction."""
    meta = doc.get("meta", type=Map)
    cells = doc.get("cells", type=Array)
    with doc.transaction():
        for key in ("nbformat", "nbformat_minor"):
            if meta.get(key) != content[key]:
                meta[key] = content[key]
        metadata = meta.get("metadata")
        if isinstance(metadata, Map):
            _apply_map(metadata, content["metadata"])
        else:
            meta["metadata"] = Map(content["metadata"])
        current = read(doc)["cells"]
        old_ids = [cell["id"] for cell in current]
        new_ids = [cell["id"] for cell in content["cells"]]
        matcher = SequenceMatcher(None, old_ids, new_ids, autojunk=False)
        # Back to front, so that the indices of the blocks still to do stay valid.
        for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
            if tag == "equal":
                for offset in range(i2 - i1):
                    old, new = current[i1 + offset], content["cells"][j1 + offset]
                    if old != new:
                        _apply_cell(cells, i1 + offset, old, new)
                continue
            if i2 > i1:
                del cells[i1:i2]
            for offset, cell in enumerate(content["cells"][j1:j2]):
                cells.insert(i1 + offset, _new_cell(cell))


def _apply_cell(cells: Array[Any], index: int, old: dict[str, Any], new: dict[str, Any]) -> None:
    ycell = cells[index]
    if old["cell_type"] != new["cell_type"] or not isinstance(ycell, Map):
        cells[index] = _new_cell(new)
        return
    for key in old.keys() - new.keys():
        del ycell[key]
    for key, value in new.items():
        if old.get(key) == value and key in old:
            continue
        current = ycell.get(key)
        if key == "source" and isinstance(current, Text):
            apply_text(current, old.get(key, ""), value)
        elif key == "metadata" and isinstance(current, Map):
            _apply_map(current, value)
        elif key == "outputs":
            ycell[key] = Array([new_output(o) for o in value])
        elif key == "metadata":
            ycell[key] = Map(value)
        elif key == "source":
            ycell[key] = Text(value)
        else:
            ycell[key] = value


def _apply_map(ymap: Map[Any], values: dict[str, Any]) -> None:
    current = json.loads(str(ymap))
    for key in current.keys() - values.keys():
        del ymap[key]
    for key, value in values.items():
        if key not in current or current[key] != value:
            ymap[key] = value


def new_output(output: dict[str, Any]) -> Map[Any]:
    """An output as the Y notebook holds it: a stream's text is a Y.Text."""
    if output.get("output_type") == "stream":
        return Map({**output, "text": Text(output.get("text", ""))})
    return Map(output)


def _new_cell(cell: dict[str, Any]) -> Map[Any]:
    ycell: dict[str, Any] = {
        **cell,
        "source": Text(cell.get("source", "")),
        "metadata": Map(cell.get("metadata", {})),
    }
    if cell["cell_type"] == "code":
        ycell["outputs"] = Array([new_output(o) for o in cell.get("outputs", [])])
        ycell["execution_state"] = "idle"
    return Map(ycell)
