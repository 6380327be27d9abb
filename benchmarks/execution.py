"""Server-side execution: first-output latency, server CPU of a flooding cell, and edit
latency in another notebook while that cell floods.

The anchor is jupyter-server-nbmodel on jupyter-collaboration 5 (benchmarks/.anchor-exec-venv):
`POST /api/kernels/{kernel}/execute` with the code and the cell's id and room, then `GET` at
the `Location` it answers (202 while running, 200 once, with the result); it writes the
outputs into that cell of the open room. Ours: `POST /api/datastore/executions` with the
notebook's path and the cell's id, then `GET /api/datastore/executions/{id}` until a final
status; it runs the cell's source as the room holds it. So that both run the same code, a
writer peer sets the cell's source before each execution and a reader peer sees it arrive
(the server has it then); the anchor is sent that same source.

Measurements, each on one server while the other is idle:

- first output: a reader peer in the room; the time from sending the request to the reader's
  document showing the cell's output with the run's text (`print("hello-<n>")`, warm kernel).
- flood: `for i in range(100_000): print(i)` with a reader in the room; the server process's
  own CPU time (user + system from /proc/<pid>/stat: its threads, not the kernel, which is a
  child process) and the wall time from the request to the final status, and whether the
  reader's document ends with the line "99999".
- flood via nbmodel's API, on both servers alike, as nbmodel's front end drives it:
  `POST /api/kernels/{kernel}/execute` with the flood's code and the cell's metadata
  (`cell_id`, `document_id` json:notebook:<file id>, `document_path`), then a `GET` of the
  `Location` every 50 ms (after each answer) until the 200, a reader in the room; the server
  process's CPU from the request to the 200, the polls made and the body bytes they
  received (each 202 carries the outputs so far), whether the last 202's outputs were a
  prefix of the printed text and the 200's all of it, and whether the reader's document
  ends with "99999". Ours serves the same routes (jupyter_datastore/handlers/nbmodel.py),
  on the notebook's session kernel.
- edits during the flood: a writer and a reader peer (in a process of their own) on a second
  notebook, the writer appending a short marker to a cell every 20 ms; each edit's time until
  the reader receives it, during the flood and, as a baseline, without it.

Clocks: CLOCK_MONOTONIC (`time.monotonic_ns`), system wide, so stamps compare across
processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook
from pycrdt import Array, Doc, Map, Text
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

import fanout
from notebooks import write_notebook
from servers import TOKEN, CpuWatch, Server, process_cpu_times, quiesce
from ywire import STEP1, Endpoint, open_room, sync, sync_payload, sync_update

HELLO, FLOOD = "bench-hello", "bench-flood"
"""The ids of the two cells of the executed notebook."""
FLOOD_LINES = 100_000
FLOOD_SOURCE = "for i in range(100_000): print(i)"
FLOOD_TEXT = "".join(f"{i}\n" for i in range(FLOOD_LINES))
FINAL = {"ok", "error", "cancelled", "interrupted", "lost"}
"""Our execution statuses after which nothing more happens."""


@dataclass(frozen=True)
class Settings:
    first_output_runs: int = 20
    flood_runs: int = 3
    edit_flood_runs: int = 10
    """Floods run back to back while the edit load runs."""
    edit_baseline_seconds: float = 6.0
    edit_period: float = 0.02
    poll_period: float = 0.05
    """Time between an answer of the request's `Location` and the next `GET` of it."""
    settle_window: float = 1.2
    """Quiet time awaited between runs: longer than the anchor's 1 s save delay."""
    timeout: float = 180.0


class Unavailable(Exception):
    """The server has no execution API."""


# --- HTTP ---


def http_raw(server: Server, method: str, path: str, body: Any = None) -> tuple[int, dict, bytes]:
    """(status, headers, raw body) of one request to `server`; errors are answers."""
    request = urllib.request.Request(
        server.endpoint.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, dict(error.headers), error.read()
    return status, headers, raw


def http(server: Server, method: str, path: str, body: Any = None) -> tuple[int, dict, Any]:
    """(status, headers, JSON body or text) of one request to `server`; errors are answers."""
    status, headers, raw = http_raw(server, method, path, body)
    try:
        return status, headers, json.loads(raw) if raw else None
    except ValueError:
        return status, headers, raw.decode(errors="replace")


async def ahttp(server: Server, method: str, path: str, body: Any = None) -> tuple[int, dict, Any]:
    return await asyncio.to_thread(http, server, method, path, body)


class Executor:
    """Starts executions of a notebook's cells on one server and tells when they end."""

    def __init__(self, server: Server, path: str, session: dict[str, Any]) -> None:
        self.server = server
        self.path = path
        self.session = session

    async def prepare(self) -> None:
        """Whatever must exist before the first execution."""

    async def start(self, cell_id: str, source: str) -> str:
        """Start running the cell (whose source in the room is `source`): where to poll."""
        raise NotImplementedError

    async def result(self, handle: str) -> dict[str, Any] | None:
        """The execution's result once it has ended; None while it has not."""
        raise NotImplementedError


class AnchorExecutor(Executor):
    """jupyter-server-nbmodel: a kernel of a session on the notebook, code sent with the cell
    id and the room id (json:notebook:<file id>)."""

    kernel_id = ""

    async def prepare(self) -> None:
        body = {
            "path": self.path,
            "type": "notebook",
            "name": self.path,
            "kernel": {"name": "python3"},
        }
        status, _, data = await ahttp(self.server, "POST", "/api/sessions", body)
        if status != 201:
            raise RuntimeError(f"POST /api/sessions answered {status}: {data}")
        self.kernel_id = data["kernel"]["id"]

    async def start(self, cell_id: str, source: str) -> str:
        body = {
            "code": source,
            "metadata": {
                "cell_id": cell_id,
                "document_id": f"json:notebook:{self.session['fileId']}",
                "document_path": self.path,
                "record_timing": False,
            },
        }
        url = f"/api/kernels/{self.kernel_id}/execute"
        status, headers, data = await ahttp(self.server, "POST", url, body)
        if status != 202:
            raise RuntimeError(f"POST {url} answered {status}: {data}")
        return str(headers["Location"])

    async def result(self, handle: str) -> dict[str, Any] | None:
        status, _, data = await ahttp(self.server, "GET", handle)
        if status == 202:
            return None
        if status != 200:  # 500: the execution failed (the body says why)
            raise RuntimeError(f"GET {handle} answered {status}: {data}")
        return {"status": data.get("status"), "execution_count": data.get("execution_count")}


async def session_kernel(server: Server, path: str) -> str:
    """The id of the kernel of the notebook's session (started by the warm-up)."""
    status, _, sessions = await ahttp(server, "GET", "/api/sessions")
    if status != 200:
        raise RuntimeError(f"GET /api/sessions answered {status}: {sessions}")
    for session in sessions:
        if session.get("path") == path and session.get("kernel"):
            return str(session["kernel"]["id"])
    raise RuntimeError(f"no session runs a kernel for {path}: {sessions}")


@dataclass
class Polled:
    """What a client polling an nbmodel request's `Location` received."""

    status: int = 0
    polls: int = 0
    body_bytes: int = 0
    last_pending: bytes = b""
    """The body of the last 202."""
    final: bytes = b""
    """The body of the answer that ended the polling (the 200)."""


async def poll_request(
    server: Server, location: str, period: float, timeout: float
) -> tuple[Polled, int]:
    """`GET location` every `period` s after each answer (as nbmodel's front end does) until
    it is not a 202: (what was received, when the last answer came back)."""
    polled = Polled()
    deadline = time.monotonic() + timeout
    while True:
        status, _, raw = await asyncio.to_thread(http_raw, server, "GET", location)
        polled.polls += 1
        polled.body_bytes += len(raw)
        if status != 202:
            polled.status, polled.final = status, raw
            return polled, time.monotonic_ns()
        polled.last_pending = raw
        if time.monotonic() > deadline:
            raise TimeoutError(f"{location} did not finish in {timeout} s")
        await asyncio.sleep(period)


def stream_text(outputs: Any) -> str:
    """The text of the stream outputs in nbmodel's `outputs` (a JSON string)."""
    decoded = json.loads(outputs) if isinstance(outputs, str) else outputs
    return "".join(output_text(o) for o in decoded or [] if isinstance(o, dict))


class OursExecutor(Executor):
    """This project's execution API: the notebook's path and the cell ids; the server runs
    the cells' sources in the notebook's session kernel (starting one if there is none)."""

    async def start(self, cell_id: str, source: str) -> str:
        url = "/api/datastore/executions"
        body = {"path": self.path, "cell_ids": [cell_id]}
        status, _, data = await ahttp(self.server, "POST", url, body)
        if status == 404:
            said = f": {data}" if isinstance(data, dict) else ""
            raise Unavailable(f"POST {url} answered 404{said}")
        if status != 202:
            raise RuntimeError(f"POST {url} answered {status}: {data}")
        return f"{url}/{data['executions'][0]['id']}"

    async def result(self, handle: str) -> dict[str, Any] | None:
        status, _, data = await ahttp(self.server, "GET", handle)
        if status != 200:
            raise RuntimeError(f"GET {handle} answered {status}: {data}")
        return dict(data) if data.get("status") in FINAL else None


def cpu_figures(
    quiet: bool, used: dict[str, float], server_sys: float, settled: dict[str, float]
) -> dict[str, Any]:
    """The CPU figures of one flood: `used` by each group meanwhile (`server_sys` of it the
    server's system time), and by the server until it was `settled` (quiet again)."""
    return {
        "quiet_before": quiet,
        "server_cpu_s": used["server"],
        "server_cpu_system_share": server_sys / used["server"] if used["server"] else 0.0,
        "server_cpu_until_quiet_s": settled["server"],
        "kernel_cpu_s": used["kernel"],
        "client_cpu_s": used["client"],
        "other_cpu_cores": used["others"] / used["elapsed"],
    }


async def finish(
    executor: Executor,
    handle: str,
    timeout: float,
    wake: asyncio.Future[int] | None = None,
    slow: float = 0.5,
    fast: float = 0.01,
) -> tuple[dict[str, Any], int]:
    """Poll until the execution has ended: (its result, when that answer came back).

    Polls every `fast` seconds; with `wake` (a document watch, such as the cell going idle),
    every `slow` seconds until `wake` is done, so that polling costs the server little during
    a long execution yet the end is seen soon after the document shows it.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = await executor.result(handle)
        if result is not None:
            return result, time.monotonic_ns()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{handle} did not finish in {timeout} s")
        if wake is not None and not wake.done():
            await asyncio.wait({wake}, timeout=slow)
        else:
            await asyncio.sleep(fast)


# --- peers with a document ---


def text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Text):
        return str(value)
    return "".join(str(part) for part in value)  # a list or Y array of strings


def outputs_of(cell: Map) -> list[Any]:
    outputs = cell.get("outputs")
    return [] if outputs is None else list(outputs)


def output_text(output: Any) -> str:
    """The text of a stream output, or the text/plain of any other."""
    if output.get("output_type") == "stream":
        return text_of(output.get("text"))
    data = output.get("data") or {}
    return text_of(data.get("text/plain")) if hasattr(data, "get") else ""


class Peer:
    """A client in a room whose pycrdt Doc follows the server's updates. It can edit a cell's
    source, and tells when its document first meets a condition, stamped with the arrival of
    the frame after which it did."""

    def __init__(self, ws: ClientConnection, doc: Doc, session: dict[str, Any]) -> None:
        self.ws = ws
        self.doc = doc
        self.session = session
        self.cells: Array = doc.get("cells", type=Array)
        self.frames = 0
        self.update_bytes = 0
        self._watches: list[tuple[Callable[[], bool], asyncio.Future[int]]] = []
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, endpoint: Endpoint, path: str) -> Peer:
        session = await asyncio.to_thread(endpoint.session, path)
        ws = await open_room(endpoint.room_url(session))
        doc = Doc()
        doc.apply_update(await sync(ws))
        return cls(ws, doc, session)

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                now = time.monotonic_ns()
                parsed = sync_payload(frame) if isinstance(frame, bytes) else None
                if parsed is None or parsed[0] == STEP1:
                    continue
                self.doc.apply_update(parsed[1])
                self.frames += 1
                self.update_bytes += len(parsed[1])
                if self._watches:
                    self._check(now)
        except ConnectionClosed:
            pass
        finally:
            for _, future in self._watches:
                if not future.done():
                    future.set_exception(ConnectionError("the room's connection closed"))
                    future.exception()  # a watch nobody awaits any more is not an error

    def _check(self, now: int) -> None:
        waiting = []
        for predicate, future in self._watches:
            if future.done():
                continue
            if holds(predicate):
                future.set_result(now)
            else:
                waiting.append((predicate, future))
        self._watches = waiting

    def watch(self, predicate: Callable[[], bool]) -> asyncio.Future[int]:
        """A future of the monotonic time (ns) at which `predicate()` first held."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if holds(predicate):
            future.set_result(time.monotonic_ns())
        else:
            self._watches.append((predicate, future))
        return future

    def cell(self, cell_id: str) -> Map:
        for cell in self.cells:
            if cell.get("id") == cell_id:
                return cell
        raise KeyError(cell_id)

    def source(self, cell_id: str) -> str:
        return text_of(self.cell(cell_id).get("source"))

    def output(self, cell_id: str) -> str:
        return "".join(output_text(o) for o in outputs_of(self.cell(cell_id)))

    async def set_source(self, cell_id: str, source: str) -> None:
        text = self.cell(cell_id)["source"]
        state = self.doc.get_state()
        with self.doc.transaction():
            text.clear()
            text += source
        await self.ws.send(sync_update(self.doc.get_update(state)))

    async def close(self) -> None:
        for _, future in self._watches:
            future.cancel()
        await self.ws.close()
        await asyncio.gather(self._task, return_exceptions=True)


def holds(predicate: Callable[[], bool]) -> bool:
    """Whether the condition holds; one that cannot be read yet (a cell or field missing)
    does not."""
    try:
        return predicate()
    except (KeyError, AttributeError, TypeError):
        return False


def went_idle(peer: Peer, cell_id: str) -> Callable[[], bool]:
    """A condition: the cell's execution_state was "running" and is "idle" now."""
    running = False

    def predicate() -> bool:
        nonlocal running
        state = peer.cell(cell_id).get("execution_state")
        running = running or state == "running"
        return running and state == "idle"

    return predicate


def stamp(future: asyncio.Future[int]) -> float:
    """The time a watch was met, NaN if it was not (and then it is dropped)."""
    if future.done() and not future.cancelled() and future.exception() is None:
        return future.result()
    future.cancel()
    return math.nan


async def within(future: asyncio.Future[int], timeout: float, what: str) -> int:
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}") from None


# --- processes: kernels, load ---


def descendants(pid: int) -> list[int]:
    """The processes under `pid` (kernels are children of the server that started them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


STARTED_KERNELS: list[tuple[int, int]] = []
"""(pid, start time) of every process found under a server: stopped by `stop_kernels`."""


def note_kernels(server: Server) -> list[int]:
    pids = descendants(server.pid)
    for pid in pids:
        started = start_time(pid)
        if started is not None and (pid, started) not in STARTED_KERNELS:
            STARTED_KERNELS.append((pid, started))
    return pids


def stop_kernels(timeout: float = 10.0) -> list[int]:
    """Stop (by pid) the noted processes that outlived their server; the pids it stopped."""
    alive = [pid for pid, started in STARTED_KERNELS if start_time(pid) == started]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid, started in STARTED_KERNELS:
        while start_time(pid) == started and time.monotonic() < deadline:
            time.sleep(0.05)
        if start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    STARTED_KERNELS.clear()
    return alive


def stop_all(servers: list[Server], part: str) -> None:
    """Stop each server by its pid, in this order (ours before what they use: they shut
    their kernels down), then the noted processes that outlived their server."""
    for server in servers:
        if server.process is not None:
            note_kernels(server)
        server.stop()
        server.cleanup()
    leftover = stop_kernels()
    if leftover:
        print(f"{part}: stopped processes that outlived their server: {leftover}")


def edit_process(room_url: str, period: float, conn: Connection) -> None:
    asyncio.run(_edit_load(room_url, period, conn))


async def _edit_load(room_url: str, period: float, conn: Connection) -> None:
    """A writer appending a marker to cell 0 every `period` s between "go" and "stop", and a
    reader noting when each marker arrives; after each round, both sides' stamps."""
    writer = await fanout._Writer.connect(room_url, 0)
    tasks = [asyncio.create_task(writer.discard_incoming())]
    ws = await open_room(room_url)
    await sync(ws)
    reader = fanout._Reader(ws)
    tasks.append(asyncio.create_task(reader.read()))
    conn.send(("ready", None))
    seq = 0
    while True:
        command, start_ns = await asyncio.to_thread(conn.recv)
        if command != "go":
            break
        writer.sent.clear()
        reader.seen.clear()
        n = 0
        while not conn.poll():  # until "stop"
            delay = (start_ns + int(n * period * 1e9) - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            await writer.edit(seq)
            seq += 1
            n += 1
        conn.recv()
        deadline = time.monotonic() + 30
        while len(reader.seen) < len(writer.sent) and time.monotonic() < deadline:
            if reader.close_code is not None:
                break
            await asyncio.sleep(0.005)
        conn.send(("result", (dict(writer.sent), dict(reader.seen), reader.close_code)))
    await writer.ws.close()
    await ws.close()
    await asyncio.gather(*tasks, return_exceptions=True)


class EditLoad:
    """The edit load's process and its pipe."""

    def __init__(self, room_url: str, period: float) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=edit_process, args=(room_url, period, child))
        self.process.start()

    async def receive(self, timeout: float, what: str) -> Any:
        return await asyncio.to_thread(fanout._receive, self.conn, self.process, timeout, what)

    def go(self) -> int:
        start_ns = time.monotonic_ns() + 20_000_000
        self.conn.send(("go", start_ns))
        return start_ns

    async def stop(self) -> tuple[dict[bytes, int], dict[bytes, int], int | None]:
        self.conn.send(("stop", None))
        return (await self.receive(60, "the edit load's stamps"))[1]

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(("close", None))
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=10)


def latency_summary(sent: dict[bytes, int], seen: dict[bytes, int]) -> dict[str, Any]:
    """Delivery latency (ms) of the edits `sent` (marker: send time) by their `seen` times."""
    ordered = sorted(seen[m] - t for m, t in sent.items() if m in seen)
    return {
        "edits": len(sent),
        "delivered": len(ordered),
        "p50_ms": fanout.percentile(ordered, 0.50) / 1e6,
        "p90_ms": fanout.percentile(ordered, 0.90) / 1e6,
        "p99_ms": fanout.percentile(ordered, 0.99) / 1e6,
        "max_ms": ordered[-1] / 1e6 if ordered else float("nan"),
    }


# --- the measurements ---


def executed_notebook(root: Path, name: str) -> str:
    notebook = new_notebook(
        cells=[
            new_code_cell(id=HELLO, source='print("hello")'),
            new_code_cell(id=FLOOD, source=FLOOD_SOURCE),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    (root / name).write_text(nbformat.writes(notebook))
    return name


def ms(ns: float) -> float:
    return ns / 1e6


def summary_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": fanout.percentile(ordered, 0.5),
        "p90_ms": fanout.percentile(ordered, 0.9),
        "min_ms": ordered[0] if ordered else float("nan"),
        "max_ms": ordered[-1] if ordered else float("nan"),
    }


class Bench:
    """The three measurements on one server."""

    def __init__(
        self, server: Server, executor: Executor, writer: Peer, reader: Peer, idle: list[Server]
    ) -> None:
        self.server = server
        self.executor = executor
        self.writer = writer
        self.reader = reader
        self.idle = idle
        self.runs = 0

    async def quiet(self, window: float = 1.0, timeout: float = 60) -> bool:
        """Wait for the servers, and the machine, to be quiet (False: they were not in time)."""
        servers = [self.server, *self.idle]
        return await asyncio.to_thread(quiesce, servers, timeout, window, 0.25)

    async def hello(self, settings: Settings) -> dict[str, float]:
        """One execution of the hello cell, with a source of its own: times in ms from the
        request (to the cell shown running and to the output in the reader's document, to the
        request's answer and to the end's)."""
        self.runs += 1
        marker = f"hello-{self.runs}"
        source = f'print("{marker}")'
        await self.writer.set_source(HELLO, source)
        arrived = self.reader.watch(lambda: self.reader.source(HELLO) == source)
        await within(arrived, 30, "the reader to see the new source")
        running = self.reader.watch(
            lambda: self.reader.cell(HELLO).get("execution_state") == "running"
        )
        seen = self.reader.watch(lambda: marker in self.reader.output(HELLO))
        t0 = time.monotonic_ns()
        handle = await self.executor.start(HELLO, source)
        t_posted = time.monotonic_ns()
        t_seen = await within(seen, settings.timeout, f"the output {marker!r}")
        result, t_done = await finish(self.executor, handle, settings.timeout)
        if result.get("status") != "ok":
            raise RuntimeError(f"the hello cell ended with {result}")
        return {
            "first_output_ms": ms(t_seen - t0),
            "running_ms": ms(stamp(running) - t0),
            "request_ms": ms(t_posted - t0),
            "done_ms": ms(t_done - t0),
        }

    async def first_output(self, settings: Settings) -> dict[str, Any]:
        """`first_output_runs` executions of the hello cell, each after a quiet spell longer
        than a save delay; how busy the rest of the machine was during the runs."""
        runs, quiet, others, elapsed = [], [], 0.0, 0.0
        for _ in range(settings.first_output_runs):
            quiet.append(await self.quiet(settings.settle_window, timeout=15))
            watch = CpuWatch({"server": [self.server.pid], "client": [os.getpid()]})
            runs.append(await self.hello(settings))
            used = watch.stop()
            others, elapsed = others + used["others"], elapsed + used["elapsed"]
        latencies = [r["first_output_ms"] for r in runs]

        def median(key: str) -> float:
            return summary_ms([r[key] for r in runs if not math.isnan(r[key])])["median_ms"]

        return {
            **summary_ms(latencies),
            "runs_ms": [round(v, 2) for v in latencies],
            "running_ms_median": median("running_ms"),
            "request_ms_median": median("request_ms"),
            "done_ms_median": median("done_ms"),
            "quiet_before": quiet,
            "other_cpu_cores": others / elapsed if elapsed else 0.0,
        }

    async def flood_once(
        self, settings: Settings, at_end: Callable[[], None] | None = None
    ) -> tuple[dict[str, Any], int, int]:
        """One run of the flood cell, up to its final status (then `at_end()` is called) and
        the reader's document ending with 99999: (figures, when it was requested, when its
        end was answered)."""
        went = self.reader.watch(went_idle(self.reader, FLOOD))
        frames, update_bytes = self.reader.frames, self.reader.update_bytes
        t0 = time.monotonic_ns()
        handle = await self.executor.start(FLOOD, FLOOD_SOURCE)
        result, t_done = await finish(self.executor, handle, settings.timeout, wake=went)
        if at_end is not None:
            at_end()
        complete = self.reader.watch(lambda: self.reader.output(FLOOD).endswith("\n99999\n"))
        with contextlib.suppress(TimeoutError):
            await within(complete, 30, "the reader's document to end with 99999")
        t_complete = stamp(complete)
        text = self.reader.output(FLOOD)
        outputs = outputs_of(self.reader.cell(FLOOD))
        t_idle = stamp(went)
        return (
            {
                "status": result.get("status"),
                "wall_s": (t_done - t0) / 1e9,
                "idle_in_document_s": (t_idle - t0) / 1e9,
                "reader_complete_s": (t_complete - t0) / 1e9,
                "reader_last_line": text.rstrip("\n").rsplit("\n", 1)[-1],
                "reader_text_exact": text == FLOOD_TEXT,
                "reader_text_chars": len(text),
                "reader_outputs": [
                    f"{o.get('output_type')}/{type(o.get('text')).__name__}" for o in outputs
                ],
                "reader_frames": self.reader.frames - frames,
                "reader_update_bytes": self.reader.update_bytes - update_bytes,
            },
            t0,
            t_done,
        )

    async def flood(self, kernels: list[int], settings: Settings) -> dict[str, Any]:
        """The flood cell alone (a reader in its room): CPU from the request to the end."""
        quiet = await self.quiet()
        groups = {"server": [self.server.pid], "kernel": kernels, "client": [os.getpid()]}
        watch, settled_watch = CpuWatch(groups), CpuWatch({"server": [self.server.pid]})
        used: dict[str, float] = {}
        server_sys = process_cpu_times(self.server.pid)[1]

        def at_end() -> None:
            used.update(watch.stop(), server_sys=process_cpu_times(self.server.pid)[1])

        figures, _, _ = await self.flood_once(settings, at_end)
        server_sys = used["server_sys"] - server_sys
        await asyncio.to_thread(quiesce, [self.server], 60, 1.0)
        settled = settled_watch.stop()
        return {**figures, **cpu_figures(quiet, used, server_sys, settled)}

    async def nbmodel_flood(
        self, kernel_id: str, kernels: list[int], settings: Settings
    ) -> dict[str, Any]:
        """The flood cell through nbmodel's API, the request's `Location` polled every
        `poll_period` s, a reader in the room: the server's CPU from the request to the 200."""
        quiet = await self.quiet()
        went = self.reader.watch(went_idle(self.reader, FLOOD))
        groups = {"server": [self.server.pid], "kernel": kernels, "client": [os.getpid()]}
        watch, settled_watch = CpuWatch(groups), CpuWatch({"server": [self.server.pid]})
        server_sys = process_cpu_times(self.server.pid)[1]
        anchor_like = AnchorExecutor(self.server, self.executor.path, self.reader.session)
        anchor_like.kernel_id = kernel_id
        t0 = time.monotonic_ns()
        location = await anchor_like.start(FLOOD, FLOOD_SOURCE)
        polled, t_done = await poll_request(
            self.server, location, settings.poll_period, settings.timeout
        )
        used = watch.stop()
        server_sys = process_cpu_times(self.server.pid)[1] - server_sys
        if polled.status != 200:
            raise RuntimeError(f"GET {location} answered {polled.status}: {polled.final[:500]!r}")
        complete = self.reader.watch(lambda: self.reader.output(FLOOD).endswith("\n99999\n"))
        with contextlib.suppress(TimeoutError):
            await within(complete, 30, "the reader's document to end with 99999")
        t_complete = stamp(complete)
        await asyncio.to_thread(quiesce, [self.server], 60, 1.0)
        settled = settled_watch.stop()
        final = json.loads(polled.final)
        pending = json.loads(polled.last_pending) if polled.last_pending else {}
        pending_text = stream_text(pending.get("outputs", "[]"))
        text = self.reader.output(FLOOD)
        return {
            "status": final.get("status"),
            "wall_s": (t_done - t0) / 1e9,
            "idle_in_document_s": (stamp(went) - t0) / 1e9,
            "reader_complete_s": (t_complete - t0) / 1e9,
            "reader_last_line": text.rstrip("\n").rsplit("\n", 1)[-1],
            "reader_text_exact": text == FLOOD_TEXT,
            "polls": polled.polls,
            "polled_bytes": polled.body_bytes,
            "final_bytes": len(polled.final),
            "outputs_types": {
                "pending": type(pending.get("outputs")).__name__,
                "final": type(final.get("outputs")).__name__,
            },
            "last_pending_chars": len(pending_text),
            "last_pending_is_prefix": FLOOD_TEXT.startswith(pending_text),
            "final_outputs_exact": stream_text(final.get("outputs", "[]")) == FLOOD_TEXT,
            **cpu_figures(quiet, used, server_sys, settled),
        }

    async def edits_during_floods(
        self, load: EditLoad, kernels: list[int], settings: Settings
    ) -> dict[str, Any]:
        """The edit load on the other notebook while the flood cell runs `edit_flood_runs`
        times back to back: the latency of the edits sent while a flood ran."""
        quiet = await self.quiet()
        watch = CpuWatch(
            {
                "server": [self.server.pid],
                "kernel": kernels,
                "edit_load": [load.process.pid],
                "client": [os.getpid()],
            }
        )
        load.go()
        runs, windows = [], []
        for _ in range(settings.edit_flood_runs):
            figures, t0, t_done = await self.flood_once(settings)
            runs.append(figures)
            windows.append((t0, t_done))
        sent, seen, close_code = await load.stop()
        used = watch.stop()
        during = {m: t for m, t in sent.items() if any(a <= t <= b for a, b in windows)}
        return {
            **latency_summary(during, seen),
            "all_edits": latency_summary(sent, seen),
            "flood_s": sum(b - a for a, b in windows) / 1e9,
            "quiet_before": quiet,
            "close_code": close_code,
            "server_cpu_cores": used["server"] / used["elapsed"],
            "kernel_cpu_cores": used["kernel"] / used["elapsed"],
            "edit_load_cpu_cores": used["edit_load"] / used["elapsed"],
            "other_cpu_cores": used["others"] / used["elapsed"],
            "floods": runs,
        }

    async def edit_baseline(self, load: EditLoad, settings: Settings) -> dict[str, Any]:
        """The edit load on the other notebook with no execution."""
        quiet = await self.quiet()
        watch = CpuWatch(
            {"server": [self.server.pid], "edit_load": [load.process.pid], "client": [os.getpid()]}
        )
        load.go()
        await asyncio.sleep(settings.edit_baseline_seconds)  # the load's duration
        sent, seen, close_code = await load.stop()
        used = watch.stop()
        return {
            **latency_summary(sent, seen),
            "quiet_before": quiet,
            "close_code": close_code,
            "server_cpu_cores": used["server"] / used["elapsed"],
            "edit_load_cpu_cores": used["edit_load"] / used["elapsed"],
            "other_cpu_cores": used["others"] / used["elapsed"],
        }


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


CALM_CORES = 0.3
"""A measurement during which other processes used more CPU than this is tried again."""


async def calm(
    measure: Callable[[], Awaitable[dict[str, Any]]], what: str, attempts: int = 3
) -> dict[str, Any]:
    """`measure()` until the rest of the machine stayed calm during it (at most `attempts`
    times): the least disturbed result, with how disturbed each attempt was."""
    results: list[dict[str, Any]] = []
    for _ in range(attempts):
        results.append(await measure())
        if results[-1]["other_cpu_cores"] <= CALM_CORES:
            break
        log(f"  {what}: other processes used {results[-1]['other_cpu_cores']:.2f} cores; again")
    best = min(results, key=lambda r: float(r["other_cpu_cores"]))
    best["attempts_other_cpu_cores"] = [round(r["other_cpu_cores"], 2) for r in results]
    return best


def brief(figures: dict[str, Any], *keys: str) -> str:
    return ", ".join(f"{k} {figures[k]:.4g}" for k in keys if figures.get(k) is not None)


async def _measure(
    server: Server, executor_class: type[Executor], idle: list[Server], settings: Settings
) -> dict[str, Any]:
    path = executed_notebook(server.root, "executed.ipynb")
    edited = write_notebook(server.root, "edited.ipynb", cells=3)
    reader = await Peer.open(server.endpoint, path)
    writer = await Peer.open(server.endpoint, path)
    executor = executor_class(server, path, reader.session)
    bench = Bench(server, executor, writer, reader, idle)
    load: EditLoad | None = None
    try:
        await executor.prepare()
        warm = await bench.hello(settings)
        kernels = note_kernels(server)
        out: dict[str, Any] = {"available": True, "warm_up_ms": warm, "kernel_pids": kernels}
        log(f"  warm-up: {brief(warm, 'first_output_ms', 'done_ms')}; kernel pids {kernels}")
        out["first_output"] = await calm(lambda: bench.first_output(settings), "first output")
        log(f"  first output: {brief(out['first_output'], 'median_ms', 'p90_ms', 'max_ms')}")
        out["flood"] = []
        for _ in range(settings.flood_runs):
            run = await calm(lambda: bench.flood(kernels, settings), "flood")
            out["flood"].append(run)
            log(
                f"  flood: {brief(run, 'wall_s', 'server_cpu_s', 'server_cpu_until_quiet_s')}, "
                f"kernel_cpu_s {run['kernel_cpu_s']:.2f}; reader: last line "
                f"{run['reader_last_line']!r}, exact {run['reader_text_exact']}, outputs "
                f"{run['reader_outputs']}, {run['reader_frames']} frames"
            )
        kernel_id = await session_kernel(server, path)
        out["nbmodel_flood"] = []
        for _ in range(settings.flood_runs):
            run = await calm(
                lambda: bench.nbmodel_flood(kernel_id, kernels, settings), "nbmodel flood"
            )
            out["nbmodel_flood"].append(run)
            log(
                f"  flood via nbmodel's API, polled every {settings.poll_period * 1000:.0f} ms: "
                f"{brief(run, 'wall_s', 'server_cpu_s', 'server_cpu_until_quiet_s')}, "
                f"{run['polls']} polls, {run['polled_bytes'] / 1e6:.2f} MB; final outputs exact "
                f"{run['final_outputs_exact']}, last 202 a prefix {run['last_pending_is_prefix']} "
                f"({run['last_pending_chars']} chars); reader: last line "
                f"{run['reader_last_line']!r}"
            )
        session = await asyncio.to_thread(server.endpoint.session, edited)
        load = EditLoad(server.endpoint.room_url(session), settings.edit_period)
        await load.receive(120, "the edit load to connect")
        base = out["edit_baseline"] = await calm(
            lambda: bench.edit_baseline(load, settings), "edits, no flood"
        )
        log(f"  edits, no flood: {base['edits']} edits, {brief(base, 'p50_ms', 'p99_ms')}")
        flood = out["edit_flood"] = await calm(
            lambda: bench.edits_during_floods(load, kernels, settings), "edits during floods"
        )
        log(
            f"  edits during {flood['flood_s']:.1f} s of floods: {flood['edits']} edits, "
            f"{brief(flood, 'p50_ms', 'p99_ms', 'max_ms')}"
        )
        return out
    finally:
        note_kernels(server)  # whatever it started, even if a measurement failed
        if load is not None:
            load.close()
        await writer.close()
        await reader.close()


def measure(
    server: Server, executor_class: type[Executor], idle: list[Server], settings: Settings
) -> dict[str, Any]:
    """The three measurements on `server` (`idle`: servers that must be quiet meanwhile);
    a server without the execution API, or one that fails, is reported as not available."""
    log(f"execution: {server.name} ...")
    try:
        return asyncio.run(_measure(server, executor_class, idle, settings))
    except Unavailable as error:
        log(f"  {server.name}: not available: {error}")
        return {"available": False, "reason": str(error)}
    except (RuntimeError, TimeoutError, OSError, KeyError) as error:
        log(f"  {server.name}: failed: {error!r}")
        return {"available": False, "reason": f"failed: {error!r}"}


def run(pair: list[Server], settings: Settings) -> dict[str, dict[str, Any]]:
    """Both servers, the anchor first: {server name: results}."""
    executors = {"ours": OursExecutor, "anchor": AnchorExecutor}
    results = {}
    for server in sorted(pair, key=lambda s: s.name != "anchor"):
        idle = [s for s in pair if s is not server]
        results[server.name] = measure(server, executors[server.name], idle, settings)
        results[server.name]["settings"] = asdict(settings)
    return results


def flood_median(result: dict[str, Any], key: str, part: str = "flood") -> float:
    """The median of `key` over the runs of `part` ("flood" or "nbmodel_flood")."""
    values = sorted(float(run[key]) for run in result[part])
    return values[len(values) // 2]
