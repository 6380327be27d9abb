"""jupyter-server-nbmodel's REST contract, over our executor, so its clients work unchanged.

    POST /api/kernels/{kernel_id}/execute            run code -> 202, Location: the request
    GET  /api/kernels/{kernel_id}/execute            the kernel's requests still in flight
    GET  /api/kernels/{kernel_id}/requests/{uid}     202 running, 300 input, 200 result (once)
    POST /api/kernels/{kernel_id}/input              answer the input() the kernel waits on

A request is one execution record; its id is the request id. The outputs of this API are a
JSON-encoded *string*, as nbmodel sends them. The result is handed out once: the first 200
(or 500) consumes it and a later GET is a 404. The `Location` headers are relative to the
server's base URL (`/api/...`), as nbmodel's client joins them to its base URL itself.

Differences, each on purpose: a request naming a remote server (`server`) is refused (400):
this server runs code on its own kernels only. `POST .../input` when nothing waits for input
is a 409 (nbmodel answers 201 and drops the value). A request that did not run to its end
(cancelled, or lost when the server or the kernel went away) is a 500 with our error body,
whose `message` says why. Timing metadata follows the server's `record_timing` setting, not
the per-request `metadata.record_timing`.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..auth import Role
from ..errors import BadRequest, Conflict, NotFound
from ..execution.records import ExecutionRecord
from ..execution.service import ExecuteRequest, Executor
from .base import DatastoreHandler, authorized_to

__all__ = [
    "KERNEL_ID",
    "REQUEST_ID",
    "NbModelExecuteHandler",
    "NbModelInputHandler",
    "NbModelRequestHandler",
]

# The ids in nbmodel's routes. nbmodel (and jupyter_server) match `\w+-\w+-\w+-\w+-\w+`;
# any segment is taken here, so that a malformed id gets our JSON 404 (no such kernel or
# request), not jupyter_server's HTML page for an unknown URL.
KERNEL_ID = r"(?P<kernel_id>[^/]+)"
REQUEST_ID = r"(?P<uid>[^/]+)"

_METADATA_STRINGS = ("cell_id", "document_id", "document_path")


def request_url(kernel_id: str, uid: str) -> str:
    return f"/api/kernels/{kernel_id}/requests/{uid}"


def context(record: ExecutionRecord) -> dict[str, Any]:
    """What every answer about a request carries (nbmodel's request context)."""
    return {
        "request_id": record.id,
        "kernel_id": record.kernel_id,
        "request_url": request_url(record.kernel_id, record.id),
        "cell_id": record.cell_id,
        "document_path": record.path,
    }


def in_flight(record: ExecutionRecord) -> dict[str, Any]:
    """A queued or running request, outputs so far as a JSON string."""
    return {
        **context(record),
        "pending": True,
        "request_status": "queued" if record.status == "queued" else "running",
        "outputs": json.dumps(record.outputs),
    }


def ran_to_its_end(record: ExecutionRecord) -> bool:
    """The kernel answered it: ok, error, interrupted, or aborted by the kernel (a record
    `cancelled` after it started); not cancelled before it ran, not lost."""
    if record.status == "cancelled":
        return record.started_at is not None
    return record.status != "lost"


def parse_execute(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The code and the metadata of `POST .../execute`, checked.

    JupyterLab's own server-side cell executor (jupyter-docprovider) sends no code, only
    `{"cell_id", "document_id"}` at the top level: the cell's source in the document runs.
    That comes back as code None with the two in the metadata.
    """
    if body.get("server") is not None:
        raise BadRequest(
            '"server": running code on a remote Jupyter server is not supported here;'
            " send the request to the server that hosts the kernel"
        )
    unknown = body.keys() - {"code", "metadata", "server", "cell_id", "document_id"}
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}")
    code = body.get("code")
    metadata = body.get("metadata")
    if code is None and metadata is None and "cell_id" in body:
        metadata = {"cell_id": body.get("cell_id"), "document_id": body.get("document_id")}
        if not all(isinstance(v, str) and v for v in metadata.values()):
            raise BadRequest('"cell_id" and "document_id" must be non-empty strings')
        return None, metadata
    if not isinstance(code, str):
        raise BadRequest('"code" is required: the code to run, as a string')
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise BadRequest('"metadata" must be an object')
    for key in _METADATA_STRINGS:  # other keys are nbmodel's business: ignored
        value = metadata.get(key)
        if value is not None and not (isinstance(value, str) and value):
            raise BadRequest(f'"metadata.{key}" must be a non-empty string')
    timing = metadata.get("record_timing")
    if timing is not None and not isinstance(timing, bool):
        raise BadRequest('"metadata.record_timing" must be true or false')
    return code, metadata


class _Base(DatastoreHandler):
    auth_resource = "kernels"

    @property
    def executor(self) -> Executor:
        return self.datastore.executor

    def check_kernel(self, kernel_id: str) -> None:
        if kernel_id not in self.executor.kernels:
            raise NotFound(f"no kernel has id {kernel_id}")

    def write_json(self, body: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(body))


class NbModelExecuteHandler(_Base):
    @web.authenticated
    @authorized_to("execute")
    async def post(self, kernel_id: str) -> None:
        code, metadata = parse_execute(self.get_json_object())
        cell_id = metadata.get("cell_id")
        room_id = metadata.get("document_id")
        path = metadata.get("document_path")
        if code is None:  # JupyterLab's server-side executor: run the cell as it is
            self.check_kernel(kernel_id)
            request = ExecuteRequest(
                [str(cell_id)], room_id=room_id, kernel_id=kernel_id, user=self.user_name
            )
            (record,) = await self.executor.submit(request)
        else:
            record = await self.executor.submit_code(
                kernel_id,
                code,
                cell_id=cell_id,
                room_id=room_id,
                path=self.file_path(path) if path is not None else None,
                user=self.user_name,
            )
        location = request_url(kernel_id, record.id)
        self.set_header("Location", location)
        self.set_header("Access-Control-Expose-Headers", "Location")
        body = {
            **context(record),
            "cell_id": cell_id,
            "document_path": metadata.get("document_path"),
            "pending": True,
            "request_status": "queued",
            "outputs": "[]",
        }
        self.write_json(body, 202)

    @web.authenticated
    @authorized
    async def get(self, kernel_id: str) -> None:
        self.check_kernel(kernel_id)
        found = await self.executor.find(kernel_id=kernel_id)
        active = [await self.executor.get(r.id) for r in reversed(found) if r.active]
        requests = [
            in_flight(record)
            for record in active
            if record.active and self.may(record.path, Role.VIEWER)
        ]
        self.write_json({"kernel_id": kernel_id, "requests": requests})


class NbModelRequestHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, kernel_id: str, uid: str) -> None:
        try:
            record = await self.executor.get(uid)
        except NotFound:
            record = None
        if record is None or record.kernel_id != kernel_id:
            raise NotFound(f"kernel {kernel_id} has no request {uid}")
        self.require(record.path or "", Role.VIEWER, "read an execution")
        if record.status == "awaiting_input":
            self.set_header("Location", f"/api/kernels/{kernel_id}/input")
            self.set_header("Access-Control-Expose-Headers", "Location")
            body = {
                "parent_header": {},
                "input_request": record.input_request or {"prompt": "", "password": False},
                **context(record),
                "pending": True,
                "request_status": "input",
            }
            self.write_json(body, 300)
            return
        if record.active:
            self.write_json(in_flight(record), 202)
            return
        record = await self.executor.collect(uid)  # NotFound when it was collected before
        if not ran_to_its_end(record):
            reason = record.reason or f"the execution was {record.status}"
            detail = f"the execution did not run to its end ({record.status}): {reason}"
            self.write_json({"error": record.status, "detail": detail, "message": detail}, 500)
            return
        status = {"ok": "ok", "cancelled": "aborted"}.get(record.status, "error")
        body = {
            "status": status,
            "execution_count": record.execution_count,
            "outputs": json.dumps(record.outputs),
            **context(record),
            "pending": False,
            "request_status": "complete",
        }
        self.write_json(body)


class NbModelInputHandler(_Base):
    @web.authenticated
    @authorized_to("execute")
    async def post(self, kernel_id: str) -> None:
        self.check_kernel(kernel_id)
        value = self.get_json_object().get("input")
        if not isinstance(value, str):
            raise BadRequest('the body must be {"input": "<the answer>"}')
        record = self.executor.awaiting_input(kernel_id)
        if record is None:
            raise Conflict(f"nothing on kernel {kernel_id} is waiting for input")
        self.require(record.path or "", Role.RUNNER, "answer an input prompt")
        await self.executor.answer(record.id, value)
        self.set_status(201)
        self.finish()
