"""The OpenAPI document describes every REST endpoint we serve, and is served."""

from __future__ import annotations

import json
import re
from importlib.resources import files

from jupyter_datastore.handlers import handlers

SPEC = json.loads(files("jupyter_datastore").joinpath("openapi.json").read_text())
METHODS = ("get", "put", "post", "patch", "delete")


def as_openapi_path(pattern: str) -> str:
    """`(?P<name>...)` -> `{name}`; an unnamed group is the `{path}`."""
    return re.sub(
        r"\((?:\?P<(\w+)>)?[^)]*\)", lambda m: "{" + (m.group(1) or "path") + "}", pattern
    )


def test_every_rest_handler_and_method_is_documented() -> None:
    documented = {path: set(ops) for path, ops in SPEC["paths"].items()}
    for pattern, handler in handlers:
        if getattr(handler, "websocket", False):
            continue
        path = as_openapi_path(pattern)
        implemented = {
            m for m in METHODS if m.upper() in handler.SUPPORTED_METHODS and m in vars(handler)
        }
        assert path in documented, f"{path} is served but not in openapi.json"
        assert implemented == documented[path], f"{path}: {implemented} != {documented[path]}"
    served = {as_openapi_path(p) for p, h in handlers if not getattr(h, "websocket", False)}
    assert set(documented) == served


def test_the_document_is_served(server) -> None:
    assert server.get("/api/datastore/openapi.json") == SPEC
