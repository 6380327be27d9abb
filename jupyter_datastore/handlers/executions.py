"""`/api/datastore/executions`: run notebook cells by id on the server (our own API).

Running code needs the `execute` permission on `kernels`, as a kernel connection does, and
the runner role on the notebook (checked by the executor once it knows the notebook);
reading records needs `read` and the viewer role; cancelling and answering input, runner.
A record of a notebook the caller may not view is not found (`Executor.get_for`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..auth import Role
from ..errors import BadRequest
from ..execution.records import ExecutionRecord
from ..execution.service import ExecuteRequest
from .base import DatastoreHandler, authorized_to

__all__ = ["ExecutionHandler", "ExecutionInputHandler", "ExecutionsHandler"]


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f'"{key}" must be a string')
    return value


def parse_request(
    body: dict[str, Any], resolve: Callable[[str], str], user: str | None = None
) -> ExecuteRequest:
    """The body of POST /api/datastore/executions, checked field by field; `resolve` is
    the path check (auth/paths.py)."""
    unknown = body.keys() - {"path", "room_id", "cell_ids", "kernel", "source_hashes"}
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}")
    path = _optional_str(body, "path")
    kernel = body.get("kernel") or {}
    if not isinstance(kernel, dict) or kernel.keys() - {"id", "name"} or len(kernel) > 1:
        raise BadRequest('"kernel" must be {"id": ...} or {"name": ...}')
    hashes = body.get("source_hashes")
    if hashes is not None and not (
        isinstance(hashes, dict) and all(isinstance(v, str) for v in hashes.values())
    ):
        raise BadRequest('"source_hashes" must map cell ids to SHA-256 hex strings')
    return ExecuteRequest(
        cell_ids=body.get("cell_ids"),  # type: ignore[arg-type]  # checked by the executor
        path=resolve(path) if path is not None else None,
        room_id=_optional_str(body, "room_id"),
        kernel_id=_optional_str(kernel, "id"),
        kernel_name=_optional_str(kernel, "name"),
        source_hashes=hashes,
        user=user,
    )


class _Base(DatastoreHandler):
    auth_resource = "kernels"

    def write_record(self, record: ExecutionRecord, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(record.to_json()))


class ExecutionsHandler(_Base):
    @web.authenticated
    @authorized_to("execute")
    async def post(self) -> None:
        request = parse_request(self.get_json_object(), self.file_path, user=self.user_name)
        records = await self.datastore.executor.submit(request)
        self.set_status(202)
        self.finish(json.dumps({"executions": [r.to_json(outputs=False) for r in records]}))

    @web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.get_query_argument("path", None)
        kernel_id = self.get_query_argument("kernel_id", None)
        records = await self.datastore.executor.find(
            path=self.file_path(path) if path is not None else None, kernel_id=kernel_id
        )
        visible = [r for r in records if self.may(r.path, Role.VIEWER)]
        self.finish(json.dumps({"executions": [r.to_json(outputs=False) for r in visible]}))


class ExecutionHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, execution_id: str) -> None:
        executor = self.datastore.executor
        record = await executor.get_for(
            self.user_name, execution_id, Role.VIEWER, "read an execution"
        )
        self.write_record(record)

    @web.authenticated
    @authorized_to("execute")
    async def delete(self, execution_id: str) -> None:
        executor = self.datastore.executor
        await executor.get_for(self.user_name, execution_id, Role.RUNNER, "cancel an execution")
        record = await executor.cancel(execution_id)
        self.write_record(record, 200 if record.status == "cancelled" else 202)


class ExecutionInputHandler(_Base):
    @web.authenticated
    @authorized_to("execute")
    async def post(self, execution_id: str) -> None:
        value = self.get_json_object().get("value")
        if not isinstance(value, str):
            raise BadRequest('the body must be {"value": "<the answer>"}')
        executor = self.datastore.executor
        await executor.get_for(self.user_name, execution_id, Role.RUNNER, "answer an input prompt")
        self.write_record(await executor.answer(execution_id, value))
