"""GraphQL errors with codes: the one place where an exception becomes a GraphQL error.

Each error of a result gets `extensions.code` (and `extensions.status`, the HTTP status the
same failure gets over REST): a `DatastoreError` its own code (`forbidden`, `not_found`,
`bad_request`, ...), Tornado's `HTTPError` (raised by jupyter_server's managers) the code of
its status, a query that does not parse or validate `invalid_query`, and anything else
`server_error` with its text replaced by a pointer to the server log, as REST does.
"""

from __future__ import annotations

import logging

from graphql import GraphQLError
from tornado.web import HTTPError

from ..errors import DatastoreError, error_body

__all__ = ["coded"]

log = logging.getLogger(__name__)

INVALID_QUERY = "invalid_query"


def coded(error: GraphQLError) -> GraphQLError:
    """`error` with its code (see the module docstring)."""
    original = error.original_error
    if "code" in (error.extensions or {}):  # coded already (a result shared: sharing.py)
        return error
    if original is None or isinstance(original, GraphQLError):
        # A syntax or validation error, or a variable's value that does not coerce to its
        # type (graphql-core's own error, wrapped): the query's own fault.
        code, status, message = INVALID_QUERY, 400, error.message
    else:
        status = _status_of(original)
        body = error_body(original, status)
        code, message = body["error"], body["detail"]
        if code == "server_error":
            log.error("a GraphQL resolver failed", exc_info=original)
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions={**(error.extensions or {}), "code": code, "status": status},
    )


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, DatastoreError):
        return exc.status
    if isinstance(exc, HTTPError):
        return exc.status_code
    return 500
