"""Gateway kernels: the first output of a cell run on a Jupyter Kernel Gateway's kernel
through this server, against a local kernel and against the gateway's own round trip.

Three figures in one run, over the same rounds: each round times one run of each (in an
order that rotates from round to round), each after the servers were quiet for longer than
our save delay; each kernel is warmed up by one run first, not timed.

- local: our server with a kernel of its own. The notebook's cell is run server-side by
  `POST /api/datastore/executions`, timed as execution.py times first output: from the
  request to a reader peer's document showing the cell's output (`print("hello-<n>")`).
- gateway: the same on a second server of ours, started with `--gateway-url` on a Jupyter
  Kernel Gateway that this benchmark starts on loopback (the kernel is the gateway's).
- direct: the gateway's own round trip: a client on a kernel WebSocket of the gateway
  (`/api/kernels/{id}/channels`, token header; another kernel of the same gateway) sends an
  `execute_request` of the same code, timed until the first `stream` message on iopub.
  Messages are jupyter_client's, each one JSON text frame naming its `channel` (the kernel
  WebSocket's default protocol).
- kernel: a local kernel's own round trip, the same over ZMQ with jupyter_client (a kernel
  this benchmark starts).

What our server adds is `local - kernel` on a local kernel and `gateway - direct` on a
gateway kernel (the REST request, the queue, the kernel client, the write into the document
and its broadcast to the reader). The goal: the second is at most 2 ms more than the first,
that is, a gateway kernel's first output comes within 2 ms of the gateway's own round trip
plus what our server adds anyway. Printed: p50 and p99 of each (p99 of 20 runs is their
maximum), both differences (p50) and the goal, and the ratio gateway / local (p50).

    .venv/bin/python benchmarks/gateway.py [--runs 20]
    .venv/bin/python benchmarks/run.py --only gateway [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.session import Session
from websockets.asyncio.client import ClientConnection, connect

import execution
import servers
from execution import Bench, OursExecutor, Peer, Settings, ahttp, executed_notebook
from servers import TOKEN, CpuWatch, Server, quiesce

GOAL_MS = 2.0
"""Most our server may add (p50) on a gateway kernel over what it adds on a local one."""
KINDS = ("local", "gateway", "direct", "kernel")
BUSY_CORES = 0.3
"""Other processes using more CPU than this during the runs disturbed the figures."""


class Gateway(Server):
    """`jupyter kernelgateway` of this venv on loopback, with Jupyter dirs of its own. It has
    no /api/status: it is ready once its kernelspecs answer."""

    def __init__(self) -> None:
        home, port = servers.make_home("gateway"), servers.free_port()
        command = [
            sys.executable, "-m", "kernel_gateway",
            "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={port}",
            f"--KernelGatewayApp.auth_token={TOKEN}", "--KernelGatewayApp.port_retries=0",
            # A Jupyter server in front lists the gateway's kernels: the gateway must allow it.
            "--JupyterWebsocketPersonality.list_kernels=True",
        ]  # fmt: skip
        super().__init__("gateway", command, home, port)
        self.probe = "/api/kernelspecs"


class DirectKernel:
    """A client straight on a kernel's WebSocket, one request at a time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.session = Session()
        self.runs = 0

    @classmethod
    async def connect(cls, gateway: Gateway, kernel_id: str) -> DirectKernel:
        url = f"{gateway.endpoint.url.replace('http', 'ws', 1)}/api/kernels/{kernel_id}/channels"
        ws = await connect(
            url,
            additional_headers={"Authorization": f"token {TOKEN}"},
            compression=None,
            max_size=None,
            ping_interval=None,
            open_timeout=60,
        )
        client = cls(ws)
        await client.request("kernel_info_request", {}, until="kernel_info_reply")
        return client

    async def send(self, msg_type: str, content: dict[str, Any]) -> str:
        """Send a shell message: its msg_id."""
        message = self.session.msg(msg_type, content=content)
        message["channel"] = "shell"
        await self.ws.send(json.dumps(message, default=json_default))
        return str(message["header"]["msg_id"])

    async def receive(self) -> dict[str, Any]:
        frame = await self.ws.recv()
        if not isinstance(frame, str):
            raise RuntimeError("the gateway sent a binary frame: not the JSON protocol")
        return dict(json.loads(frame))

    async def request(
        self, msg_type: str, content: dict[str, Any], until: str, timeout: float = 60
    ) -> dict[str, Any]:
        """Send a request and return its reply of type `until` (other messages skipped)."""
        msg_id = await self.send(msg_type, content)
        async with asyncio.timeout(timeout):
            while True:
                message = await self.receive()
                parent = message["parent_header"].get("msg_id")
                if parent == msg_id and message["msg_type"] == until:
                    return message

    async def hello(self, timeout: float = 60) -> dict[str, float]:
        """One `print("hello-<n>")`: ms from sending the request to its first stream output,
        and to the kernel idle again with the reply in (the end of the run)."""
        self.runs += 1
        marker = f"hello-{self.runs}"
        content = {"code": f'print("{marker}")', "silent": False, "store_history": True}
        t0 = time.monotonic_ns()
        msg_id = await self.send("execute_request", content)
        t_output = t_idle = t_reply = 0
        async with asyncio.timeout(timeout):
            while not (t_idle and t_reply):
                message = await self.receive()
                now = time.monotonic_ns()
                if message["parent_header"].get("msg_id") != msg_id:
                    continue
                kind, body = message["msg_type"], message["content"]
                if kind == "stream" and not t_output:
                    if marker not in body.get("text", ""):
                        raise RuntimeError(f"unexpected output: {body}")
                    t_output = now
                elif kind == "status" and body.get("execution_state") == "idle":
                    t_idle = now
                elif kind == "execute_reply":
                    if body.get("status") != "ok":
                        raise RuntimeError(f"the cell ended with {body}")
                    t_reply = now
        if not t_output:
            raise RuntimeError(f"no output for {marker!r}")
        return {
            "first_output_ms": execution.ms(t_output - t0),
            "done_ms": execution.ms(max(t_idle, t_reply) - t0),
        }

    async def close(self) -> None:
        await self.ws.close()


class ZmqKernel:
    """A local kernel of this benchmark's own, driven over ZMQ by jupyter_client."""

    def __init__(self) -> None:
        self.manager = AsyncKernelManager(kernel_name="python3")
        self.client: Any = None
        self.runs = 0

    async def start(self) -> ZmqKernel:
        await self.manager.start_kernel()
        self.client = self.manager.client()
        self.client.start_channels()
        await self.client.wait_for_ready(timeout=60)
        return self

    async def hello(self, timeout: float = 60) -> dict[str, float]:
        """As `DirectKernel.hello`, over ZMQ."""
        self.runs += 1
        marker = f"hello-{self.runs}"
        t0 = time.monotonic_ns()
        msg_id = self.client.execute(f'print("{marker}")')
        t_output = t_idle = 0
        async with asyncio.timeout(timeout):
            while not t_idle:
                message = await self.client.get_iopub_msg()
                now = time.monotonic_ns()
                if message["parent_header"].get("msg_id") != msg_id:
                    continue
                kind, body = message["msg_type"], message["content"]
                if kind == "stream" and not t_output and marker in body.get("text", ""):
                    t_output = now
                elif kind == "status" and body.get("execution_state") == "idle":
                    t_idle = now
            await self.client.get_shell_msg()  # the execute_reply
        if not t_output:
            raise RuntimeError(f"no output for {marker!r}")
        first, done = execution.ms(t_output - t0), execution.ms(t_idle - t0)
        return {"first_output_ms": first, "done_ms": done}

    def pid(self) -> int | None:
        provisioner = self.manager.provisioner
        return getattr(getattr(provisioner, "process", None), "pid", None)

    async def stop(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
        await self.manager.shutdown_kernel(now=True)


async def open_bench(server: Server, idle: list[Server]) -> Bench:
    """A notebook on `server` with a writer and a reader peer in its room, run through our
    execution API, as execution.py measures first output."""
    path = executed_notebook(server.root, "gateway.ipynb")
    reader = await Peer.open(server.endpoint, path)
    writer = await Peer.open(server.endpoint, path)
    return Bench(server, OursExecutor(server, path, reader.session), writer, reader, idle)


async def close_bench(bench: Bench) -> None:
    await bench.writer.close()
    await bench.reader.close()


async def gateway_kernels(gateway: Gateway) -> list[str]:
    status, _, kernels = await ahttp(gateway, "GET", "/api/kernels")
    if status != 200:
        raise RuntimeError(f"the gateway's GET /api/kernels answered {status}: {kernels}")
    return [str(k["id"]) for k in kernels]


def percentile(ordered: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted `ordered` lie (as fanout.py's)."""
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def percentiles(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "runs": len(ordered),
        "p50_ms": percentile(ordered, 0.5),
        "p99_ms": percentile(ordered, 0.99),
        "min_ms": ordered[0],
        "runs_ms": [round(v, 2) for v in values],
    }


async def measure(local: Server, ours_gw: Server, gateway: Gateway, runs: int) -> dict[str, Any]:
    settings = Settings()
    everyone = [local, ours_gw, gateway]
    benches: dict[str, Bench] = {}
    direct: DirectKernel | None = None
    direct_kernel = ""
    zmq = ZmqKernel()
    out: dict[str, Any] = {}
    try:
        for kind, server in (("local", local), ("gateway", ours_gw)):
            benches[kind] = await open_bench(server, [s for s in everyone if s is not server])
            out[f"{kind}_warm_up"] = await benches[kind].hello(settings)  # starts the kernel
        # The kernels are where they should be: ours on the gateway, the local one ours.
        gw_kernel = await execution.session_kernel(ours_gw, benches["gateway"].executor.path)
        if gw_kernel not in await gateway_kernels(gateway):
            raise RuntimeError(f"kernel {gw_kernel} of our gateway server is not the gateway's")
        if not execution.note_kernels(local):
            raise RuntimeError("our local server runs no kernel of its own")
        status, _, started = await ahttp(gateway, "POST", "/api/kernels", {"name": "python3"})
        if status != 201:
            raise RuntimeError(f"the gateway's POST /api/kernels answered {status}: {started}")
        direct_kernel = str(started["id"])
        direct = await DirectKernel.connect(gateway, direct_kernel)
        out["direct_warm_up"] = await direct.hello()
        execution.note_kernels(gateway)
        await zmq.start()
        out["kernel_warm_up"] = await zmq.hello()

        timed: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
        quiet: list[bool] = []
        watch = CpuWatch(
            {
                "servers": [s.pid for s in everyone],
                "kernels": [p for s in everyone for p in execution.descendants(s.pid)],
                "client": [os.getpid(), *filter(None, [zmq.pid()])],
            }
        )
        for n in range(runs):
            for i in range(len(KINDS)):
                kind = KINDS[(n + i) % len(KINDS)]
                # Longer than our save delay: no save of the last run's outputs meanwhile.
                window = settings.settle_window
                quiet.append(await asyncio.to_thread(quiesce, everyone, 15, window))
                if kind == "direct":
                    timed[kind].append(await direct.hello())
                elif kind == "kernel":
                    timed[kind].append(await zmq.hello())
                else:
                    timed[kind].append(await benches[kind].hello(settings))
        used = watch.stop()
        for kind in KINDS:
            out[kind] = percentiles([r["first_output_ms"] for r in timed[kind]])
            out[kind]["done_p50_ms"] = percentiles([r["done_ms"] for r in timed[kind]])["p50_ms"]
            if kind in ("local", "gateway"):
                for key in ("request_ms", "running_ms"):
                    values = [r[key] for r in timed[kind]]
                    out[kind][f"{key.removesuffix('_ms')}_p50_ms"] = percentiles(values)["p50_ms"]
        out["quiet_before"] = sum(quiet) / len(quiet)
        out["cpu_cores"] = {
            k: round(v / used["elapsed"], 3) for k, v in used.items() if k != "elapsed"
        }
        return out
    finally:
        await zmq.stop()
        if direct is not None:
            await direct.close()
        if direct_kernel:  # else the gateway's stop ends it, or stop_kernels does
            with contextlib.suppress(OSError):
                await ahttp(gateway, "DELETE", f"/api/kernels/{direct_kernel}")
        for bench in benches.values():
            await close_bench(bench)


def summarise(out: dict[str, Any]) -> dict[str, Any]:
    local, gw, direct, kernel = (out[k]["p50_ms"] for k in KINDS)
    out["ours_on_gateway_ms"] = gw - direct
    out["ours_on_local_ms"] = local - kernel
    out["overhead_ms"] = out["ours_on_gateway_ms"] - out["ours_on_local_ms"]
    out["goal_ms"] = GOAL_MS
    out["met"] = out["overhead_ms"] <= GOAL_MS
    out["ratio_gateway_local"] = gw / local
    return out


def run(runs: int = 20) -> dict[str, Any]:
    """Start the gateway and our two servers, time `runs` rounds, stop everything by pid."""
    gateway = Gateway()
    local = servers.ours()
    ours_gw = servers.ours(f"--gateway-url={gateway.endpoint.url}", f"--gateway-token={TOKEN}")
    ours_gw.name = "ours-gateway"
    started = [gateway, local, ours_gw]
    try:
        for server in started:
            server.start()
            print(f"gateway: {server.name} pid {server.pid}, {server.endpoint.url}", flush=True)
        out = asyncio.run(measure(local, ours_gw, gateway, runs))
    finally:
        execution.stop_all(started[::-1], "gateway")
    out["settings"] = {"runs": runs}
    return summarise(out)


def report(out: dict[str, Any]) -> None:
    print()
    print("First output of print(...) on a warm kernel (ms), one run of each per round:")
    print(f"  {'':40} {'runs':>4} {'p50':>7} {'p99':>7} {'min':>7} {'end p50':>8}")
    labels = {
        "local": "ours, local kernel (REST -> document)",
        "gateway": "ours, gateway kernel (REST -> document)",
        "direct": "the gateway's own (WebSocket -> iopub)",
        "kernel": "a local kernel's own (ZMQ -> iopub)",
    }
    for kind, label in labels.items():
        r = out[kind]
        print(
            f"  {label:40} {r['runs']:>4} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
            f"{r['min_ms']:>7.2f} {r['done_p50_ms']:>8.2f}"
        )
    for kind in ("local", "gateway"):
        r = out[kind]
        print(
            f"  {kind}: POST answered at p50 {r['request_p50_ms']:.2f} ms, the cell shown "
            f"running at p50 {r['running_p50_ms']:.2f} ms"
        )
    met = "met" if out["met"] else "NOT MET"
    print(
        f"  ours adds (p50): {out['ours_on_gateway_ms']:.2f} ms on a gateway kernel (gateway - "
        f"direct), {out['ours_on_local_ms']:.2f} ms on a local one (local - kernel): "
        f"{out['overhead_ms']:+.2f} ms; goal <= +{GOAL_MS:.0f} ms: {met}"
    )
    print(f"  gateway / local (p50): {out['ratio_gateway_local']:.3f}")
    print(
        f"  CPU cores meanwhile: {out['cpu_cores']}; quiet before {out['quiet_before']:.0%} "
        "of the runs"
    )
    if out["cpu_cores"]["others"] > BUSY_CORES:
        print(f"  warning: other processes used over {BUSY_CORES} of a core: figures disturbed")
    print(f"  results: {servers.write_results('gateway', out)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each (default 20)")
    args = parser.parse_args()
    report(run(args.runs))


if __name__ == "__main__":
    main()
