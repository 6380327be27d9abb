"""GraphiQL, the in-browser GraphQL IDE, served on GET with `Accept: text/html`."""

from __future__ import annotations

__all__ = ["ide_page"]


def ide_page(base_url: str) -> bytes:
    return b"<!doctype html><title>GraphiQL</title><p>GraphiQL is not built yet.</p>"
