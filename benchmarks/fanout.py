"""Fan-out load: writers typing into one notebook room while many readers watch it.

Processes: the caller (orchestrates and reads the server's CPU), one writer process and a
few reader processes, all asyncio + `websockets`, so the load generator is not the server's
bottleneck. Each edit appends a unique marker `|w<writer>.<seq>|` to the writer's own cell;
the text of an insert appears verbatim (UTF-8) in every Yjs update that carries it, so a
reader finds markers with a bytes search and never applies updates. Clocks: CLOCK_MONOTONIC
(`time.monotonic_ns`), which is system wide on Linux, so a writer's send stamp and a reader's
receive stamp compare across processes.

Paced load (`rate` > 0): each writer sends `rate` edits/s on a fixed schedule. Saturating
load (`rate` == 0): each writer keeps `window` edits in flight, an edit counting as done
once a pacer connection in the writer process has received it.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import re
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

from pycrdt import Array, Doc, Text, TransactionEvent
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from notebooks import write_notebook
from servers import CpuWatch, Server, process_cpu_times, quiesce
from ywire import STEP1, SYNC, open_room, sync, sync_update

MARKER = re.compile(rb"\|w\d+\.\d+\|")
SYNC_BYTE = bytes((SYNC,))


@dataclass(frozen=True)
class Load:
    writers: int = 4
    rate: float = 25.0
    """Edits per second per writer; 0 sends as fast as the server takes them."""
    readers: int = 50
    reader_processes: int = 2
    duration: float = 20.0
    window: int = 16
    """Saturating load: edits a writer may have in flight."""
    drain_timeout: float = 30.0


# --- readers (in their own processes) ---


def reader_process(room_url: str, count: int, drain_timeout: float, conn: Connection) -> None:
    asyncio.run(_readers(room_url, count, drain_timeout, conn))


class _Reader:
    """One watching peer: first receive time of each marker, frames, close code."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: dict[bytes, int] = {}
        self.frames = 0
        self.close_code: int | None = None

    async def read(self) -> None:
        seen = self.seen
        try:
            async for frame in self.ws:
                now = time.monotonic_ns()
                self.frames += 1
                if isinstance(frame, bytes) and frame[:1] == SYNC_BYTE and frame[1] != STEP1:
                    for marker in MARKER.findall(frame):
                        seen.setdefault(marker, now)
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
        else:
            rcvd = self.ws.close_code
            self.close_code = rcvd if rcvd is not None else 1006


async def _readers(room_url: str, count: int, drain_timeout: float, conn: Connection) -> None:
    sockets = await asyncio.gather(*(open_room(room_url) for _ in range(count)))
    await asyncio.gather(*(sync(ws) for ws in sockets))
    readers = [_Reader(ws) for ws in sockets]
    tasks = [asyncio.create_task(r.read()) for r in readers]
    conn.send(("ready", count))
    frames_before = sum(r.frames for r in readers)
    command, sent = await asyncio.to_thread(conn.recv)
    assert command == "expect"
    expected = len(sent)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + drain_timeout
    while loop.time() < deadline and any(
        len(r.seen) < expected and r.close_code is None for r in readers
    ):
        await asyncio.sleep(0.005)
    conn.send(("drained", time.monotonic_ns()))
    latencies = array("q")
    worst: dict[bytes, int] = {}  # per edit, over this process's readers
    for reader in readers:
        for marker, seen_ns in reader.seen.items():
            if marker in sent:
                latency = seen_ns - sent[marker]
                latencies.append(latency)
                worst[marker] = max(latency, worst.get(marker, 0))
    conn.send(
        (
            "result",
            latencies.tobytes(),
            worst,
            [len(r.seen) for r in readers],
            sum(r.frames for r in readers) - frames_before,
            [r.close_code for r in readers if r.close_code is not None],
        )
    )
    for ws in sockets:
        await ws.close()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- writers (in one process) ---


def writer_process(room_url: str, load: Load, conn: Connection) -> None:
    asyncio.run(_writers(room_url, load, conn))


class _Writer:
    """A peer with a local pycrdt Doc synced from the server; edits its own cell's source."""

    def __init__(self, ws: ClientConnection, index: int, doc: Doc) -> None:
        self.ws = ws
        self.index = index
        self.doc = doc
        cells = doc.get("cells", type=Array)
        self.source: Text = cells[index]["source"]
        self.updates: list[bytes] = []
        self.sent: dict[bytes, int] = {}
        self._sub = doc.observe(self._on_change)

    @classmethod
    async def connect(cls, room_url: str, index: int) -> _Writer:
        ws = await open_room(room_url)
        doc = Doc()
        doc.apply_update(await sync(ws))
        return cls(ws, index, doc)

    def _on_change(self, event: TransactionEvent) -> None:
        self.updates.append(event.update)

    async def edit(self, seq: int) -> None:
        marker = f"|w{self.index}.{seq}|"
        self.source += marker
        frame = sync_update(self.updates.pop())
        self.sent[marker.encode()] = time.monotonic_ns()
        await self.ws.send(frame)

    async def discard_incoming(self) -> None:
        """Read (and drop) what the server sends, so its buffers never fill up."""
        try:
            async for _ in self.ws:
                pass
        except ConnectionClosed:
            pass


class _Pacer:
    """A watching peer in the writer process: the highest seq received from each writer."""

    def __init__(self, ws: ClientConnection, writers: int) -> None:
        self.ws = ws
        self.acked = [-1] * writers
        self.progress = asyncio.Condition()

    async def read(self) -> None:
        try:
            async for frame in self.ws:
                if not isinstance(frame, bytes):
                    continue
                for marker in MARKER.findall(frame):
                    writer, seq = marker[2:-1].split(b".")
                    w = int(writer)
                    self.acked[w] = max(self.acked[w], int(seq))
                async with self.progress:
                    self.progress.notify_all()
        except ConnectionClosed:
            pass


async def _writers(room_url: str, load: Load, conn: Connection) -> None:
    writers = [await _Writer.connect(room_url, i) for i in range(load.writers)]
    tasks = [asyncio.create_task(w.discard_incoming()) for w in writers]
    pacer: _Pacer | None = None
    if load.rate == 0:
        ws = await open_room(room_url)
        await sync(ws)
        pacer = _Pacer(ws, load.writers)
        tasks.append(asyncio.create_task(pacer.read()))
    conn.send(("ready", load.writers))
    command, start_ns = await asyncio.to_thread(conn.recv)
    assert command == "go"
    end_ns = start_ns + int(load.duration * 1e9)
    if pacer is None:
        await asyncio.gather(*(_paced(w, load, start_ns, end_ns) for w in writers))
    else:
        await asyncio.gather(*(_saturating(w, pacer, load, end_ns) for w in writers))
    sent: dict[bytes, int] = {}
    for writer in writers:
        sent.update(writer.sent)
    conn.send(("sent", sent))
    await asyncio.to_thread(conn.recv)  # "close": readers have drained
    for writer in writers:
        await writer.ws.close()
    if pacer is not None:
        await pacer.ws.close()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _paced(writer: _Writer, load: Load, start_ns: int, end_ns: int) -> None:
    period = 1e9 / load.rate
    offset = period * writer.index / load.writers
    seq = 0
    while (due := start_ns + int(offset + seq * period)) < end_ns:
        delay = (due - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        await writer.edit(seq)
        seq += 1


async def _saturating(writer: _Writer, pacer: _Pacer, load: Load, end_ns: int) -> None:
    sent = 0

    def has_room() -> bool:
        return sent - 1 - pacer.acked[writer.index] < load.window

    while time.monotonic_ns() < end_ns:
        if not has_room():
            async with pacer.progress:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        pacer.progress.wait_for(has_room),
                        timeout=max(0.0, (end_ns - time.monotonic_ns()) / 1e9),
                    )
            continue
        await writer.edit(sent)
        sent += 1


# --- the orchestration (in the caller's process) ---


def _receive(conn: Connection, process: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not conn.poll(0.2):
        if not process.is_alive():
            raise RuntimeError(f"{what}: the load process exited with {process.exitcode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
    return conn.recv()


def percentile(values: list[int], fraction: float) -> float:
    if not values:
        return float("nan")
    return float(values[min(len(values) - 1, int(fraction * len(values)))])


def run(
    server: Server,
    load: Load,
    name: str,
    idle: list[Server],
    on_go: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run `load` on a fresh notebook in `server`; `idle` are servers that must be quiet too."""
    path = write_notebook(server.root, f"{name}.ipynb", cells=max(10, load.writers))
    room_url = server.endpoint.room_url(server.endpoint.session(path))
    ctx = mp.get_context("spawn")
    processes: list[Any] = []
    try:
        reader_conns = []
        per_process = [load.readers // load.reader_processes] * load.reader_processes
        per_process[0] += load.readers - sum(per_process)
        for count in per_process:
            parent, child = ctx.Pipe()
            process = ctx.Process(
                target=reader_process, args=(room_url, count, load.drain_timeout, child)
            )
            process.start()
            processes.append(process)
            reader_conns.append((parent, process))
        for conn, process in reader_conns:
            _receive(conn, process, 120, "readers to connect and sync")
        writer_conn, child = ctx.Pipe()
        writer = ctx.Process(target=writer_process, args=(room_url, load, child))
        writer.start()
        processes.append(writer)
        _receive(writer_conn, writer, 120, "writers to connect and sync")

        quiet = quiesce([server, *idle], timeout=60, window=1.0, machine_share=0.25)
        watch = CpuWatch({"server": [server.pid], "loadgen": [p.pid for p in processes]})
        server_sys = process_cpu_times(server.pid)[1]
        start_ns = time.monotonic_ns() + 20_000_000
        writer_conn.send(("go", start_ns))
        if on_go is not None:
            on_go()
        _, sent = _receive(writer_conn, writer, load.duration + 120, "writers to finish")
        for conn, _process in reader_conns:
            conn.send(("expect", sent))
        drained = [
            _receive(c, p, load.drain_timeout + 60, "readers to drain")[1] for c, p in reader_conns
        ]
        used = watch.stop()
        server_sys = process_cpu_times(server.pid)[1] - server_sys
        results = [_receive(c, p, 120, "reader results") for c, p in reader_conns]
        writer_conn.send(("close", None))
        for process in processes:
            process.join(timeout=30)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)

    latencies_ns = array("q")
    counts: list[int] = []
    frames = 0
    closes: list[int] = []
    worst: dict[bytes, int] = {}
    for _, raw, process_worst, reader_counts, reader_frames, reader_closes in results:
        latencies_ns.frombytes(raw)
        for marker, latency in process_worst.items():
            worst[marker] = max(latency, worst.get(marker, 0))
        counts.extend(reader_counts)
        frames += reader_frames
        closes.extend(reader_closes)
    ordered = sorted(latencies_ns)
    delivered = len(ordered)
    expected = len(sent) * load.readers
    elapsed = (max(drained) - start_ns) / 1e9
    cpu = used["server"]
    return {
        "load": asdict(load),
        "quiet_before": quiet,
        "edits_sent": len(sent),
        "edits_per_s": len(sent) / load.duration,
        "deliveries_expected": expected,
        "deliveries": delivered,
        "missing_deliveries": expected - delivered,
        "readers_incomplete": sum(1 for c in counts if c < len(sent)),
        "reader_closes": closes,
        "frames_to_readers": frames,
        "elapsed_s": elapsed,
        "deliveries_per_s": delivered / elapsed,
        "server_cpu_s": cpu,
        "server_cpu_share": cpu / elapsed,
        "server_cpu_system_share": server_sys / cpu if cpu else float("nan"),
        "loadgen_cpu_cores": used["loadgen"] / used["elapsed"],
        "other_cpu_cores": used["others"] / used["elapsed"],  # everything else on the machine
        "cpu_us_per_delivery": cpu / delivered * 1e6 if delivered else float("nan"),
        "latency_ms_p50": percentile(ordered, 0.50) / 1e6,
        "latency_ms_p99": percentile(ordered, 0.99) / 1e6,
        "latency_ms_max": ordered[-1] / 1e6 if ordered else float("nan"),
        "worst_latency_ms_by_second": _worst_by_second(worst, sent, start_ns),
    }


def _worst_by_second(worst: dict[bytes, int], sent: dict[bytes, int], start_ns: int) -> list[float]:
    """The slowest delivery (to any reader) of the edits sent in each second of the load."""
    buckets: dict[int, int] = {}
    for marker, latency in worst.items():
        second = (sent[marker] - start_ns) // 1_000_000_000
        buckets[second] = max(latency, buckets.get(second, 0))
    return [round(buckets.get(s, 0) / 1e6, 2) for s in range(max(buckets, default=-1) + 1)]
