"""The gate: every request to the web application is decided here before its handler runs.

`Gate.install(web_app)` wraps the application's `get_handler_delegate`, through which Tornado
makes the handler of every request, so the handler class of each route (jupyter_server's,
JupyterLab's, any extension's, ours) is replaced by a subclass whose `prepare` first runs the
class's own (authentication: jupyter_server sets `current_user`), then asks `routes.ROUTES`
what the user needs and checks it with the permissions, on real paths (`paths.py`). A
refusal is a 403 (and an audit event); a path that leaves the root a 404.

The same subclasses filter what lists show (`_lists`): a folder listing leaves out what the
user may not open (and a contents model says `writable: false` where they may not edit),
the sessions list the sessions of notebooks they may not view, the kernels list the kernels
that serve only such notebooks, the terminals list is empty below runner on the root.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tornado import web

from ..errors import DatastoreError, Forbidden
from ..state.views import hidden_kernels
from .roles import Role
from .routes import ALLOW, OURS, OWNER, ROUTES, Decision, Need, Resolver, class_name

if TYPE_CHECKING:
    from ..datastore import Datastore

__all__ = ["Gate", "is_ours"]

log = logging.getLogger(__name__)

_DECIDED = "_datastore_gate_decided"
"""Set on a handler once the gate let its request through."""
_HIDDEN_KERNELS = "_datastore_hidden_kernels"
_CONTENTS = "jupyter_server.services.contents.handlers.ContentsHandler"
_SESSIONS = "jupyter_server.services.sessions.handlers.SessionRootHandler"
_KERNELS = "jupyter_server.services.kernels.handlers.MainKernelHandler"
_TERMINALS = "jupyter_server_terminals.api_handlers.TerminalRootHandler"


class DatastoreResolver(Resolver):
    def __init__(self, datastore: Datastore) -> None:
        self.datastore = datastore

    async def kernel_paths(self, kernel_id: str) -> list[str]:
        return await self.datastore.executor.kernel_paths(kernel_id)

    async def session_path(self, session_id: str) -> str | None:
        for model in await self.datastore.executor.sessions.list_sessions():
            if model.get("id") == session_id:
                return str(model.get("path") or "")
        return None

    def file_id_path(self, file_id: str) -> str | None:
        return self.datastore.ids.path(file_id)


class Gate:
    def __init__(self, datastore: Datastore) -> None:
        self.datastore = datastore

    def install(self, web_app: Any) -> None:
        make = web_app.get_handler_delegate

        def get_handler_delegate(request: Any, target_class: type, *args: Any, **kw: Any) -> Any:
            return make(request, self.gated(target_class), *args, **kw)

        web_app.get_handler_delegate = get_handler_delegate

    @functools.cache  # noqa: B019 - one gate per server, a few dozen classes
    def gated(self, cls: type) -> type:
        """`cls` with the gate's check after its own `prepare`, and per-user lists."""
        gate = self

        class Gated(cls):  # type: ignore[valid-type,misc]
            async def prepare(self, *args: Any, **kwargs: Any) -> None:
                result = super().prepare(*args, **kwargs)
                while inspect.isawaitable(result):
                    result = await result
                if self._finished:
                    return
                try:
                    await gate.check(self, cls)
                except web.HTTPError as exc:
                    if not hasattr(self, "get_page_config"):
                        raise
                    # A page of Notebook 7 (or JupyterLab): their error template needs the
                    # page's config, made only once the page is allowed.
                    self.set_status(exc.status_code)
                    self.set_header("Content-Type", "text/plain; charset=UTF-8")
                    self.finish(f"{exc.status_code}: {exc.log_message or exc.reason}\n")

            def finish(self, chunk: Any = None) -> Any:
                if chunk is not None and getattr(self, _DECIDED, False):
                    chunk = gate.filter_response(self, cls, chunk)
                return super().finish(chunk)

            def write_error(self, status_code: int, **kwargs: Any) -> Any:
                unwrapped = _unwrapped(kwargs.get("exc_info"))
                if status_code == 500 and unwrapped is not None:
                    self.set_status(unwrapped[1].status_code, reason=unwrapped[1].reason)
                    return super().write_error(unwrapped[1].status_code, exc_info=unwrapped)
                return super().write_error(status_code, **kwargs)

        Gated.__name__, Gated.__qualname__ = cls.__name__, cls.__qualname__
        Gated.__module__ = cls.__module__
        return Gated

    def decision(self, cls: type) -> Decision:
        return ROUTES.get(class_name(cls), OURS if is_ours(cls) else OWNER)

    async def check(self, handler: Any, cls: type) -> None:
        user = handler.current_user
        decision = self.decision(cls)
        if user is None:
            if class_name(cls) not in ROUTES and not is_ours(cls):
                raise web.HTTPError(403, "this route is not open without logging in")
            return  # jupyter_server refuses it unless the handler allows anonymous access
        datastore = await self.datastore.ready()
        name = getattr(user, "username", None)
        try:
            if decision == OWNER:
                needs = [Need("", Role.OWNER, f"{handler.request.method} {cls.__name__}")]
            elif decision in (ALLOW, OURS):
                needs = []
            else:
                assert callable(decision)
                needs = await decision(handler, DatastoreResolver(datastore))
            real = [(datastore.paths.real(need.path), need) for need in needs]
            for path, need in real:
                try:
                    datastore.permissions.require(name, path, need.role, need.operation)
                except Forbidden:
                    if not need.hidden:
                        raise
                    raise Forbidden(f"{need.operation} needs the role {need.role.label}") from None
            if class_name(cls) == _CONTENTS and handler.request.method == "PATCH":
                self._check_move(name, real)
        except DatastoreError as exc:
            raise web.HTTPError(exc.status, exc.detail) from None
        if class_name(cls) == _KERNELS and handler.request.method == "GET":
            setattr(handler, _HIDDEN_KERNELS, await self._hidden_kernels(handler))
        setattr(handler, _DECIDED, True)

    def _check_move(self, user: str | None, real: list[tuple[str, Need]]) -> None:
        """A move may not let anyone read what they could not read before, unless its owner
        moves it (the rules stay on the old paths: they are not moved with the file)."""
        if len(real) < 2:
            return
        (source, _), (target, _) = real[0], real[1]
        permissions = self.datastore.permissions
        if permissions.role(user, source) >= Role.OWNER:
            return
        gains = permissions.rules.widens(source, target, permissions.groups_of)
        if gains is not None:
            raise Forbidden(
                f"moving {source} to {target} would let {gains} read it; only an owner of"
                f" {source} may move it there"
            )

    def allows(self, handler: Any) -> bool:
        """Whether the gate let this request through (for jupyter_server's authorizer)."""
        return bool(getattr(handler, _DECIDED, False))

    def filter_response(self, handler: Any, cls: type, chunk: Any) -> Any:
        """A list's JSON without what the user may not view (other answers as they are)."""
        change = self._lists.get(class_name(cls))
        if change is None or handler.request.method != "GET" or not isinstance(chunk, str | bytes):
            return chunk
        try:
            model = json.loads(chunk)
        except ValueError:
            return chunk
        return json.dumps(change(handler, model))

    @property
    def _lists(self) -> dict[str, Callable[[Any, Any], Any]]:
        """The lists shown per user, by handler class, and how each is filtered."""
        return {
            _CONTENTS: self._listing,
            _SESSIONS: self._sessions,
            _KERNELS: self._kernels,
            _TERMINALS: self._terminals,
        }

    def _visible(self, handler: Any, path: Any) -> bool:
        return self.datastore.may_view(_user(handler), path)

    def _listing(self, handler: Any, model: Any) -> Any:
        """A contents model as the user sees it: a folder without what they may not open,
        and `writable` false where they may not edit (JupyterLab then opens the file
        read-only and refuses to save it, with its own read-only mark)."""
        if not isinstance(model, dict):
            return model
        user = _user(handler)
        content = model.get("content")
        if model.get("type") == "directory" and isinstance(content, list):
            entries = [
                (entry, self.datastore.role_on(user, entry.get("path")))
                for entry in content
                if isinstance(entry, dict)
            ]
            model["content"] = [
                _writable_for(entry, role) for entry, role in entries if role >= Role.VIEWER
            ]
        return _writable_for(model, self.datastore.role_on(user, model.get("path")))

    def _sessions(self, handler: Any, model: Any) -> Any:
        if isinstance(model, list):
            return [
                s for s in model if isinstance(s, dict) and self._visible(handler, s.get("path"))
            ]
        return model

    def _kernels(self, handler: Any, model: Any) -> Any:
        hidden: set[str] = getattr(handler, _HIDDEN_KERNELS, set())
        if isinstance(model, list):
            return [k for k in model if isinstance(k, dict) and k.get("id") not in hidden]
        return model

    def _terminals(self, handler: Any, model: Any) -> Any:
        return model if self.datastore.permissions.role(_user(handler), "") >= Role.RUNNER else []

    async def _hidden_kernels(self, handler: Any) -> set[str]:
        """The kernels that serve only notebooks the user may not view."""
        sessions = await self.datastore.executor.sessions.list_sessions()
        return hidden_kernels(sessions, lambda path: self._visible(handler, path))


def _writable_for(model: dict[str, Any], role: Role) -> dict[str, Any]:
    if model.get("writable"):
        model["writable"] = role >= Role.EDITOR
    return model


def _user(handler: Any) -> str | None:
    return getattr(handler.current_user, "username", None)


def is_ours(cls: type) -> bool:
    return cls.__module__.startswith("jupyter_datastore.handlers")


_AWAY = (502, 503, 504)


def _unwrapped(exc_info: Any) -> tuple[type, web.HTTPError, Any] | None:
    """A 500 that wraps an error saying that what kernels run on is away or failing
    (502, 503, 504: a kernel gateway, supernode mode's upstream), as jupyter_server's
    sessions handler wraps any failure to create a session: that error, to answer with
    its own status (a client may retry a 503, not a 500)."""
    exc = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else None
    cause = getattr(exc, "__cause__", None)
    if not isinstance(exc, web.HTTPError) or not isinstance(cause, web.HTTPError):
        return None
    return (type(cause), cause, cause.__traceback__) if cause.status_code in _AWAY else None
