"""Deny by default: an explicit decision for every route of the server, ours or another's.

`ROUTES` names each handler class that jupyter_server, JupyterLab's server and the extensions
this server ships with register, and what a logged-in user needs to use it:

    ALLOW         any logged-in user (the JupyterLab page and its per-user state, kernel
                  specs, static files, the login page)
    OURS          our own handlers: each checks the role on the paths it resolves
    OWNER         the owner role on the root (server-wide changes: shutdown, settings of
                  the front end for everybody, extensions, metrics)
    a function    the roles it returns, each on a real path (see `paths.py`): contents,
                  files, kernels (on the notebooks their sessions serve), sessions, ...

A handler class that is not named (an extension installed later, say) needs OWNER on the
root. Requests without a user are left to jupyter_server, which refuses them unless the
handler allows anonymous access (the login page, static files).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest
from ..protocol.jsondepth import MAX_JSON_DEPTH, json_depth_over
from .roles import Role

__all__ = ["ALLOW", "OURS", "OWNER", "ROUTES", "Need", "Requirements", "Resolver", "class_name"]

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Need:
    """A role on a path that the request needs; `path` is as the client sent it."""

    path: str
    role: Role
    operation: str
    hidden: bool = False
    """The path was found by the server (a kernel's notebook, a file id's file): a refusal
    does not name it."""


class Resolver:
    """What a route's decision may look up: implemented over the datastore (gate.py)."""

    def body(self, handler: Any) -> dict[str, Any]:
        """The request's JSON body as an object ({} when it is not one: the handler answers;
        nested too deep to parse safely: a 400)."""
        raw = handler.request.body or b"{}"
        if json_depth_over(raw, MAX_JSON_DEPTH):
            raise BadRequest(f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            model = json.loads(raw)
        except ValueError:
            return {}
        return model if isinstance(model, dict) else {}

    async def kernel_paths(self, kernel_id: str) -> list[str]:
        raise NotImplementedError

    async def session_path(self, session_id: str) -> str | None:
        raise NotImplementedError

    def file_id_path(self, file_id: str) -> str | None:
        raise NotImplementedError


Requirements = Callable[[Any, Resolver], Awaitable[list[Need]]]
ALLOW = "allow"
OURS = "ours"
OWNER = "owner"
Decision = str | Requirements


def class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _path_arg(handler: Any) -> str:
    kwargs, args = handler.path_kwargs or {}, handler.path_args or []
    return str(kwargs.get("path", args[0] if args else "") or "")


def _reading(handler: Any) -> bool:
    return str(handler.request.method) in READ_METHODS


def on_path(read: Role, write: Role) -> Requirements:
    """`read` on the URL's path for reading methods, else `write`."""

    async def needs(handler: Any, resolver: Resolver) -> list[Need]:
        reading = _reading(handler)
        return [
            Need(_path_arg(handler), read if reading else write, "read" if reading else "write")
        ]

    return needs


async def page_of_path(handler: Any, resolver: Resolver) -> list[Need]:
    """A page showing a file or folder: viewer on it (the root's page: any user, who sees in
    it what they may open)."""
    path = _path_arg(handler).strip("/")
    return [Need(path, Role.VIEWER, "open")] if path else []


async def owner_writes(handler: Any, resolver: Resolver) -> list[Need]:
    """Reading for any user; a change that applies to everybody needs owner on the root."""
    return [] if _reading(handler) else [Need("", Role.OWNER, "change server-wide settings")]


def on_root(role: Role, operation: str) -> Requirements:
    async def needs(handler: Any, resolver: Resolver) -> list[Need]:
        return [Need("", role, operation)]

    return needs


async def contents(handler: Any, resolver: Resolver) -> list[Need]:
    """Read: viewer. Write: editor on the path; a copy also viewer on its source; a rename
    also editor on the new path (and `gate.py` checks it does not widen who may read)."""
    path, method = _path_arg(handler), str(handler.request.method)
    if method in READ_METHODS:
        return [Need(path, Role.VIEWER, "read")]
    needs = [Need(path, Role.EDITOR, "write")]
    body = resolver.body(handler)
    target = body.get("copy_from") if method == "POST" else None
    if method == "PATCH":
        target = body.get("path")
    if isinstance(target, str):
        role, operation = (Role.VIEWER, "copy") if method == "POST" else (Role.EDITOR, "move")
        needs.append(Need(target, role, operation))
    if method == "PUT" and _says_trusted(body.get("content")):
        # jupyter_server signs a notebook saved with every cell trusted (documents/trust.py)
        needs.append(Need(path, Role.RUNNER, "save cells marked trusted"))
    return needs


def _says_trusted(content: Any) -> bool:
    """Whether a notebook model's content marks a cell trusted."""
    cells = content.get("cells") if isinstance(content, dict) else None
    return isinstance(cells, list) and any(
        isinstance(cell, dict)
        and isinstance(cell.get("metadata"), dict)
        and bool(cell["metadata"].get("trusted"))
        for cell in cells
    )


async def kernel(handler: Any, resolver: Resolver) -> list[Need]:
    """A kernel's notebooks (the root when none): viewer to read, runner for all else."""
    kernel_id = str((handler.path_kwargs or {}).get("kernel_id", ""))
    reading = _reading(handler) and not str(handler.request.path).endswith("/channels")
    role, operation = (Role.VIEWER, "read a kernel") if reading else (Role.RUNNER, "use a kernel")
    paths = await resolver.kernel_paths(kernel_id)
    return [Need(path, role, operation, hidden=True) for path in paths]


async def kernels(handler: Any, resolver: Resolver) -> list[Need]:
    """The list for anyone (without the kernels of notebooks the user may not view, see
    gate.py); starting a kernel on no notebook: runner on the root."""
    return [] if _reading(handler) else [Need("", Role.RUNNER, "start a kernel")]


async def sessions(handler: Any, resolver: Resolver) -> list[Need]:
    """The list for anyone (filtered per user by the gate); a new session: runner on its path."""
    if _reading(handler):
        return []
    path = resolver.body(handler).get("path")
    if not isinstance(path, str):
        raise BadRequest('a session needs a "path"')
    return [Need(path, Role.RUNNER, "start a session")]


async def session(handler: Any, resolver: Resolver) -> list[Need]:
    session_id = str((handler.path_kwargs or {}).get("session_id", ""))
    path = await resolver.session_path(session_id)
    if path is None:
        return []  # jupyter_server answers 404
    if _reading(handler):
        return [Need(path, Role.VIEWER, "read a session", hidden=True)]
    needs = [Need(path, Role.RUNNER, "change a session", hidden=True)]
    new_path = resolver.body(handler).get("path")
    if handler.request.method == "PATCH" and isinstance(new_path, str):
        needs.append(Need(new_path, Role.RUNNER, "move a session"))
    return needs


async def query_path(handler: Any, resolver: Resolver) -> list[Need]:
    return [Need(handler.get_query_argument("path", ""), Role.VIEWER, "read")]


async def file_id(handler: Any, resolver: Resolver) -> list[Need]:
    """`/api/fileid/path?id=`: viewer on the file the id names (unknown: jupyter_server's 404)."""
    path = resolver.file_id_path(handler.get_query_argument("id", ""))
    return [] if path is None else [Need(path, Role.VIEWER, "read a file by id", hidden=True)]


_JS = "jupyter_server"
_LAB = "jupyterlab_server"
_TERMINALS = on_root(Role.RUNNER, "use a terminal")


async def terminals(handler: Any, resolver: Resolver) -> list[Need]:
    """The list for anyone (empty below runner on the root, see gate.py); a new one: runner."""
    return [] if _reading(handler) else [Need("", Role.RUNNER, "use a terminal")]


ROUTES: dict[str, Decision] = {
    # login, static files, redirects, pages that hold no data
    f"{_JS}.auth.login.LoginFormHandler": ALLOW,
    f"{_JS}.auth.logout.LogoutHandler": ALLOW,
    "jupyter_datastore.auth.identity.UsersLoginHandler": ALLOW,
    f"{_JS}.base.handlers.FileFindHandler": ALLOW,
    f"{_JS}.base.handlers.PublicStaticFileHandler": ALLOW,
    f"{_JS}.base.handlers.Template404": ALLOW,
    f"{_JS}.base.handlers.TrailingSlashHandler": ALLOW,
    f"{_JS}.base.handlers.APIVersionHandler": ALLOW,
    f"{_JS}.base.handlers.MainHandler": ALLOW,
    f"{_JS}.base.handlers.RedirectWithParams": ALLOW,
    "tornado.web.ErrorHandler": ALLOW,
    "tornado.web.RedirectHandler": ALLOW,
    f"{_JS}.base.handlers.PrometheusMetricsHandler": OWNER,
    f"{_JS}.services.api.handlers.APISpecHandler": ALLOW,
    f"{_JS}.services.api.handlers.APIStatusHandler": ALLOW,
    f"{_JS}.services.api.handlers.IdentityHandler": ALLOW,
    f"{_JS}.services.api.handlers.PathResolverHandler": query_path,
    f"{_JS}.services.config.handlers.ConfigHandler": owner_writes,
    f"{_JS}.services.security.handlers.CSPReportHandler": ALLOW,
    f"{_JS}.services.shutdown.ShutdownHandler": OWNER,
    # files and notebooks
    f"{_JS}.services.contents.handlers.ContentsHandler": contents,
    f"{_JS}.services.contents.handlers.CheckpointsHandler": on_path(Role.VIEWER, Role.EDITOR),
    f"{_JS}.services.contents.handlers.ModifyCheckpointsHandler": on_path(Role.EDITOR, Role.EDITOR),
    f"{_JS}.services.contents.handlers.TrustNotebooksHandler": on_path(Role.RUNNER, Role.RUNNER),
    f"{_JS}.services.contents.handlers.NotebooksRedirectHandler": ALLOW,
    f"{_JS}.base.handlers.AuthenticatedFileHandler": on_path(Role.VIEWER, Role.EDITOR),
    f"{_JS}.view.handlers.ViewHandler": on_path(Role.VIEWER, Role.EDITOR),
    f"{_JS}.nbconvert.handlers.NbconvertFileHandler": on_path(Role.VIEWER, Role.VIEWER),
    f"{_JS}.nbconvert.handlers.NbconvertPostHandler": ALLOW,  # converts the posted notebook
    f"{_JS}.services.nbconvert.handlers.NbconvertRootHandler": ALLOW,
    "jupyter_server_fileid.handler.FileIDHandler": query_path,
    "jupyter_server_fileid.handler.FilePathHandler": file_id,
    # kernels, sessions, terminals: code runs as the server's user
    f"{_JS}.services.kernels.handlers.MainKernelHandler": kernels,
    f"{_JS}.services.kernels.handlers.KernelHandler": kernel,
    f"{_JS}.services.kernels.handlers.KernelActionHandler": kernel,
    f"{_JS}.services.kernels.websocket.KernelWebsocketHandler": kernel,
    f"{_JS}.kernelspecs.handlers.KernelSpecResourceHandler": ALLOW,
    f"{_JS}.services.kernelspecs.handlers.MainKernelSpecHandler": ALLOW,
    f"{_JS}.services.kernelspecs.handlers.KernelSpecHandler": ALLOW,
    f"{_JS}.services.sessions.handlers.SessionRootHandler": sessions,
    f"{_JS}.services.sessions.handlers.SessionHandler": session,
    "jupyter_server_terminals.handlers.TermSocket": _TERMINALS,
    "jupyter_server_terminals.api_handlers.TerminalRootHandler": terminals,
    "jupyter_server_terminals.api_handlers.TerminalHandler": _TERMINALS,
    "jupyter_lsp.handlers.LanguageServersHandler": ALLOW,
    "jupyter_lsp.handlers.LanguageServerWebSocketHandler": on_root(
        Role.RUNNER, "use a language server"
    ),
    # jupyter_server's events, shadowed by ours (an extension's routes match first)
    f"{_JS}.services.events.handlers.EventHandler": OWNER,
    f"{_JS}.services.events.handlers.SubscribeWebsocket": OWNER,
    # JupyterLab: its page and each user's own state for anyone; changes for all, owner
    f"{_LAB}.handlers.LabHandler": ALLOW,
    f"{_LAB}.handlers.NotFoundHandler": ALLOW,
    f"{_LAB}.settings_handler.SettingsHandler": owner_writes,
    f"{_LAB}.translations_handler.TranslationsHandler": ALLOW,
    f"{_LAB}.workspaces_handler.WorkspacesHandler": ALLOW,
    f"{_LAB}.listings_handler.ListingsHandler": ALLOW,
    f"{_LAB}.themes_handler.ThemesHandler": ALLOW,
    f"{_LAB}.licenses_handler.LicensesHandler": ALLOW,
    "jupyterlab.handlers.build_handler.BuildHandler": OWNER,
    "jupyterlab.handlers.extension_manager_handler.ExtensionHandler": owner_writes,
    "jupyterlab.handlers.plugin_manager_handler.PluginHandler": owner_writes,
    "jupyterlab.handlers.announcements.CheckForUpdateHandler": ALLOW,
    "jupyterlab.handlers.announcements.NewsHandler": ALLOW,
    # Notebook 7: its pages; those that name a file or folder (the tree page looks it up to
    # redirect) need the viewer role on it, as its contents would
    "notebook.app.TreeHandler": page_of_path,
    "notebook.app.NotebookHandler": page_of_path,
    "notebook.app.FileHandler": page_of_path,
    "notebook.app.ConsoleHandler": ALLOW,  # the page; its kernel is decided as any kernel's
    "notebook.app.TerminalHandler": ALLOW,  # the page; its socket needs runner on the root
    "notebook.app.CustomCssHandler": ALLOW,
}
