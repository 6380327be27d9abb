"""Events: POST /api/events to 100 subscribers of /api/events/subscribe, on both servers.

The same load on each: subscriber processes hold the WebSockets (jupyter_server's firehose
on the anchor, ours unfiltered), and the caller POSTs events whose `path` carries the
phase, a sequence number and the send time, `bench/<phase>/<seq>/<monotonic ns>` (under
jupyter_server's own `contents_service` schema on the anchor; ours takes no client events
under the server's schemas, so under one the benchmark registers, of the same shape). A
subscriber reads each frame as JSON and takes the latency from that path; CLOCK_MONOTONIC
is system wide on Linux, so the stamps compare across processes.

Phases: a warm-up; `sequential`, one POST at a time (each answered before the next is
sent); `concurrent`, `in_flight` POSTs at a time, which saturates the server. For each:
events per second from the first POST to the last delivery to the last subscriber (all
subscribers received everything, or the figures say what is missing), the latency of every
delivery and of the slowest subscriber per event, the POST's own response time, and the
server's CPU time per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import time
from array import array
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from fanout import percentile
from servers import CpuWatch, Server, quiesce

SCHEMA = "https://events.jupyter.org/jupyter_server/contents_service/v1"
"""What the anchor takes from clients: one of jupyter_server's own schemas."""
OURS = "https://example.org/benchmarks/bench_event/v1"
"""Ours refuses events posted under the server's schemas: a schema registered for it."""
OURS_SCHEMA = {
    "$id": OURS,
    "version": "1",
    "type": "object",
    "properties": {"action": {"type": "string"}, "path": {"type": "string"}},
    "required": ["path"],
}


def schema_for(server: Server) -> str:
    """The schema events are posted under on `server` (registered first on ours)."""
    if server.name != "ours":
        return SCHEMA
    headers = {"Authorization": f"token {server.endpoint.token}"}
    url = server.endpoint.url + "/api/events/schemas"
    response = httpx.post(url, json=OURS_SCHEMA, headers=headers, timeout=30)
    response.raise_for_status()
    return OURS


PREFIX = "bench/"


@dataclass(frozen=True)
class Load:
    subscribers: int = 100
    subscriber_processes: int = 2
    warmup: int = 50
    sequential: int = 500
    concurrent: int = 2000
    in_flight: int = 16
    """POSTs in flight at once in the concurrent phase."""
    drain_timeout: float = 60.0
    """Seconds the subscribers may take, after the last POST, to receive everything."""


# --- subscribers (in their own processes) ---


def subscriber_process(url: str, token: str, count: int, conn: Connection, kind: str) -> None:
    asyncio.run(_subscribers(url, token, count, conn, kind))


GRAPHQL_SUBSCRIPTION = json.dumps(
    {
        "type": "subscribe",
        "id": "1",
        "payload": {"query": f'subscription {{ events(schemaIds: ["{OURS}"]) {{ data }} }}'},
    }
)


async def _connect(url: str, token: str, kind: str) -> ClientConnection:
    """One subscription socket: our events socket (`rest`), or a GraphQL `events`
    subscription over graphql-transport-ws (`graphql`), subscribed once this returns."""
    headers = {"Authorization": f"token {token}"}
    base = url.replace("http", "ws", 1)
    if kind == "rest":
        return await connect(
            base + "/api/events/subscribe", additional_headers=headers, max_size=None
        )
    ws = await connect(
        base + "/api/datastore/graphql",
        additional_headers=headers,
        subprotocols=[Subprotocol("graphql-transport-ws")],
        max_size=None,
    )
    await ws.send(json.dumps({"type": "connection_init"}))
    if json.loads(await ws.recv()).get("type") != "connection_ack":
        raise RuntimeError("the GraphQL socket was not acknowledged")
    await ws.send(GRAPHQL_SUBSCRIPTION)
    return ws


def _path_of(frame: str | bytes, kind: str) -> Any:
    message = json.loads(frame)
    if kind == "rest":
        return message.get("path")
    data = ((message.get("payload") or {}).get("data") or {}).get("events") or {}
    return (data.get("data") or {}).get("path")


class _Subscriber:
    """One subscription socket: per phase, the latency of each event it got."""

    def __init__(self, ws: ClientConnection, kind: str) -> None:
        self.ws = ws
        self.kind = kind
        self.latencies: dict[str, dict[int, int]] = {}
        self.last_ns: dict[str, int] = {}
        self.frames = 0
        self.close_code: int | None = None

    async def read(self) -> None:
        try:
            async for frame in self.ws:
                now = time.monotonic_ns()
                self.frames += 1
                path = _path_of(frame, self.kind)
                if not isinstance(path, str) or not path.startswith(PREFIX):
                    continue
                _, phase, seq, sent = path.split("/")
                self.latencies.setdefault(phase, {})[int(seq)] = now - int(sent)
                self.last_ns[phase] = now
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
        else:
            self.close_code = self.ws.close_code if self.ws.close_code is not None else 1006


async def _subscribers(url: str, token: str, count: int, conn: Connection, kind: str) -> None:
    sockets = await asyncio.gather(*(_connect(url, token, kind) for _ in range(count)))
    subscribers = [_Subscriber(ws, kind) for ws in sockets]
    tasks = [asyncio.create_task(s.read()) for s in subscribers]
    conn.send(("ready", count))
    loop = asyncio.get_running_loop()
    while True:
        command, *args = await asyncio.to_thread(conn.recv)
        if command == "close":
            break
        phase, expected, timeout = args
        deadline = loop.time() + timeout
        while loop.time() < deadline and any(
            len(s.latencies.get(phase, ())) < expected and s.close_code is None for s in subscribers
        ):
            await asyncio.sleep(0.005)
        latencies = array("q")
        worst: dict[int, int] = {}  # per event, over this process's subscribers
        for subscriber in subscribers:
            got = subscriber.latencies.pop(phase, {})
            latencies.extend(got.values())
            for seq, latency in got.items():
                worst[seq] = max(latency, worst.get(seq, 0))
        conn.send(
            (
                "result",
                max((s.last_ns.get(phase, 0) for s in subscribers), default=0),
                latencies.tobytes(),
                worst,
                sum(1 for s in subscribers if s.close_code is not None),
                sum(s.frames for s in subscribers),
            )
        )
    for ws in sockets:
        await ws.close()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- the poster (in the caller's process) ---


async def post(
    server: Server, schema: str, phase: str, count: int, in_flight: int
) -> dict[str, Any]:
    """POST `count` events, `in_flight` at a time: the first send and the POSTs' timings."""
    next_seq = iter(range(count))
    durations = array("q")
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    headers = {"Authorization": f"token {server.endpoint.token}"}
    async with httpx.AsyncClient(
        base_url=server.endpoint.url, headers=headers, limits=limits, timeout=60
    ) as http:

        async def worker() -> None:
            for seq in next_seq:
                sent = time.monotonic_ns()
                data = {"action": "get", "path": f"{PREFIX}{phase}/{seq}/{sent}"}
                body = {"schema_id": schema, "version": "1", "data": data}
                response = await http.post("/api/events", json=body)
                durations.append(time.monotonic_ns() - sent)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        await http.get("/api/status")  # a connection is open before the clock starts
        start = time.monotonic_ns()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        end = time.monotonic_ns()
    ordered = sorted(durations)
    return {
        "start_ns": start,
        "post_s": (end - start) / 1e9,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "post_ms_p50": percentile(ordered, 0.50) / 1e6,
        "post_ms_p99": percentile(ordered, 0.99) / 1e6,
    }


# --- the orchestration ---


def _receive(conn: Connection, process: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not conn.poll(0.2):
        if not process.is_alive():
            raise RuntimeError(f"{what}: a subscriber process exited with {process.exitcode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
    return conn.recv()


def _phase(
    server: Server,
    load: Load,
    conns: list[tuple[Connection, Any]],
    idle: list[Server],
    phase: str,
    count: int,
    in_flight: int,
) -> dict[str, Any]:
    quiet = quiesce([server, *idle], timeout=60, window=1.0, machine_share=0.25)
    timeout = load.drain_timeout + count / 20  # the POSTs themselves take a while
    for conn, _ in conns:
        conn.send(("expect", phase, count, timeout))
    schema = schema_for(server)  # registered again on ours: the same answers 200
    watch = CpuWatch({"server": [server.pid], "loadgen": [p.pid for _, p in conns]})
    posted = asyncio.run(post(server, schema, phase, count, in_flight))
    results = [_receive(c, p, timeout + 60, f"{phase} deliveries") for c, p in conns]
    used = watch.stop()
    latencies = array("q")
    worst: dict[int, int] = {}
    closed = frames = 0
    last_ns = 0
    for _, process_last, raw, process_worst, process_closed, process_frames in results:
        latencies.frombytes(raw)
        for seq, latency in process_worst.items():
            worst[seq] = max(latency, worst.get(seq, 0))
        last_ns = max(last_ns, process_last)
        closed += process_closed
        frames += process_frames
    ordered = sorted(latencies)
    slowest = sorted(worst.values()) if len(worst) == count else []
    expected = count * load.subscribers
    elapsed = (last_ns - posted["start_ns"]) / 1e9 if last_ns else float("nan")
    cpu = used["server"]
    complete = len(ordered) == expected
    return {
        "events": count,
        "in_flight": in_flight,
        "quiet_before": quiet,
        "deliveries_expected": expected,
        "deliveries": len(ordered),
        "missing_deliveries": expected - len(ordered),
        "subscribers_closed": closed,
        "elapsed_s": elapsed,
        "events_per_s": count / elapsed if complete else float("nan"),
        "deliveries_per_s": len(ordered) / elapsed,
        "posts_per_s": count / posted["post_s"],
        "post_statuses": posted["statuses"],
        "post_ms_p50": posted["post_ms_p50"],
        "post_ms_p99": posted["post_ms_p99"],
        "latency_ms_p50": percentile(ordered, 0.50) / 1e6,
        "latency_ms_p99": percentile(ordered, 0.99) / 1e6,
        "latency_ms_max": ordered[-1] / 1e6 if ordered else float("nan"),
        "all_received_ms_p50": percentile(slowest, 0.50) / 1e6,
        "all_received_ms_p99": percentile(slowest, 0.99) / 1e6,
        "server_cpu_s": cpu,
        "server_cpu_us_per_event": cpu / count * 1e6,
        "loadgen_cpu_cores": (used["loadgen"]) / used["elapsed"],
        "other_cpu_cores": used["others"] / used["elapsed"],
    }


def run(server: Server, load: Load, idle: list[Server], kind: str = "rest") -> dict[str, Any]:
    """The warm-up and both phases on `server`; `idle` are servers that must be quiet too.
    `kind`: the subscribers' sockets, the events socket (`rest`) or GraphQL's (`graphql`)."""
    ctx = mp.get_context("spawn")
    processes: list[Any] = []
    conns: list[tuple[Connection, Any]] = []
    per_process = [load.subscribers // load.subscriber_processes] * load.subscriber_processes
    per_process[0] += load.subscribers - sum(per_process)
    try:
        for count in per_process:
            parent, child = ctx.Pipe()
            args = (server.endpoint.url, server.endpoint.token, count, child, kind)
            process = ctx.Process(target=subscriber_process, args=args)
            process.start()
            processes.append(process)
            conns.append((parent, process))
        for conn, process in conns:
            _receive(conn, process, 120, "subscribers to connect")
        results: dict[str, Any] = {"load": asdict(load)}
        # The warm-up also proves every subscription live before anything is measured.
        warm = _phase(server, load, conns, idle, "warmup", load.warmup, 1)
        results["warmup_missing_deliveries"] = warm["missing_deliveries"]
        results["sequential"] = _phase(server, load, conns, idle, "sequential", load.sequential, 1)
        results["concurrent"] = _phase(
            server, load, conns, idle, "concurrent", load.concurrent, load.in_flight
        )
        for conn, _ in conns:
            conn.send(("close",))
        for process in processes:
            process.join(timeout=30)
        return results
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
        with contextlib.suppress(Exception):
            for conn, _ in conns:
                conn.close()
