"""jupyter-server-nbmodel's REST contract, over our executor, so its clients work unchanged.

    POST /api/kernels/{kernel_id}/execute            run code -> 202, Location: the request
    GET  /api/kernels/{kernel_id}/execute            the kernel's requests still in flight
    GET  /api/kernels/{kernel_id}/requests/{uid}     202 running, 300 input, 200 result (once)
    POST /api/kernels/{kernel_id}/input              answer the input() the kernel waits on

A request is one execution record; its id is the request id. The outputs of this API are a
JSON-encoded *string*, as nbmodel sends them. The result is handed out once: the first 200
(or 500) consumes it and a later GET is a 404. The `Location` headers are relative to the
server's base URL (`/api/...`), as nbmodel's client joins them to its base URL itself.

A client polls a running request every few tens of milliseconds, and each 202 carries every
output so far (nbmodel's front end reconciles the cell with them when it recovers outputs
over HTTP). So that a poll of a long stream costs what was printed since the previous poll
rather than encoding the whole text twice over, the server keeps the encoding of each polled
record's outputs between polls (`OutputsField`, `AnswerCache`): the encoded text of the last
output, when it is a stream that only grew, is extended by the encoding of what was added.

Differences, each on purpose: a request naming a remote server (`server`) is refused (400):
this server runs code on its own kernels only. `POST .../input` when nothing waits for input
is a 409 (nbmodel answers 201 and drops the value). A request that did not run to its end
(cancelled, or lost when the server or the kernel went away) is a 500 with our error body,
whose `message` says why. Timing metadata follows the server's `record_timing` setting, not
the per-request `metadata.record_timing`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
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


def _escape(text: str) -> str:
    """`text` as the inside of a JSON string (without its quotes). The escaping is of each
    character alone, so the escape of `a + b` is the escape of `a` plus that of `b`."""
    return json.dumps(text)[1:-1]


def _escape_twice(text: str) -> bytes:
    """`text` escaped as the inside of a JSON string, and that again: ASCII."""
    return _escape(_escape(text)).encode("ascii")


_KEPT_TEXT = 1 << 14
"""A stream's text shorter than this is encoded at every answer; a longer one is kept."""
_KEPT_RECORDS = 16
_KEPT_BYTES = 48 << 20
"""At most this many records' encodings are kept, and at most this many bytes of them (the
oldest go first): a client that stops polling leaves its encoding behind."""


class OutputsField:
    """The `outputs` of the answers about one record, kept between polls: the JSON string of
    the JSON of its outputs (the value of `"outputs": ...` in a body).

    The outputs are encoded as `json.dumps(outputs)` does, except that a last output which is
    a stream has its `text` written last. That text is kept escaped; at the next answer, only
    what was added to it is escaped and appended (the escape of a text is the concatenation
    of the escapes of its parts), unless it did not grow from the text escaped before (it was
    rewritten or cleared, or it is another output's): then it is escaped whole again.
    """

    __slots__ = ("escaped", "text")

    def __init__(self) -> None:
        self.text = ""
        """The last stream text escaped."""
        self.escaped = bytearray()
        """`text` escaped twice: as the inside of a JSON string, then that as the inside of
        another."""

    def _escape_text(self, text: str) -> None:
        old = self.text
        if text is old:
            return
        if len(text) >= len(old) and text.startswith(old):
            self.escaped += _escape_twice(text[len(old) :])
        else:
            self.escaped = bytearray(_escape_twice(text))
        self.text = text

    def encode(self, outputs: list[dict[str, Any]]) -> list[bytes | bytearray] | None:
        """The field's parts, or None when the outputs do not end with a long stream (then
        the caller encodes them whole and need not keep this)."""
        last = outputs[-1] if outputs else None
        if not isinstance(last, dict) or last.get("output_type") != "stream":
            return None
        text = last.get("text")
        if not isinstance(text, str) or len(text) < _KEPT_TEXT:
            return None
        rest = {key: value for key, value in last.items() if key != "text"}
        before = "".join(json.dumps(output) + ", " for output in outputs[:-1])
        opening = json.dumps(rest)[:-1] + ", " if rest else "{"
        self._escape_text(text)
        head = f'"{_escape(f"[{before}{opening}")}\\"text\\": \\"'
        return [head.encode("ascii"), self.escaped, b'\\"}]"']


class AnswerCache:
    """The kept `OutputsField` of the records being polled, by record id (in the server's
    settings): a record read again from the store finds what was kept for it."""

    def __init__(self) -> None:
        self.fields: OrderedDict[str, OutputsField] = OrderedDict()

    def outputs(self, record: ExecutionRecord, keep: bool = True) -> list[bytes | bytearray]:
        """The record's outputs as the value of an answer's `outputs` (a JSON string), in
        parts, from what was kept for it; `keep`: keep it for the next answer."""
        field = self.fields.pop(record.id, None) or OutputsField()
        parts = field.encode(record.outputs)
        if parts is None:
            return [json.dumps(json.dumps(record.outputs)).encode("ascii")]
        if keep:
            self.fields[record.id] = field
            self._trim()
        return parts

    def _trim(self) -> None:
        kept = sum(len(field.escaped) for field in self.fields.values())
        while self.fields and (len(self.fields) > _KEPT_RECORDS or kept > _KEPT_BYTES):
            _, oldest = self.fields.popitem(last=False)
            kept -= len(oldest.escaped)


def answer(body: dict[str, Any], outputs: list[bytes | bytearray]) -> bytes:
    """The JSON text of `body` (an object with at least one member) with `outputs` (the
    parts of a JSON value) as its last member."""
    head = f'{json.dumps(body)[:-1]}, "outputs": '.encode("ascii")
    return b"".join((head, *outputs, b"}"))


def context(record: ExecutionRecord) -> dict[str, Any]:
    """What every answer about a request carries (nbmodel's request context)."""
    return {
        "request_id": record.id,
        "kernel_id": record.kernel_id,
        "request_url": request_url(record.kernel_id, record.id),
        "cell_id": record.cell_id,
        "document_path": record.path,
    }


def in_flight(record: ExecutionRecord, answers: AnswerCache) -> bytes:
    """A queued or running request, outputs so far as a JSON string: its JSON text."""
    body = {
        **context(record),
        "pending": True,
        "request_status": "queued" if record.status == "queued" else "running",
    }
    return answer(body, answers.outputs(record))


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

    @property
    def answers(self) -> AnswerCache:
        cache = self.settings.get("datastore_nbmodel_answers")
        if not isinstance(cache, AnswerCache):
            cache = self.settings["datastore_nbmodel_answers"] = AnswerCache()
        return cache

    def write_json(self, body: dict[str, Any] | bytes, status: int = 200) -> None:
        """Answer `body` (or its JSON text) with `status`."""
        self.set_status(status)
        self.finish(body if isinstance(body, bytes) else json.dumps(body))


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
            in_flight(record, self.answers)
            for record in active
            if record.active and self.may(record.path, Role.VIEWER)
        ]
        head = json.dumps({"kernel_id": kernel_id})[:-1].encode("ascii")
        self.write_json(b"".join((head, b', "requests": [', b", ".join(requests), b"]}")))


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
            self.write_json(in_flight(record, self.answers), 202)
            return
        record = await self.executor.collect(uid, record)  # NotFound if collected before
        if not ran_to_its_end(record):
            self.answers.fields.pop(record.id, None)
            reason = record.reason or f"the execution was {record.status}"
            detail = f"the execution did not run to its end ({record.status}): {reason}"
            self.write_json({"error": record.status, "detail": detail, "message": detail}, 500)
            return
        status = {"ok": "ok", "cancelled": "aborted"}.get(record.status, "error")
        body = {
            "status": status,
            "execution_count": record.execution_count,
            **context(record),
            "pending": False,
            "request_status": "complete",
        }
        self.write_json(answer(body, self.answers.outputs(record, keep=False)))


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
