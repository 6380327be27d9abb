"""Kernel launches, step by step, and a clear answer when a kernel gateway fails one.

The kernel manager's `start_kernel` is wrapped on the instance (never the class), so every
start passes here whoever asks: `POST /api/kernels`, a session with a new kernel, our
executor. A launch has four steps, each the time it happened (ISO 8601, UTC) or None:

- `requested`: `start_kernel` was called;
- `started`: it returned, with the kernel's id (a local kernel's process is up; a gateway
  answered that it started the kernel);
- `connected`: the kernel is reachable on its channels: jupyter_server connected its
  activity watch to a local kernel's IOPub, or the kernel was first heard (a `busy` or
  `idle` from our kernel watcher, or the kernel manager's model of it past `starting`: for a
  gateway kernel, the gateway's own connection to it);
- `idle`: the kernel was first seen idle, ready for code.

A launch that fails has `failed` (its time) and the state gets an entry of its own for it
(`execution_state: "failed"`, the `reason`), kept as long as a dead kernel.

When the kernel manager is the gateway's, what jupyter_server's gateway client raises is
turned into one clear HTTP error naming the gateway and the cause (`gateway_error`): 503
when nothing answers at its URL, 504 when it does not answer in time, 502 when it refuses
(a wrong token: 401 or 403) or fails; the gateway's answers that are the caller's own
mistake (400, 404, 409: an unknown kernel name) pass as they are.
"""

from __future__ import annotations

import functools
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tornado.httpclient import HTTPClientError
from tornado.web import HTTPError

from ..errors import http_error, http_message
from ..execution.records import utc_now
from .hooks import replace_methods

__all__ = ["STEPS", "KernelHost", "Launches", "gateway_error"]

STEPS = ("requested", "started", "connected", "idle")

_PASSED_ON = frozenset({400, 404, 409, 422})
"""Gateway answers that are the caller's mistake, not the gateway's: passed on as they are."""


class Launches:
    """The steps of each kernel launch seen since the server started; failed launches."""

    def __init__(self, changed: Callable[[], None]) -> None:
        self.steps: dict[str, dict[str, str | None]] = {}
        """Kernel id -> its launch's steps."""
        self.failed: dict[str, dict[str, Any]] = {}
        """A key of its own -> the state's entry for a launch that failed."""
        self._changed = changed
        self._early: dict[str, str] = {}
        """Kernels connected to before their `start_kernel` returned (a local kernel's
        activity watch), by id: the time, for their launch's `connected`."""

    # --- the kernel manager ---

    def install(self, manager: Any, gateway: KernelHost | None) -> Callable[[], None]:
        """Wrap `manager.start_kernel` and `start_watching_activity`; returns `undo`."""

        def watching(watch: Callable[..., Any]) -> Callable[..., Any]:
            def start_watching_activity(kernel_id: str, *args: Any, **kwargs: Any) -> Any:
                try:
                    return watch(kernel_id, *args, **kwargs)
                finally:
                    self.reached(kernel_id, "connected")

            return functools.wraps(watch)(start_watching_activity)

        return replace_methods(
            manager,
            {
                "start_kernel": lambda start: self._wrap_start(manager, start, gateway),
                "start_watching_activity": watching,
            },
        )

    def _wrap_start(
        self, manager: Any, original: Callable[..., Any], gateway: KernelHost | None
    ) -> Callable[..., Any]:
        async def start_kernel(*args: Any, **kwargs: Any) -> Any:
            given = kwargs.get("kernel_id")
            existing = given is not None and _has(manager, given)
            requested = utc_now()
            if given is not None and not existing:
                self.steps[given] = _steps(requested)
            try:
                kernel_id = await original(*args, **kwargs)
            except Exception as exc:
                error = gateway_error(exc, gateway) if gateway else None
                name = kwargs.get("kernel_name") or getattr(manager, "default_kernel_name", None)
                reason = _message(error if error is not None else exc)
                self._failed(requested, name, reason, given)
                if error is not None:
                    raise error from exc
                raise
            if not existing and isinstance(kernel_id, str):
                steps = self.steps.setdefault(kernel_id, _steps(requested))
                steps["started"] = steps["started"] or utc_now()
                steps["connected"] = steps["connected"] or self._early.pop(kernel_id, None)
                self._changed()
            return kernel_id

        return functools.wraps(original)(start_kernel)

    def _failed(self, requested: str, name: Any, reason: str, kernel_id: str | None) -> None:
        if kernel_id is not None:
            self.steps.pop(kernel_id, None)
        key = f"launch-{uuid.uuid4().hex}"
        now = utc_now()
        self.failed[key] = {
            "id": key,
            "name": name,
            "execution_state": "failed",
            "reason": reason,
            "last_activity": now,
            "connections": 0,
            "launch": {**_steps(requested), "failed": now},
        }
        self._changed()

    def forget_failed(self, key: str) -> bool:
        return self.failed.pop(key, None) is not None

    # --- what the kernels say ---

    def reached(self, kernel_id: str, step: str) -> None:
        """The kernel reached `step` (`connected` or `idle`) now, if it had not yet; `idle`
        implies `connected`."""
        steps = self.steps.get(kernel_id)
        if steps is None and step == "connected":  # its start_kernel has not returned yet
            while len(self._early) >= 100:  # kernels that never started: a bound
                del self._early[next(iter(self._early))]
            self._early.setdefault(kernel_id, utc_now())
        if steps is None or steps[step] is not None:
            return
        now = utc_now()
        if step == "idle" and steps["connected"] is None:
            steps["connected"] = now
        steps[step] = now
        self._changed()

    def seen(self, kernel_id: str, execution_state: Any) -> None:
        """The kernel's state as a kernel event or its model gives it."""
        if execution_state in ("busy", "idle"):
            self.reached(kernel_id, "connected")
        if execution_state == "idle":
            self.reached(kernel_id, "idle")

    def of(self, kernel_id: str) -> dict[str, str | None] | None:
        steps = self.steps.get(kernel_id)
        return dict(steps) if steps is not None else None

    def keep_only(self, kernel_ids: set[str]) -> None:
        """Forget the launches of kernels that are gone."""
        for kernel_id in [k for k in self.steps if k not in kernel_ids]:
            del self.steps[kernel_id]


def _steps(requested: str) -> dict[str, str | None]:
    return {"requested": requested, "started": None, "connected": None, "idle": None}


def _has(manager: Any, kernel_id: str) -> bool:
    try:
        return kernel_id in manager
    except Exception:
        return False


def _message(exc: BaseException) -> str:
    if isinstance(exc, HTTPError):
        return http_message(exc)
    return str(exc) or type(exc).__name__


@dataclass(frozen=True)
class KernelHost:
    """Where kernels run when not here: a Kernel Gateway, or supernode mode's upstream."""

    url: str
    name: str = "the kernel gateway"
    token: str = "the gateway token (--gateway-token, GatewayClient.auth_token)"


def gateway_error(exc: BaseException, host: KernelHost) -> HTTPError | None:
    """The clear error for a kernel start that `host` failed; None to let `exc` pass as it
    is (the gateway said the request itself was wrong)."""
    cause: BaseException = exc
    if isinstance(exc, HTTPError) and exc.__cause__ is not None:
        cause = exc.__cause__
    where = f"{host.name} at {host.url}"
    if isinstance(cause, HTTPClientError):
        code = cause.code
        if code == 599:
            text = str(cause.message or cause)
            if "timeout" in text.lower():
                return _error(504, f"{where} did not answer in time ({text})")
            return _error(503, f"{where} cannot be reached: {text}")
        if code in (401, 403):
            return _error(
                502,
                f"{where} refused to start the kernel (HTTP {code}: {cause.message}): "
                f"check {host.token}",
            )
        if code in _PASSED_ON:
            return None
        return _error(502, f"{where} failed to start the kernel (HTTP {code}: {cause.message})")
    if isinstance(cause, socket.gaierror):
        return _error(503, f"{where} cannot be reached: its host name is unknown ({cause})")
    if isinstance(cause, TimeoutError):
        return _error(504, f"{where} did not answer in time")
    if isinstance(cause, (ConnectionError, OSError)):
        return _error(503, f"{where} cannot be reached: {cause.strerror or cause}")
    if isinstance(exc, HTTPError):
        if exc.status_code in _PASSED_ON:
            return None
        return _error(502, f"{where} failed to start the kernel: {_message(exc)}")
    return _error(502, f"{where} failed to start the kernel: {_message(exc)}")


def _error(status: int, message: str) -> HTTPError:
    return http_error(status, message, reason=_REASONS[status])


_REASONS = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
