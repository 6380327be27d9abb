"""The one exception tree of jupyter-datastore, and its mapping to the wire.

    DatastoreError                  (500, close 4500)
    ├── BadRequest                  (400, close 4400)  malformed input of any kind
    ├── Forbidden                   (403, close 4403)  the caller's role does not allow it
    ├── NotFound                    (404, close 4404)  unknown room, file id or path
    ├── Conflict                    (409, close 4409)  the request contradicts the current state
    ├── SessionExpired              (409, close 1003)  the client's sessionId is not ours
    ├── DocumentError               (500, close 4500)  a document could not be loaded or saved
    ├── Unavailable                 (503, close 4503)  what files or kernels live on is away
    ├── InvalidTransition           (500)              an execution record asked to move where
    │                                                  it cannot (a server bug; records.py)
    └── StoreError                  (503, close 4503)  the store cannot read or write now
        └── StoreCorrupt            (500, close 4500)  the store's data is damaged or unknown

Each class names its HTTP status and WebSocket close code; the handlers turn an exception
into a response or a close in exactly one place each (`handlers/base.py`). The protocol
layer's `ProtocolError` becomes `BadRequest` there.

Where our code speaks jupyter_server's language instead (a contents manager, a kernel
manager), it raises Tornado's `HTTPError` through `http_error` and reads one's text with
`http_message`.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, ClassVar

from tornado.web import HTTPError

__all__ = [
    "BadRequest",
    "Conflict",
    "DatastoreError",
    "DocumentError",
    "Forbidden",
    "NotFound",
    "SessionExpired",
    "StoreCorrupt",
    "StoreError",
    "Unavailable",
    "close_reason",
    "code_of_status",
    "error_body",
    "http_error",
    "http_message",
]

# RFC 6455 section 5.5: a close frame's body is at most 125 bytes, 2 of them the code.
_MAX_CLOSE_REASON = 123


class DatastoreError(Exception):
    status: ClassVar[int] = 500
    close_code: ClassVar[int] = 4500
    error: ClassVar[str] = "server_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def body(self) -> dict[str, Any]:
        """The JSON body of an HTTP error; `message` is what JupyterLab's client shows."""
        return {"error": self.error, "detail": self.detail, "message": self.detail}

    def reason(self) -> str:
        """The WebSocket close reason."""
        return close_reason({"error": self.error, "detail": self.detail})


class BadRequest(DatastoreError):
    status = 400
    close_code = 4400
    error = "bad_request"


class Forbidden(DatastoreError):
    status = 403
    close_code = 4403
    error = "forbidden"


class NotFound(DatastoreError):
    status = 404
    close_code = 4404
    error = "not_found"


class Conflict(DatastoreError):
    status = 409
    close_code = 4409
    error = "conflict"


class DocumentError(DatastoreError):
    error = "document_error"


class Unavailable(DatastoreError):
    """What the files or kernels live on does not answer now (supernode mode's upstream):
    worth retrying later."""

    status = 503
    close_code = 4503
    error = "unavailable"


class StoreError(DatastoreError):
    """The store failed (a full disk, a lost database connection): worth retrying later."""

    status = 503
    close_code = 4503
    error = "store_unavailable"


class StoreCorrupt(StoreError):
    """The store's content cannot be read as a store: `jupyter-datastore store verify` says
    what is wrong. Retrying does not help."""

    status = 500
    close_code = 4500
    error = "store_corrupt"


class SessionExpired(DatastoreError):
    """The close payload JupyterLab's document provider parses (reason, sessionId, reloadable)."""

    status = 409
    close_code = 1003
    error = "unknown_session"

    def __init__(self, detail: str, *, session_id: str, reason: str = "unknown_session") -> None:
        super().__init__(detail)
        self.session_id = session_id
        self.kind = reason

    def reason(self) -> str:
        payload = {"reason": self.kind, "sessionId": self.session_id, "reloadable": True}
        return close_reason({**payload, "errorReason": self.detail})


def close_reason(payload: dict[str, Any]) -> str:
    """JSON that fits a close frame: a long `detail` or `errorReason` is shortened, never cut
    (an `errorReason`, which is optional, is left out if even empty it does not fit)."""
    text = json.dumps(payload)
    for key in ("errorReason", "detail"):
        value = payload.get(key)
        while len(text.encode()) > _MAX_CLOSE_REASON and isinstance(value, str) and value:
            value = value[: len(value) * 3 // 4]
            text = json.dumps({**payload, key: value + "..." if value else ""})
        payload = json.loads(text)
        too_long = len(text.encode()) > _MAX_CLOSE_REASON
        if too_long and key == "errorReason" and payload.get(key) == "":
            del payload[key]
            text = json.dumps(payload)
    return text


def http_error(status: int, message: str, reason: str | None = None) -> HTTPError:
    """A Tornado `HTTPError` that shows `message`: jupyter_server's API handlers answer its
    `log_message` as it is, while Tornado formats it with `%` (so a `%` in it is doubled;
    rare: a URL or an upstream's answer with one)."""
    return HTTPError(status, message.replace("%", "%%"), reason=reason)


def http_message(exc: HTTPError) -> str:
    """The text of a Tornado `HTTPError`, formatted as Tornado logs it."""
    if exc.log_message:
        with contextlib.suppress(TypeError, ValueError):
            return str(exc.log_message % exc.args)
        return str(exc.log_message)
    return str(exc)


_HTTP_ERRORS = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


def code_of_status(status: int) -> str:
    """The error code of an HTTP status raised outside our tree (Tornado's, Strawberry's)."""
    return _HTTP_ERRORS.get(status, "http_error")


def error_body(exc: BaseException | None, status: int) -> dict[str, Any]:
    """`{"error": code, "detail": text, "message": text}` for any exception a request
    ended with: a `DatastoreError` its own, Tornado's `HTTPError` by its status, anything
    else a server error whose detail points at the server log (never the exception's text)."""
    if isinstance(exc, DatastoreError):
        return exc.body()
    if isinstance(exc, HTTPError):
        detail = exc.log_message or exc.reason or f"HTTP {status}"
        return {
            "error": code_of_status(status),
            "detail": detail,
            "message": detail,
        }
    detail = "unexpected server error (see the server log)"
    return {"error": "server_error", "detail": detail, "message": detail}
