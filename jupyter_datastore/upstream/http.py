"""The connection to the upstream: another Jupyter server's REST API, over Tornado's client.

An upstream that answers with an HTTP error (404, 403, 409...) raises `tornado.web.HTTPError`
with its own status and message, so that jupyter_server's handlers pass it on to our clients
as it is. An upstream that does not answer at all (connection refused, DNS, a timeout)
raises `UpstreamUnreachable` (503), and flips `reachable`, which `on_change` callbacks hear.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from jupyter_client.jsonutil import json_default
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

from ..errors import Unavailable, http_error

__all__ = ["UpstreamHttp", "UpstreamUnreachable"]

log = logging.getLogger(__name__)

_MAX_CLIENTS = 64
"""Concurrent requests to the upstream; more wait in Tornado's queue (within the timeout)."""


class UpstreamUnreachable(Unavailable):
    """The upstream Jupyter server does not answer (down, unreachable, too slow)."""

    error = "upstream_unreachable"


class UpstreamHttp:
    """Requests to one upstream Jupyter server, with its token; tracks whether it answers."""

    def __init__(
        self,
        url: str,
        token: str = "",
        *,
        request_timeout: float = 20.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url.rstrip("/")
        """The upstream's base URL (with its base path, if any), without a trailing slash."""
        self.token = token
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.reachable = True
        """Whether the last request got an HTTP answer (any status)."""
        self.error = ""
        """Why the upstream is unreachable ("" while it is reachable)."""
        self.on_change: list[Callable[[bool, str], None]] = []
        """Called with (reachable, error text) when `reachable` flips ("" when it is back)."""
        self._client: AsyncHTTPClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"UpstreamHttp({self.url!r})"

    def headers(self) -> dict[str, str]:
        """The headers every request to the upstream carries (the token, when there is one)."""
        return {"Authorization": f"token {self.token}"} if self.token else {}

    def http_url(self, api_path: str) -> str:
        """The full URL of an API path (e.g. `/api/contents/a b.ipynb`), each segment escaped."""
        return self.url + _escape(api_path)

    def ws_url(self, api_path: str) -> str:
        """The WebSocket URL of an API path: http becomes ws, https wss."""
        parts = urlsplit(self.http_url(api_path))
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        return urlunsplit(parts._replace(scheme=scheme))

    async def request(
        self,
        method: str,
        api_path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """One REST call; the decoded JSON answer, or None for an empty one (204).

        Raises:
            UpstreamUnreachable: no HTTP answer (connection refused, DNS, timeout).
            tornado.web.HTTPError: the upstream's HTTP error, with its status and message.
        """
        url = self.http_url(api_path)
        if params:
            url += "?" + urlencode(params)
        headers = self.headers()
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body, default=json_default).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif method.upper() in ("POST", "PUT", "PATCH"):
            data = b""  # Tornado refuses these methods without a body
        request = HTTPRequest(
            url,
            method=method.upper(),
            headers=headers,
            body=data,
            request_timeout=self.request_timeout,
            connect_timeout=self.connect_timeout,
        )
        try:
            response = await self._http_client().fetch(request, raise_error=False)
        except HTTPClientError as exc:
            if exc.code != 599:  # not expected with raise_error=False; kept as an answer
                self.note(True, "")
                raise http_error(exc.code, exc.message or "upstream error") from exc
            raise self._unreachable(exc) from exc
        except OSError as exc:
            raise self._unreachable(exc) from exc
        self.note(True, "")
        return self._decode(method, url, response)

    def _unreachable(self, exc: BaseException) -> UpstreamUnreachable:
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        error = UpstreamUnreachable(f"the upstream {self.url} cannot be reached: {cause}")
        self.note(False, error.detail)
        return error

    def _decode(self, method: str, url: str, response: HTTPResponse) -> Any:
        text = response.body.decode("utf-8", errors="replace") if response.body else ""
        if response.code >= 300:  # an error, or redirects past Tornado's limit
            message, reason = _error_message(text, response.reason)
            log.debug("upstream %s %s: %d %s", method, url, response.code, message)
            raise http_error(response.code, message, reason=reason)
        if response.code == 204 or not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise http_error(
                502, f"the upstream answered {method} {url} with something not JSON"
            ) from exc

    def note(self, reachable: bool, error: str = "") -> None:
        """Record whether the upstream answers (requests do; so can other connections to it,
        such as its event stream), calling `on_change` when that flips."""
        if reachable == self.reachable:
            if not reachable:
                self.error = error
            return
        self.reachable = reachable
        self.error = "" if reachable else error
        if reachable:
            log.info("the upstream %s answers again", self.url)
        else:
            log.warning("%s", error)
        for callback in list(self.on_change):
            try:
                callback(reachable, error)
            except Exception:
                log.exception("an upstream reachability callback failed")

    def _http_client(self) -> AsyncHTTPClient:
        """A client of our own (not the loop's shared one, which queues after 10 requests),
        made again on another event loop (a Tornado client belongs to the loop it was made
        on)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = AsyncHTTPClient(force_instance=True, max_clients=_MAX_CLIENTS)
            self._client_loop = loop
        return self._client

    def close(self) -> None:
        """Close the HTTP client (a later request makes another)."""
        if self._client is not None:
            self._client.close()
        self._client = None
        self._client_loop = None


def _escape(api_path: str) -> str:
    """`/api/contents/a b/c.ipynb` → `/api/contents/a%20b/c.ipynb` (each segment quoted)."""
    path = api_path if api_path.startswith("/") else "/" + api_path
    return "/".join(quote(segment, safe="") for segment in path.split("/"))


def _error_message(text: str, status_reason: str) -> tuple[str, str | None]:
    """The message and reason of an upstream's error answer: jupyter_server sends JSON
    `{"message", "reason"}`, though some of its errors (a 404 from `GET /api/contents`) are
    plain text."""
    message: Any = None
    reason: Any = None
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        message, reason = data.get("message"), data.get("reason")
    elif text.strip():
        message = text.strip()
    if not isinstance(message, str) or not message:
        message = status_reason or "upstream error"
    if not isinstance(reason, str) or not _fits_status_line(reason):
        reason = None
    return message, reason


def _fits_status_line(reason: str) -> bool:
    """Whether a reason can go in our own status line as it is (printable ASCII)."""
    return bool(reason) and reason.isascii() and reason.isprintable()
