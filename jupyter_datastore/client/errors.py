"""The client's exceptions, and the one place where server answers become them.

    ClientError
    ├── ConnectionLost      the server could not be reached, or not again in time
    ├── BadRequest          400, close 4400: the server found the request malformed
    ├── Forbidden           401, 403, close 1008: no token, a wrong one, or not allowed
    ├── NotFound            404, close 4404: no such file, room or execution
    ├── Conflict            409, close 4409: the request contradicts the current state
    ├── ServerError         5xx, close 4500, 4503: the server failed or its store is down
    ├── EditsDiscarded      the server lost its store: local edits it never got were dropped
    └── ExecutionFailed     a cell did not end `ok` (`Notebook.execute(check=True)`)

HTTP answers and close frames carry `{"error", "detail"}` JSON; `error_from_response` and
`error_from_close` read it. `ConnectionLost` and `ServerError` are worth retrying; the rest
are not.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .client import Execution

__all__ = [
    "BadRequest",
    "ClientError",
    "Conflict",
    "ConnectionLost",
    "EditsDiscarded",
    "ExecutionFailed",
    "Forbidden",
    "NotFound",
    "ServerError",
    "error_from_close",
    "error_from_response",
    "retriable",
]


class ClientError(Exception):
    """`detail` says what went wrong; `status` or `close_code` says where it came from."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        close_code: int | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.close_code = close_code
        self.error = error


class ConnectionLost(ClientError):
    pass


class BadRequest(ClientError):
    pass


class Forbidden(ClientError):
    pass


class NotFound(ClientError):
    pass


class Conflict(ClientError):
    pass


class ServerError(ClientError):
    pass


class EditsDiscarded(ClientError):
    """The server restarted on a new store: the document was reopened from its file, and
    edits made here that the server had not received are gone (they were not merged)."""


class ExecutionFailed(ClientError):
    def __init__(self, detail: str, executions: list[Execution]) -> None:
        super().__init__(detail)
        self.executions = executions


_BY_STATUS: dict[int, type[ClientError]] = {
    400: BadRequest,
    401: Forbidden,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}
_BY_CLOSE_CODE: dict[int, type[ClientError]] = {
    1008: Forbidden,
    4400: BadRequest,
    4403: Forbidden,
    4404: NotFound,
    4409: Conflict,
    4500: ServerError,
    4503: ServerError,  # the store is unavailable now: worth retrying
}


def _parse(text: str) -> tuple[str | None, str]:
    """`error` and `detail` of a JSON error body, else the text itself."""
    try:
        body = json.loads(text)
    except ValueError:
        return None, text.strip()
    if not isinstance(body, dict):
        return None, text.strip()
    error = body.get("error")
    detail = body.get("detail") or body.get("message") or body.get("reason") or text
    return (error if isinstance(error, str) else None), str(detail)


def error_from_response(status: int, text: str, what: str = "") -> ClientError:
    error, detail = _parse(text)
    if status == 403 and "_xsrf" in detail:
        # jupyter_server takes a request without a valid token for a browser's, and asks
        # for the XSRF cookie only browsers have.
        detail = "the token is missing or not valid"
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ClientError)
    prefix = f"{what}: " if what else ""
    return cls(f"{prefix}{detail or f'HTTP {status}'}", status=status, error=error)


def error_from_close(code: int, reason: str, what: str = "") -> ClientError:
    error, detail = _parse(reason)
    cls = _BY_CLOSE_CODE.get(code, ServerError if code == 1011 else ClientError)
    prefix = f"{what}: " if what else ""
    return cls(f"{prefix}{detail or f'closed with {code}'}", close_code=code, error=error)


def retriable(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionLost | ServerError)
