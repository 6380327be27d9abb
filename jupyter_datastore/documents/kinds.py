"""The document kinds a room can hold, by the `format:type` of its room id.

Each kind knows its jupyter_ydoc 4 schema and moves content between the file and the Y
document: `build` (the deterministic first load, client id 0), `read`, `apply` (granular
edits), and the file's bytes (`encode`) for hashing and writing.
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from typing import Any

from pycrdt import Doc, Map, Text

from ..errors import BadRequest, DocumentError
from . import notebook
from .text import apply_text
from .ybuild import Built, notebook_update

__all__ = ["KINDS", "DocumentKind", "kind_of"]


class DocumentKind(ABC):
    format: str
    type: str
    version: str
    """jupyter_ydoc's schema version for this kind (sent to clients in session checks)."""

    @abstractmethod
    def parse(self, model_content: Any) -> Any:
        """Content from what the contents manager returned for this format."""

    @abstractmethod
    def build(self, content: Any, path: str) -> Built:
        """The Yjs update of a fresh document holding `content`, the same bytes every time.

        The `state` map starts with `path` and `dirty: false`, as jupyter_ydoc's loaders set.
        """

    @abstractmethod
    def read(self, doc: Doc[Any]) -> Any: ...

    @abstractmethod
    def apply(self, doc: Doc[Any], content: Any) -> None: ...

    @abstractmethod
    def encode(self, content: Any) -> bytes:
        """The file's bytes for this content."""

    @abstractmethod
    def model(self, content: Any) -> dict[str, Any]:
        """A contents-manager model to save this content with."""


def _fresh(path: str) -> Doc[Any]:
    """A document of client 0 (see `build`) with its `state` map filled in."""
    doc: Doc[Any] = Doc(client_id=0)
    state = doc.get("state", type=Map)
    state["dirty"] = False
    state["path"] = path
    return doc


class NotebookKind(DocumentKind):
    format, type, version = "json", "notebook", "2.0.0"

    def parse(self, model_content: Any) -> Any:
        if isinstance(model_content, str):
            try:
                model_content = json.loads(model_content)
            except ValueError as exc:
                raise DocumentError(f"the notebook is not valid JSON: {exc}") from exc
        return notebook.parse(model_content)

    def build(self, content: Any, path: str) -> Built:
        return notebook_update(notebook.for_document(content), {"dirty": False, "path": path})

    def read(self, doc: Doc[Any]) -> Any:
        return notebook.read(doc)

    def apply(self, doc: Doc[Any], content: Any) -> None:
        notebook.apply(doc, content)

    def encode(self, content: Any) -> bytes:
        return notebook.dumps(content).encode("utf-8")

    def model(self, content: Any) -> dict[str, Any]:
        nb = json.loads(json.dumps(content))
        if nb["nbformat_minor"] < 5:
            for cell in nb["cells"]:
                cell.pop("id", None)
        return {"type": "notebook", "format": "json", "content": nb}


class TextKind(DocumentKind):
    format, type, version = "text", "file", "1.0.0"

    def parse(self, model_content: Any) -> Any:
        return str(model_content)

    def build(self, content: Any, path: str) -> Built:
        doc = _fresh(path)
        text = doc.get("source", type=Text)
        if content:
            text += content
        return Built(doc.get_update(), doc.get_state())

    def read(self, doc: Doc[Any]) -> Any:
        return str(doc.get("source", type=Text))

    def apply(self, doc: Doc[Any], content: Any) -> None:
        text = doc.get("source", type=Text)
        with doc.transaction():
            apply_text(text, str(text), content)

    def encode(self, content: Any) -> bytes:
        return str(content).encode("utf-8")

    def model(self, content: Any) -> dict[str, Any]:
        return {"type": "file", "format": "text", "content": content}


class BlobKind(DocumentKind):
    format, type, version = "base64", "file", "2.0.0"

    def parse(self, model_content: Any) -> Any:
        return (
            base64.b64decode(model_content)
            if isinstance(model_content, str)
            else bytes(model_content)
        )

    def build(self, content: Any, path: str) -> Built:
        doc = _fresh(path)
        doc.get("source", type=Map)["bytes"] = content
        return Built(doc.get_update(), doc.get_state())

    def read(self, doc: Doc[Any]) -> Any:
        return bytes(doc.get("source", type=Map).get("bytes", b""))

    def apply(self, doc: Doc[Any], content: Any) -> None:
        source = doc.get("source", type=Map)
        if source.get("bytes") != content:
            source["bytes"] = content

    def encode(self, content: Any) -> bytes:
        return bytes(content)

    def model(self, content: Any) -> dict[str, Any]:
        return {"type": "file", "format": "base64", "content": base64.b64encode(content).decode()}


KINDS: dict[tuple[str, str], DocumentKind] = {
    (kind.format, kind.type): kind for kind in (NotebookKind(), TextKind(), BlobKind())
}


def kind_of(file_format: str, file_type: str) -> DocumentKind:
    kind = KINDS.get((file_format, file_type))
    if kind is None:
        supported = ", ".join(f"{f}:{t}" for f, t in KINDS)
        raise BadRequest(f"unsupported document kind {file_format}:{file_type} (use {supported})")
    return kind
