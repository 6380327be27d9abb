"""Reading and writing documents through the Jupyter ContentsManager.

Any contents manager works (jupytext, S3, database-backed ones): documents are loaded and
saved as the manager's own notebook and file models. For jupyter_server's stock file
managers with no save hooks (and supernode mode's, whose upstream is one), notebooks take a
faster road through the same manager: they are read and written as text (`type="file"`),
parsed and serialised here exactly as nbformat would, which skips a JSON-schema validation
and a notebook signature on every load and save (a few hundred milliseconds for a thousand
cells).

Changes on disk are recognised by content: a cheap signature (modification time and size)
says when to look, the file's SHA-256 says whether anything really changed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.services.contents.filemanager import (
    AsyncFileContentsManager,
    FileContentsManager,
)
from jupyter_server.services.contents.largefilemanager import (
    AsyncLargeFileManager,
    LargeFileManager,
)
from tornado.web import HTTPError

from ..errors import DatastoreError, DocumentError, NotFound, Unavailable, http_message
from .kinds import DocumentKind
from .trust import Notary

__all__ = ["FileContent", "FileIO", "Signature", "sha256"]

_STOCK_MANAGERS = (
    FileContentsManager,
    AsyncFileContentsManager,
    LargeFileManager,
    AsyncLargeFileManager,
)


@dataclass(frozen=True)
class Signature:
    last_modified: Any
    size: int | None


class FileContent:
    """A file's content, hash and signature. The content is parsed when first asked for:
    a document resumed from the store only compares the hash (a 1 MB notebook's JSON takes
    25 ms to parse)."""

    def __init__(self, parse: Callable[[], Any], file_hash: str, signature: Signature) -> None:
        self._parse = parse
        self.hash = file_hash
        self.signature = signature

    @functools.cached_property
    def content(self) -> Any:
        return self._parse()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _signature(model: dict[str, Any]) -> Signature:
    return Signature(model.get("last_modified"), model.get("size"))


def _canonical_hash(content: Any) -> str:
    if isinstance(content, bytes):
        return sha256(content)
    if isinstance(content, str):
        return sha256(content.encode("utf-8"))
    return sha256(json.dumps(content, sort_keys=True).encode("utf-8"))


class FileIO:
    def __init__(self, contents_manager: Any) -> None:
        self.cm = contents_manager
        self.notary = Notary(contents_manager)
        hooks = any(
            getattr(contents_manager, name, None)
            for name in ("pre_save_hook", "post_save_hook", "_pre_save_hooks", "_post_save_hooks")
        )
        self.local = type(contents_manager) in _STOCK_MANAGERS and not hooks
        """Files on this machine: a file's signature is a `stat`."""
        self.as_text = not hooks and (
            self.local or bool(getattr(contents_manager, "notebooks_as_text", False))
        )
        """Notebooks read and written as text, parsed and serialised here (stock managers,
        and supernode mode's, whose upstream validates and signs a notebook model: 150 ms
        for 1,000 cells against 10 ms as text)."""

    def unavailable(self) -> str | None:
        """Why files cannot be written now, or None: a contents manager whose files live
        elsewhere (supernode mode's upstream) says so while that place is away."""
        away = getattr(self.cm, "unavailable", None)
        return away() if callable(away) else None

    async def _get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            model: dict[str, Any] = await ensure_async(self.cm.get(path, **kwargs))
        except HTTPError as exc:
            if exc.status_code == 404:
                raise NotFound(f"no file at {path}") from exc
            raise _error(exc, f"cannot read {path}") from exc
        if model.get("type") == "directory":
            raise NotFound(f"{path} is a directory")
        return model

    async def exists(self, path: str) -> bool:
        """Whether the contents manager serves a file there (hidden files only if allowed)."""
        try:
            await self._get(path, content=False)
        except NotFound:
            return False
        return True

    async def signature(self, path: str) -> Signature | None:
        """The file's signature, or None when there is no file.

        Stock managers: a `stat` of the file, since every `get` emits a contents event that
        jupyter_server pushes to each browser tab, once a second per open file otherwise.
        """
        if self.local:
            try:
                info = os.stat(self.cm._get_os_path(path))
            except (OSError, HTTPError):
                return None
            return None if stat.S_ISDIR(info.st_mode) else Signature(info.st_mtime_ns, info.st_size)
        try:
            return _signature(await self._get(path, content=False))
        except NotFound:
            return None

    async def read(self, path: str, kind: DocumentKind) -> FileContent:
        # The signature is taken first: a change made while reading shows up at the next look.
        before = await self.signature(path) if self.local else None
        if kind.type == "notebook" and self.as_text:
            model = await self._get(path, type="file", format="text", content=True)
            text = model["content"]
            return FileContent(
                lambda: kind.parse(text), sha256(text.encode("utf-8")), before or _signature(model)
            )
        model = await self._get(
            path,
            type=kind.type,
            format=None if kind.type == "notebook" else kind.format,
            content=True,
            require_hash=True,
        )
        content = kind.parse(model["content"])
        file_hash = model.get("hash") or _canonical_hash(content)
        return FileContent(lambda: content, file_hash, before or _signature(model))

    def file_bytes(self, kind: DocumentKind, content: Any) -> bytes | None:
        """The bytes `write` will put in the file, when this manager lets us know them."""
        return kind.encode(content) if self.as_text else None

    async def write(
        self, path: str, kind: DocumentKind, content: Any, data: bytes | None = None
    ) -> tuple[str, Signature]:
        """Save content (`data`: its `file_bytes`, if known); return the new hash and signature."""
        try:
            if self.as_text:
                data = kind.encode(content) if data is None else data
                if kind.format == "base64":
                    model = kind.model(content)
                else:
                    model = {"type": "file", "format": "text", "content": data.decode("utf-8")}
                saved = await ensure_async(self.cm.save(model, path))
                signature = await self.signature(path) if self.local else None
                return sha256(data), signature or _signature(saved)
            await ensure_async(self.cm.save(kind.model(content), path))
            saved = await ensure_async(self.cm.get(path, content=False, require_hash=True))
            return saved.get("hash") or _canonical_hash(content), _signature(saved)
        except HTTPError as exc:
            raise _error(exc, f"cannot save {path}") from exc


def _error(exc: HTTPError, what: str) -> DatastoreError:
    """A contents manager's error as ours: 503 (its files are away for now) stays 503."""
    kind = Unavailable if exc.status_code == 503 else DocumentError
    return kind(f"{what}: {http_message(exc)}")
