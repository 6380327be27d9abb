"""jupyter_server's authorizer, asked as the REST routes ask it.

Before an operation runs, each of its root fields needs the action on the resource that its
REST route's handler asks jupyter_server's `Authorizer` for (`ROOT_FIELDS`): a deployment
whose authorizer refuses, say, `execute` on `kernels` (JupyterHub's scopes, a custom
policy) refuses `runCells` as it refuses POST /api/datastore/executions. A root field not
in the table is refused (deny what is not decided; a test keeps the table whole). The
roles are decided afterwards, field by field, by the resolvers (`context.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_operation_ast,
)
from jupyter_core.utils import ensure_async
from strawberry.extensions import SchemaExtension

from ..errors import Forbidden
from .context import Caller

__all__ = ["ROOT_FIELDS", "Authorized"]

_READ_KERNELS = ("read", "kernels")
_USE_KERNELS = ("write", "kernels")
_RUN = ("execute", "kernels")
_READ_FILES = ("read", "contents")
_WRITE_FILES = ("write", "contents")

ROOT_FIELDS: dict[str, tuple[str, str]] = {
    # queries
    "status": _READ_FILES,  # as GET /api/datastore/status
    "kernels": _READ_KERNELS,
    "kernel": _READ_KERNELS,
    "kernelspecs": ("read", "kernelspecs"),
    "sessions": ("read", "sessions"),
    "terminals": ("read", "terminals"),
    "role": ("read", "contents"),
    "executions": _READ_KERNELS,
    "execution": _READ_KERNELS,
    "events": ("read", "events"),
    "notifications": ("read", "events"),
    "documents": _READ_FILES,
    "notebook": _READ_FILES,
    "forks": _READ_FILES,
    "history": _READ_FILES,
    # mutations
    "startKernel": _USE_KERNELS,
    "interruptKernel": _USE_KERNELS,
    "restartKernel": _USE_KERNELS,
    "shutdownKernel": _USE_KERNELS,
    "createSession": ("write", "sessions"),
    "createTerminal": ("write", "terminals"),
    "setRule": ("write", "contents"),
    "runCells": _RUN,
    "cancelExecution": _RUN,
    "answerInput": _RUN,
    "postEvent": ("write", "events"),
    "markNotification": ("write", "events"),
    "deleteNotification": ("write", "events"),
    "setCellSource": _WRITE_FILES,
    "insertCell": _WRITE_FILES,
    "moveCell": _WRITE_FILES,
    "deleteCell": _WRITE_FILES,
    "save": _WRITE_FILES,
    "undo": _WRITE_FILES,
    "redo": _WRITE_FILES,
    # subscriptions (a field's name may be both a query's and a subscription's: `events`)
    "stateChanges": _READ_KERNELS,  # as /api/datastore/state/subscribe
    "executionProgress": _READ_KERNELS,
    "documentChanges": _READ_FILES,
}
_ALWAYS = frozenset({"__typename", "__schema", "__type"})


def root_fields(
    operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode]
) -> set[str]:
    """The names of the root fields `operation` selects (through fragments too)."""
    names: set[str] = set()

    def collect(selections: SelectionSetNode, seen: frozenset[str]) -> None:
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                names.add(selection.name.value)
            elif isinstance(selection, InlineFragmentNode):
                collect(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is not None and name not in seen:
                    collect(fragment.selection_set, seen | {name})

    collect(operation.selection_set, frozenset())
    return names


class Authorized(SchemaExtension):
    """Ask jupyter_server's authorizer for each root field, once per operation."""

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        context = self.execution_context
        caller = context.context
        document = context.graphql_document
        if isinstance(caller, Caller) and document is not None:
            await _check(caller, document, context.operation_name)
        yield


async def _check(caller: Caller, document: DocumentNode, operation_name: str | None) -> None:
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return  # no such operation: graphql-core refuses it
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    handler = caller.handler
    for name in sorted(root_fields(operation, fragments) - _ALWAYS):
        need = ROOT_FIELDS.get(name)
        if need is None:
            raise Forbidden(f"{name} is not decided by this server's authorizer table")
        action, resource = need
        allowed = await ensure_async(
            handler.authorizer.is_authorized(handler, handler.current_user, action, resource)
        )
        if not allowed:
            raise Forbidden(f"{name} needs the permission to {action} {resource}")
