"""The one GraphQL schema: each module of this package gives its part of the root types
(`Query`, `Mutation`, `Subscription`, or None), merged here with the limits and the error
codes every operation gets. The SDL is kept in `schema.graphql` next to this file (a test
keeps it equal to `sdl()`; `python -m jupyter_datastore.graphql` writes it)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import strawberry
from strawberry.tools import merge_types

from . import documents, events, executions, kernels, server
from .errors import ErrorCodes
from .limits import limits

__all__ = ["SDL_PATH", "make_schema", "sdl"]

PARTS: tuple[ModuleType, ...] = (server, kernels, executions, events, documents)
SDL_PATH = Path(__file__).with_name("schema.graphql")


def _root(name: str) -> Any:
    parts = tuple(part for module in PARTS if (part := getattr(module, name, None)) is not None)
    return merge_types(name, parts) if parts else None


def make_schema() -> strawberry.Schema:
    return strawberry.Schema(
        query=_root("Query"),
        mutation=_root("Mutation"),
        subscription=_root("Subscription"),
        extensions=[*limits(), ErrorCodes],
    )


def sdl(schema: strawberry.Schema | None = None) -> str:
    """The schema in GraphQL's schema definition language, ending with a newline."""
    return (schema or make_schema()).as_str().rstrip("\n") + "\n"
