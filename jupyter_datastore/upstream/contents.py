"""A jupyter_server contents manager over another Jupyter server's `/api/contents`.

Every method is one REST call to the upstream (a stock Jupyter server); its answers are our
models, with their dates as datetimes again so that our own `/api/contents` answers exactly
as a stock server does. The upstream applies its own rules (hidden files, sizes, chunked
uploads, checkpoints kept beside its files); its HTTP errors come through with their status.

`root_dir` is a local folder only for our own bookkeeping (the store and the file ids are
kept under the server's root): no file is read from it.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from jupyter_server.services.contents.checkpoints import AsyncCheckpoints
from jupyter_server.services.contents.manager import AsyncContentsManager
from tornado.web import HTTPError
from traitlets import Type, Unicode, default

from ..errors import http_error
from .http import UpstreamHttp, UpstreamUnreachable

__all__ = ["UpstreamCheckpoints", "UpstreamContentsManager"]

_DATE_KEYS = ("created", "last_modified")


def contents_api(path: str) -> str:
    """The upstream's API path of a contents path ("" is the root)."""
    return "/api/contents/" + path.strip("/")


async def _request(http: UpstreamHttp, method: str, api_path: str, **kwargs: Any) -> Any:
    """One call to the upstream, in a contents manager's terms: an upstream that is away is
    jupyter_server's `HTTPError` 503 (its handlers answer any other exception with a 500 and
    a traceback), as its HTTP errors already are."""
    try:
        return await http.request(method, api_path, **kwargs)
    except UpstreamUnreachable as exc:
        raise http_error(503, exc.detail, reason="Service Unavailable") from exc


def _parse_date(value: Any) -> Any:
    """An ISO 8601 date as jupyter_server writes it (`...Z`) as a datetime; anything else as
    it is."""
    if not isinstance(value, str):
        return value
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return value


def with_dates(model: Any) -> Any:
    """A model (or checkpoint) from the upstream with datetimes for its dates, as a contents
    manager gives them (the handlers send `Last-Modified` from them, and JSON by
    `json_default`); a directory's entries too."""
    if not isinstance(model, dict):
        return model
    for key in _DATE_KEYS:
        if key in model:
            model[key] = _parse_date(model[key])
    if model.get("type") == "directory" and isinstance(model.get("content"), list):
        model["content"] = [with_dates(entry) for entry in model["content"]]
    return model


class UpstreamCheckpoints(AsyncCheckpoints):  # type: ignore[misc]
    """The upstream's own checkpoints, over `/api/contents/{path}/checkpoints`.

    The upstream renames and deletes a file's checkpoints with the file itself, so
    `rename_all_checkpoints` and `delete_all_checkpoints` have nothing left to do.
    """

    @property
    def http(self) -> UpstreamHttp:
        parent = self.parent
        if not isinstance(parent, UpstreamContentsManager):
            raise TypeError("UpstreamCheckpoints belongs to an UpstreamContentsManager")
        return parent.http

    async def create_checkpoint(self, contents_mgr: Any, path: str) -> dict[str, Any]:
        checkpoint = await _request(self.http, "POST", contents_api(path) + "/checkpoints")
        return dict(with_dates(checkpoint))

    async def restore_checkpoint(self, contents_mgr: Any, checkpoint_id: str, path: str) -> None:
        await _request(self.http, "POST", f"{contents_api(path)}/checkpoints/{checkpoint_id}")

    async def delete_checkpoint(self, checkpoint_id: str, path: str) -> None:
        await _request(self.http, "DELETE", f"{contents_api(path)}/checkpoints/{checkpoint_id}")

    async def list_checkpoints(self, path: str) -> list[dict[str, Any]]:
        checkpoints = await _request(self.http, "GET", contents_api(path) + "/checkpoints")
        return [with_dates(checkpoint) for checkpoint in checkpoints or []]

    async def rename_checkpoint(self, checkpoint_id: str, old_path: str, new_path: str) -> None:
        """Nothing to do: the upstream moved the checkpoint with its file."""

    async def rename_all_checkpoints(self, old_path: str, new_path: str) -> None:
        """Nothing to do: the upstream moved the checkpoints with their file."""

    async def delete_all_checkpoints(self, path: str) -> None:
        """Nothing to do: the upstream deleted the checkpoints with their file."""


class UpstreamContentsManager(AsyncContentsManager):  # type: ignore[misc]
    """The contents of an upstream Jupyter server, through its REST API."""

    upstream_url = Unicode(
        config=True,
        help="The upstream Jupyter server's URL, with its base path (http://host:8888/base/).",
    )
    upstream_token = Unicode(config=True, help="The upstream Jupyter server's token.")

    root_dir = Unicode(
        config=True,
        help="A local folder for our own bookkeeping (the store, the file ids); no contents "
        "are read from it. The server's root_dir by default.",
    )

    checkpoints_class = Type(UpstreamCheckpoints, klass=AsyncCheckpoints, config=True)

    notebooks_as_text = True
    """The datastore reads and writes notebooks as text through this manager (see
    `documents.contents.FileIO.as_text`)."""

    _http: UpstreamHttp | None = None

    @default("root_dir")
    def _default_root_dir(self) -> str:
        root = getattr(self.parent, "root_dir", None)
        return root if isinstance(root, str) and root else os.getcwd()

    @property
    def http(self) -> UpstreamHttp:
        """The connection to the upstream, made from the configuration when first used (or
        one given by setting this attribute)."""
        if self._http is None:
            if not self.upstream_url:
                raise ValueError(
                    "no upstream URL is configured (UpstreamContentsManager.upstream_url)"
                )
            self._http = UpstreamHttp(self.upstream_url, self.upstream_token)
        return self._http

    @http.setter
    def http(self, value: UpstreamHttp) -> None:
        self._http = value

    @property
    def upstream(self) -> UpstreamHttp | None:
        """The connection to the upstream, None when none is configured: the datastore's
        sign of supernode mode."""
        if self._http is None and not self.upstream_url:
            return None
        return self.http

    def unavailable(self) -> str | None:
        """Why the files cannot be read or written now (the upstream is away), or None."""
        upstream = self.upstream
        if upstream is None or upstream.reachable:
            return None
        return upstream.error or f"the upstream {upstream.url} cannot be reached"

    def info_string(self) -> str:
        url = self._http.url if self._http is not None else self.upstream_url
        return f"Serving the contents of the upstream Jupyter server {url}"

    def _emit(self, action: str, path: str, source_path: str | None = None) -> None:
        """A contents event, as a stock manager emits it (jupyter_server_fileid hears them)."""
        data = {"action": action, "path": path}
        if source_path is not None:
            data["source_path"] = source_path
        self.emit(data=data)  # type: ignore[no-untyped-call]

    async def _model(
        self,
        path: str,
        *,
        content: bool,
        type: str | None = None,
        format: str | None = None,
        require_hash: bool = False,
    ) -> dict[str, Any]:
        params = {"content": "1" if content else "0", "hash": "1" if require_hash else "0"}
        if type is not None:
            params["type"] = type
        if format is not None:
            params["format"] = format
        model = await _request(self.http, "GET", contents_api(path), params=params)
        if not isinstance(model, dict):
            raise http_error(502, f"the upstream answered GET {path!r} with no model")
        return dict(with_dates(model))

    async def _type(self, path: str) -> str | None:
        """The type of what is at `path` ("directory", "notebook" or "file"), None if nothing."""
        try:
            model = await self._model(path, content=False)
        except HTTPError as exc:
            if exc.status_code == 404:
                return None
            raise
        return str(model.get("type"))

    async def get(
        self,
        path: str,
        content: bool = True,
        type: str | None = None,
        format: str | None = None,
        require_hash: bool = False,
    ) -> dict[str, Any]:
        """The upstream's model. Only a read of the content emits a `get` event: the
        datastore looks at each open file's metadata every `file_poll_interval`, and
        jupyter_server sends every event to every open page."""
        path = path.strip("/")
        model = await self._model(
            path, content=bool(content), type=type, format=format, require_hash=require_hash
        )
        if content:
            self._emit("get", path)
        return model

    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        """PUT the model as it is (a `chunk` of a large upload too: the upstream joins the
        chunks); the upstream's answer is the saved model."""
        path = path.strip("/")
        if "type" not in model:
            # A PUT with an empty model would make the upstream create an untitled file.
            raise http_error(400, "No file type provided")
        if model.get("chunk") in (None, 1):  # hooks see a chunked upload once, at its start
            self.run_pre_save_hooks(model=model, path=path)  # type: ignore[no-untyped-call]
        saved = await _request(self.http, "PUT", contents_api(path), body=model)
        if not isinstance(saved, dict):
            raise http_error(502, f"the upstream answered PUT {path!r} with no model")
        # Post-save hooks take a local file path, which there is none of: they do not run.
        self._emit("save", path)
        return dict(with_dates(saved))

    async def delete_file(self, path: str) -> None:
        path = path.strip("/")
        if not path:
            raise http_error(400, "Can't delete root")
        await _request(self.http, "DELETE", contents_api(path))

    async def rename_file(self, old_path: str, new_path: str) -> None:
        await _request(
            self.http, "PATCH", contents_api(old_path), body={"path": new_path.strip("/")}
        )

    async def copy(self, from_path: str, to_path: str | None = None) -> dict[str, Any]:
        """Copy on the upstream (POST with `copy_from` to the target): the base class's
        semantics, as the upstream's own manager applies them (into a folder: the name
        `name-Copy1.ext`; to a new path: that name; a folder: copied whole, as a stock
        server does)."""
        source = from_path.strip("/")
        if to_path is None:
            target = source.rsplit("/", 1)[0] if "/" in source else ""
        else:
            target = to_path.strip("/")
        model = await _request(self.http, "POST", contents_api(target), body={"copy_from": source})
        if not isinstance(model, dict):
            raise http_error(502, f"the upstream answered a copy of {source!r} with no model")
        self._emit("copy", model["path"], source_path=from_path)
        return dict(with_dates(model))

    async def file_exists(self, path: str) -> bool:
        return await self._type(path) not in (None, "directory")

    async def dir_exists(self, path: str) -> bool:
        path = path.strip("/")
        if not path:
            # The root always exists; not asking also keeps the server's start (which
            # validates `preferred_dir` through this method) free of a request.
            return True
        return await self._type(path) == "directory"

    async def exists(self, path: str) -> bool:
        return path.strip("/") == "" or await self._type(path) is not None

    async def get_kernel_path(self, path: str, model: Any = None) -> str:
        """The folder a notebook's kernel runs in: the notebook's own, as with local files
        (the base class gives the root)."""
        path = path.strip("/")
        if not path or await self._type(path) == "directory":
            return path
        return path.rsplit("/", 1)[0] if "/" in path else ""

    async def is_hidden(self, path: str) -> bool:
        """A segment of the path starts with "." (the upstream applies its own rules too)."""
        return any(segment.startswith(".") for segment in path.strip("/").split("/"))
