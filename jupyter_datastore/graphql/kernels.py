"""The Jupyter server's own objects over GraphQL: kernels, kernel specs, sessions, terminals,
and the caller's role on a path, each decided as its REST route decides it (`auth/routes.py`,
the lists filtered as `auth/gate.py` filters them).

A kernel is the kernel of the notebooks its sessions serve (the root when it serves none):
reading it needs viewer on them, using it runner on all of them. A kernel whose notebooks
the caller may view none of is not theirs to know of: it is absent from `kernels` and
"not found" to everything else, as an unknown kernel id is.
"""

from __future__ import annotations

import posixpath
from typing import Any

import strawberry
from jupyter_core.utils import ensure_async
from strawberry.scalars import JSON

from ..auth import Role, Rule
from ..errors import BadRequest, Forbidden, NotFound
from ..state.sources import (
    kernel_entries,
    kernelspec_entries,
    session_entries,
    terminal_entries,
)
from ..state.views import hidden_kernels
from .context import Caller, Info

__all__ = ["Mutation", "Query", "Subscription"]


@strawberry.type(description="A running kernel, as GET /api/kernels shows it.")
class Kernel:
    id: strawberry.ID
    name: str = strawberry.field(description="The name of its kernel spec.")
    execution_state: str | None = strawberry.field(
        description="starting, idle, busy, restarting, dead, ... (the freshest known)."
    )
    last_activity: str | None = strawberry.field(description="ISO 8601 time, UTC.")
    connections: int = strawberry.field(description="WebSocket connections to it.")
    paths: list[str] = strawberry.field(
        description="The notebooks its sessions serve that the caller may view."
    )


@strawberry.type(description="A kernel spec: a kind of kernel this server can start.")
class KernelSpec:
    name: str
    display_name: str
    language: str | None


@strawberry.type(description="The kernel specs of this server, and the default one.")
class KernelSpecs:
    default: str | None = strawberry.field(
        description="The name of the kernel spec started when none is named."
    )
    specs: list[KernelSpec]


@strawberry.type(description="The kernel a session runs.")
class SessionKernel:
    id: strawberry.ID
    name: str


@strawberry.type(description="A session: a notebook (or console, file) and its kernel.")
class Session:
    id: strawberry.ID
    path: str
    name: str | None
    type: str = strawberry.field(description="notebook, console or file.")
    kernel: SessionKernel | None


@strawberry.type(description="A terminal of the server.")
class Terminal:
    name: str
    last_activity: str | None = strawberry.field(description="ISO 8601 time, UTC.")


@strawberry.type(
    description="The caller's role on a path and the rule set on it, as GET "
    "/api/datastore/permissions/{path} shows them."
)
class RoleInfo:
    path: str = strawberry.field(description="The real path ('' is the root).")
    role: str = strawberry.field(description="The caller's role: none, viewer, ..., owner.")
    rule: JSON | None = strawberry.field(
        description='The rule set on this path ({"users", "groups", "default"}); null: none.'
    )
    decided_by: str | None = strawberry.field(
        description="The nearest path, from this one up, whose rule decides; null: none does."
    )
    default_role: str = strawberry.field(description="The role where no rule decides.")
    user: str | None = strawberry.field(description="The caller.")


# --- reading the managers' models ---


def _kernel(model: dict[str, Any], paths: list[str]) -> Kernel:
    return Kernel(
        id=strawberry.ID(str(model["id"])),
        name=str(model.get("name") or ""),
        execution_state=model.get("execution_state"),
        last_activity=_text(model.get("last_activity")),
        connections=int(model.get("connections") or 0),
        paths=paths,
    )


def _session(model: dict[str, Any]) -> Session:
    kernel = model.get("kernel")
    return Session(
        id=strawberry.ID(str(model["id"])),
        path=str(model.get("path") or ""),
        name=_text(model.get("name")),
        type=str(model.get("type") or ""),
        kernel=SessionKernel(id=strawberry.ID(str(kernel["id"])), name=str(kernel.get("name")))
        if isinstance(kernel, dict) and kernel.get("id")
        else None,
    )


def _terminal(model: dict[str, Any]) -> Terminal:
    return Terminal(name=str(model["name"]), last_activity=_text(model.get("last_activity")))


def _role_info(caller: Caller, path: str) -> RoleInfo:
    described = caller.datastore.permissions.describe(path, caller.user)
    return RoleInfo(
        path=described["path"],
        role=described["role"],
        rule=described["rule"],
        decided_by=described["decided_by"],
        default_role=described["default_role"],
        user=described["user"],
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# --- decisions, as the gate makes them for REST ---


async def _sessions(caller: Caller) -> list[dict[str, Any]]:
    return list((await session_entries(caller.datastore.services)).values())


def _visible_paths(caller: Caller, sessions: list[dict[str, Any]], kernel_id: str) -> list[str]:
    """The notebooks a kernel serves (by `sessions`) that the caller may view, sorted."""
    return sorted(
        {
            str(s.get("path") or "")
            for s in sessions
            if (s.get("kernel") or {}).get("id") == kernel_id and caller.may_view(s.get("path"))
        }
    )


def _hidden(caller: Caller, sessions: list[dict[str, Any]]) -> set[str]:
    """The kernels that serve only notebooks the caller may not view (as GET /api/kernels
    leaves them out)."""
    return {str(k) for k in hidden_kernels(sessions, caller.may_view)}


async def _kernel_seen(caller: Caller, kernel_id: str) -> Kernel:
    """The kernel as the caller sees it (its model after an action, say)."""
    model = await _kernel_model(caller, kernel_id)
    return _kernel(model, _visible_paths(caller, await _sessions(caller), kernel_id))


async def _known_kernel(caller: Caller, kernel_id: str) -> None:
    """NotFound unless the kernel runs and the caller may know of it."""
    known = kernel_id in caller.datastore.services.kernels
    if not known or kernel_id in _hidden(caller, await _sessions(caller)):
        raise NotFound(f"no kernel {kernel_id}")


async def _require_on_kernel(caller: Caller, kernel_id: str, needed: Role, operation: str) -> None:
    """`needed` on every notebook the kernel serves (the root when none), as REST's kernel
    routes: a kernel the caller may not know of is not found; a refusal does not name the
    notebooks (the caller may view only some of them)."""
    await _known_kernel(caller, kernel_id)
    for path in await caller.datastore.executor.kernel_paths(kernel_id):
        try:
            caller.require(path, needed, operation)
        except Forbidden:
            raise Forbidden(f"{operation} needs the role {needed.label}") from None


async def _kernel_model(caller: Caller, kernel_id: str) -> dict[str, Any]:
    datastore = caller.datastore
    entries = await kernel_entries(datastore.services, datastore.kernel_watcher.states)
    model = entries.get(kernel_id)
    if model is None:
        raise NotFound(f"no kernel {kernel_id}")
    return dict(model)


def _require_spec(caller: Caller, name: str) -> None:
    """NotFound for a kernel spec this server does not have (checked before a start: a
    failed start leaves jupyter_server half-registered and logging a traceback)."""
    specs = caller.datastore.services.kernels.kernel_spec_manager.find_kernel_specs()
    if name not in specs:
        raise NotFound(f"no kernel spec named {name!r}")


async def _use_kernel(caller: Caller, id: strawberry.ID, action: str) -> str:
    """Call the kernel manager's `action` (interrupt_kernel, restart_kernel,
    shutdown_kernel) on a kernel the caller may use; its id."""
    kernel_id = _check_id(str(id), "kernel")
    await _require_on_kernel(caller, kernel_id, Role.RUNNER, "use a kernel")
    manager = caller.datastore.services.kernels
    try:
        await ensure_async(getattr(manager, action)(kernel_id))
    except KeyError:
        raise NotFound(f"no kernel {kernel_id}") from None
    return kernel_id


def _check_id(value: str, what: str) -> str:
    if not value or len(value) > 200:
        raise BadRequest(f"a {what} id must be 1 to 200 characters")
    return value


@strawberry.type
class Query:
    @strawberry.field(
        description="The running kernels, without those that serve only notebooks the "
        "caller may not view (as GET /api/kernels)."
    )
    async def kernels(self, info: Info) -> list[Kernel]:
        caller = info.context
        datastore = caller.datastore
        entries = await kernel_entries(datastore.services, datastore.kernel_watcher.states)
        sessions = await _sessions(caller)
        hidden = _hidden(caller, sessions)
        return [
            _kernel(model, _visible_paths(caller, sessions, kernel_id))
            for kernel_id, model in entries.items()
            if kernel_id not in hidden
        ]

    @strawberry.field(
        description="One kernel (as GET /api/kernels/{id}: viewer on its notebooks, the root "
        "when it serves none); not found when it is unknown or serves only notebooks the "
        "caller may not view."
    )
    async def kernel(self, info: Info, id: strawberry.ID) -> Kernel:
        caller = info.context
        kernel_id = _check_id(str(id), "kernel")
        await _require_on_kernel(caller, kernel_id, Role.VIEWER, "read a kernel")
        return await _kernel_seen(caller, kernel_id)

    @strawberry.field(description="The kernel specs of this server (any logged-in user).")
    async def kernelspecs(self, info: Info) -> KernelSpecs:
        services = info.context.datastore.services
        entries = await kernelspec_entries(services)
        specs = [
            KernelSpec(
                name=name,
                display_name=str(entry["spec"].get("display_name") or name),
                language=entry["spec"].get("language"),
            )
            for name, entry in sorted(entries.items())
        ]
        return KernelSpecs(
            default=getattr(services.kernels, "default_kernel_name", None), specs=specs
        )

    @strawberry.field(
        description="The sessions of the notebooks the caller may view (as GET /api/sessions)."
    )
    async def sessions(self, info: Info) -> list[Session]:
        caller = info.context
        return [_session(s) for s in await _sessions(caller) if caller.may_view(s.get("path"))]

    @strawberry.field(
        description="The terminals (as GET /api/terminals: empty below runner on the root)."
    )
    def terminals(self, info: Info) -> list[Terminal]:
        caller = info.context
        if not caller.may("", Role.RUNNER):
            return []
        return [_terminal(t) for t in terminal_entries(caller.datastore.services).values()]

    @strawberry.field(
        description="The caller's role on a path and its rule (as GET "
        "/api/datastore/permissions/{path}: viewer on the path); '' is the root."
    )
    def role(self, info: Info, path: str = "") -> RoleInfo:
        caller = info.context
        real = caller.require(path, Role.VIEWER, "read permissions")
        return _role_info(caller, real)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Start a kernel that serves no notebook (as POST /api/kernels: runner on "
        "the root); `path` is its working directory, `name` its kernel spec (default: the "
        "server's default)."
    )
    async def start_kernel(
        self, info: Info, name: str | None = None, path: str | None = None
    ) -> Kernel:
        caller = info.context
        manager = caller.datastore.services.kernels
        where = caller.real(path) if path is not None else None
        caller.require("", Role.RUNNER, "start a kernel")
        spec = name or manager.default_kernel_name
        _require_spec(caller, spec)
        kernel_id = str(await ensure_async(manager.start_kernel(kernel_name=spec, path=where)))
        model = await ensure_async(manager.kernel_model(kernel_id))
        return _kernel(model, [])

    @strawberry.mutation(
        description="Interrupt a kernel (runner on every notebook it serves); true when sent."
    )
    async def interrupt_kernel(self, info: Info, id: strawberry.ID) -> bool:
        await _use_kernel(info.context, id, "interrupt_kernel")
        return True

    @strawberry.mutation(
        description="Restart a kernel (runner on every notebook it serves); the kernel after."
    )
    async def restart_kernel(self, info: Info, id: strawberry.ID) -> Kernel:
        kernel_id = await _use_kernel(info.context, id, "restart_kernel")
        return await _kernel_seen(info.context, kernel_id)

    @strawberry.mutation(
        description="Shut a kernel down (runner on every notebook it serves); true when done."
    )
    async def shutdown_kernel(self, info: Info, id: strawberry.ID) -> bool:
        await _use_kernel(info.context, id, "shutdown_kernel")
        return True

    @strawberry.mutation(
        description="A session for a path, with a new kernel (as POST /api/sessions: runner "
        "on the path); the path's session when it has one already."
    )
    async def create_session(
        self,
        info: Info,
        path: str,
        type: str = "notebook",
        name: str | None = None,
        kernel_name: str | None = None,
    ) -> Session:
        caller = info.context
        real = caller.require(path, Role.RUNNER, "start a session")
        if not real:
            raise BadRequest("a session needs a path below the root")
        if not type:
            raise BadRequest("a session needs a type: notebook, console or file")
        manager = caller.datastore.services.sessions
        if await ensure_async(manager.session_exists(path=real)):
            return _session(await manager.get_session(path=real))
        spec = kernel_name or caller.datastore.services.kernels.default_kernel_name
        _require_spec(caller, spec)
        model = await manager.create_session(
            path=real, kernel_name=spec, name=name or posixpath.basename(real), type=type
        )
        return _session(model)

    @strawberry.mutation(description="A new terminal (runner on the root).")
    def create_terminal(self, info: Info) -> Terminal:
        caller = info.context
        caller.require("", Role.RUNNER, "use a terminal")
        terminals = caller.datastore.services.terminals
        if terminals is None:
            raise NotFound("terminals are not enabled on this server")
        return _terminal(terminals.create())

    @strawberry.mutation(
        description="Set the rule on a path, or remove it with null (as PUT and DELETE "
        "/api/datastore/permissions/{path}: owner on the path); the role info after."
    )
    async def set_rule(self, info: Info, path: str, rule: JSON | None) -> RoleInfo:
        caller = info.context
        real = caller.real(path)
        parsed = None if rule is None else Rule.parse(rule)
        caller.require(real, Role.OWNER, "share")
        await caller.datastore.permissions.set_rule(real, parsed, caller.user)
        return _role_info(caller, real)


Subscription = None
