"""The one GraphQL schema: each module of this package gives its part of the root types
(`Query`, `Mutation`, `Subscription`, or None), merged here with the limits and the error
codes every operation gets. The SDL is kept in `schema.graphql` next to this file (a test
keeps it equal to `sdl()`; `python -m jupyter_datastore.graphql` writes it)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import strawberry
from strawberry.tools import merge_types
from strawberry.types.graphql import OperationType

from . import documents, events, executions, kernels, server
from .authorize import Authorized
from .errors import coded
from .limits import Limits
from .sharing import SharingExecutor

__all__ = ["SDL_PATH", "make_schema", "sdl"]

PARTS: tuple[ModuleType, ...] = (server, kernels, executions, events, documents)
SDL_PATH = Path(__file__).with_name("schema.graphql")


def _root(name: str) -> Any:
    parts = tuple(part for module in PARTS if (part := getattr(module, name, None)) is not None)
    return merge_types(name, parts) if parts else None


class CodedSchema(strawberry.Schema):
    """Every result it gives has its errors coded (`errors.py`): Strawberry hands each
    result's errors (a query's, a mutation's, each of a subscription's, those found before
    it ran) to `process_errors` before the result goes out, as the very list the result
    holds."""

    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        """Coded in place, and not logged here (Strawberry logs each with a traceback): a
        refusal or a bad request is the caller's; `errors.coded` logs the server's own
        failures."""
        errors[:] = [coded(error) for error in errors]

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> Any:
        """One query or mutation (a subscription is refused here: it needs a WebSocket, and
        Strawberry would run it as a query that cannot return anything)."""
        allowed = set(allowed_operation_types or OperationType) - {OperationType.SUBSCRIPTION}
        return await super().execute(
            query,
            variable_values=variable_values,
            context_value=context_value,
            root_value=root_value,
            operation_name=operation_name,
            allowed_operation_types=allowed,
            operation_extensions=operation_extensions,
        )


def make_schema() -> strawberry.Schema:
    return CodedSchema(
        query=_root("Query"),
        mutation=_root("Mutation"),
        subscription=_root("Subscription"),
        extensions=[Limits, Authorized],
        execution_context_class=SharingExecutor,
    )


def sdl(schema: strawberry.Schema | None = None) -> str:
    """The schema in GraphQL's schema definition language, ending with a newline."""
    return (schema or make_schema()).as_str().rstrip("\n") + "\n"
