"""Benchmarks: this server against jupyter-collaboration 5 (the anchor), side by side.

    .venv/bin/python benchmarks/run.py [--quick]

Both servers run in one run on the same loads: fan-out (4 writers x 25 edits/s, 50 readers),
a saturating fan-out, cold opens of 1,000- and 5,000-cell notebooks, and memory per open
room; and server-side execution against jupyter-server-nbmodel (on jupyter-collaboration 5,
in a venv of its own): first-output latency, server CPU of a flooding cell, and edit latency
in another notebook meanwhile; and events against jupyter_server's own /api/events: events
per second from POST to 100 subscribers, and the latency of each delivery; and the server's
state: how soon a client sees a kernel, a save, a session or a terminal that the REST API
made (our state room against jupyter_server's event stream); and durability against
jupyter-collaboration's SQLite YStore: durable updates/s into one document, the reopen of a
5,000-cell notebook after its room was freed, and the store's size after 10,000 edits to a
1 MB notebook. Prints a table
of both figures and their ratio (ours / anchor) against the project's goals, and writes
everything as JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import durability
import events
import execution
import fanout
import opening
import servers
import state
from servers import Server

RESULTS = servers.HERE / "results"
PARTS = ("fanout", "open", "memory", "execution", "events", "state", "durability")
ON_THEIR_OWN = ("panel", "lab_load", "gateway", "supernode", "graphql", "widgets")
"""Parts reported on their own, each run only when named."""
T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    fanout_seconds: float
    saturate_seconds: float
    sizes: tuple[int, ...]
    repeats: int
    memory_rooms: int
    exec_runs: int
    """Executions timed for the first-output latency."""
    flood_runs: int
    edit_flood_runs: int
    edit_baseline_seconds: float
    events_sequential: int
    """Events POSTed one at a time to the subscribers."""
    events_concurrent: int
    state: state.Load
    durability: durability.Load

    def events(self) -> events.Load:
        return events.Load(sequential=self.events_sequential, concurrent=self.events_concurrent)

    def execution(self) -> execution.Settings:
        return execution.Settings(
            first_output_runs=self.exec_runs,
            flood_runs=self.flood_runs,
            edit_flood_runs=self.edit_flood_runs,
            edit_baseline_seconds=self.edit_baseline_seconds,
        )


FULL = Plan(
    fanout_seconds=20, saturate_seconds=10, sizes=(1000, 5000), repeats=5, memory_rooms=10,
    exec_runs=20, flood_runs=3, edit_flood_runs=10, edit_baseline_seconds=6,
    events_sequential=1000, events_concurrent=4000, state=state.Load(),
    durability=durability.Load(),
)  # fmt: skip
QUICK = Plan(
    fanout_seconds=6, saturate_seconds=4, sizes=(1000, 5000), repeats=2, memory_rooms=5,
    exec_runs=8, flood_runs=2, edit_flood_runs=4, edit_baseline_seconds=3,
    events_sequential=300, events_concurrent=1000,
    state=state.Load(kernels=4, saves=20, sessions=4, terminals=8),
    durability=durability.Load(updates=500, reopen_repeats=3),
)  # fmt: skip


@dataclass(frozen=True)
class Row:
    metric: str
    ours: float
    anchor: float
    goal: float | None = None
    """Largest ratio (ours / anchor) that meets the goal; None: reported only."""
    fmt: str = "{:.1f}"
    limit: float | None = None
    """A goal on our figure alone: it must be below this."""
    higher: bool = False
    """More is better (a rate): the goal is a least ratio."""

    @property
    def ratio(self) -> float | None:
        if not self.anchor or math.isnan(self.ours) or math.isnan(self.anchor):
            return None
        return self.ours / self.anchor

    @property
    def met(self) -> str:
        if math.isnan(self.ours):
            return "-"
        if self.limit is not None:
            return "met" if self.ours < self.limit else "NOT MET"
        if self.goal is None:
            return "-"
        if self.ratio is None:
            return "NOT MET"
        met = self.ratio >= self.goal if self.higher else self.ratio <= self.goal
        return "met" if met else "NOT MET"

    @property
    def goal_text(self) -> str:
        if self.limit is not None:
            return f"ours < {self.limit:g}"
        if self.goal is None:
            return "-"
        return f"{'>=' if self.higher else '<='} {self.goal:.2f}"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


CALM_CORES = 0.3
"""A measurement during which other processes used more CPU than this is tried again."""


def calm(
    measure: Callable[[int], T], others: Callable[[T], float], attempts: int = 3
) -> tuple[T, list[float]]:
    """Run `measure(attempt)` until the rest of the machine stayed calm during it (at most
    `attempts` times): the least disturbed result, and how disturbed each attempt was."""
    results: list[T] = []
    for attempt in range(attempts):
        results.append(measure(attempt))
        if others(results[-1]) <= CALM_CORES:
            break
        log(f"  other processes used {others(results[-1]):.2f} cores meanwhile; once more")
    return min(results, key=others), [round(others(r), 2) for r in results]


def fanout_attempt(
    server: Server, load: fanout.Load, kind: str, idle: list[Server], attempt: int
) -> dict[str, Any]:
    return fanout.run(server, load, f"{kind}-{attempt}", idle)


def cold_open_attempt(
    server: Server, cells: int, name: str, idle: list[Server], attempt: int
) -> tuple[float, float]:
    return opening.cold_open(server, cells, f"{name}-{attempt}", idle)


def run_fanouts(pair: list[Server], plan: Plan) -> dict[str, dict[str, Any]]:
    loads = {
        "fanout": fanout.Load(duration=plan.fanout_seconds),
        "saturate": fanout.Load(rate=0, duration=plan.saturate_seconds),
    }
    results: dict[str, dict[str, Any]] = {s.name: {} for s in pair}
    for kind, load in loads.items():
        for server in pair:
            idle = [s for s in pair if s is not server]
            log(f"{kind}: {server.name} ...")
            measure = functools.partial(fanout_attempt, server, load, kind, idle)
            result, tries = calm(measure, lambda r: float(r["other_cpu_cores"]))
            result["attempts_other_cpu_cores"] = tries
            results[server.name][kind] = result
            log(
                f"  {result['deliveries']}/{result['deliveries_expected']} deliveries, "
                f"{result['deliveries_per_s']:.0f}/s, {result['cpu_us_per_delivery']:.1f} us "
                f"CPU each, p50 {result['latency_ms_p50']:.1f} ms, "
                f"p99 {result['latency_ms_p99']:.1f} ms; CPU cores: server "
                f"{result['server_cpu_share']:.2f}, load generator "
                f"{result['loadgen_cpu_cores']:.2f}, others {result['other_cpu_cores']:.2f}"
            )
    return results


def run_cold_opens(pair: list[Server], plan: Plan) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {s.name: {} for s in pair}
    for cells in plan.sizes:
        runs: dict[str, list[tuple[float, float]]] = {s.name: [] for s in pair}
        for i in range(plan.repeats):  # alternate the servers, one repetition at a time
            for server in pair:
                idle = [s for s in pair if s is not server]
                name = f"cold-{cells}-{i}"
                measure = functools.partial(cold_open_attempt, server, cells, name, idle)
                runs[server.name].append(calm(measure, lambda r: r[1])[0])
        for server in pair:
            summary = opening.summarise_opens(runs[server.name])
            results[server.name][f"cold_open_{cells}"] = summary
            log(f"cold open {cells} cells, {server.name}: {summary}")
    return results


def run_memory(pair: list[Server], plan: Plan) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for server in pair:
        idle = [s for s in pair if s is not server]
        results[server.name] = opening.memory_per_room(server, plan.memory_rooms, 1000, idle)
        log(f"memory, {server.name}: {results[server.name]}")
    return results


def run_growth(pair: list[Server], plan: Plan) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for server in pair:
        idle = [s for s in pair if s is not server]
        results[server.name] = opening.growth_after_close(server, plan.sizes, idle)
        log(f"memory after rooms close, {server.name}: {results[server.name]}")
    return results


def rows(results: dict[str, dict[str, Any]], plan: Plan) -> list[Row]:
    o, a = results["ours"], results["anchor"]
    table: list[Row] = []
    if "fanout" in o:
        table += fanout_rows(o, a)
    for cells in plan.sizes:
        key = f"cold_open_{cells}"
        if key in o:
            table.append(
                Row(f"cold open {cells} cells, median (ms)",
                    o[key]["median_ms"], a[key]["median_ms"], 1 / 5, "{:.0f}")
            )  # fmt: skip
    if "durability" in o:
        table += durability_rows(o["durability"], a["durability"])
    if "memory" in o:
        table.append(
            Row(f"memory per open room, {plan.memory_rooms} x 1000 cells (MB)",
                o["memory"]["mb_per_room"], a["memory"]["mb_per_room"], 1 / 3, "{:.2f}")
        )  # fmt: skip
    if "growth" in o:
        sizes = " and ".join(f"{cells:,}" for cells in plan.sizes)
        og, ag = o["growth"], a["growth"]
        table += [
            Row(f"RSS growth with {sizes}-cell notebooks open (MB)",
                og["open_growth_mb"], ag["open_growth_mb"], None, "{:.1f}"),
            Row("RSS growth once their rooms were freed (MB)",
                og["closed_growth_mb"], ag["closed_growth_mb"], 1 / 4, "{:.1f}"),
        ]  # fmt: skip
    if "execution" in o:
        table += execution_rows(o["execution"], a["execution"])
    if "events" in o:
        table += events_rows(o["events"], a["events"])
    if "state" in o:
        table += state_rows(o["state"], a["state"])
    return table


def state_rows(o: dict[str, Any], a: dict[str, Any]) -> list[Row]:
    """From the request to the client seeing the change (the anchor has no live channel for
    sessions and terminals: n/a), and after the response, whose goal is 100 ms."""
    nan = {"from_request_ms_p50": math.nan}
    table = []
    for kind in state.KINDS:
        x = o[kind]
        table += [
            Row(f"state: {kind} seen, from the request, p50 (ms)",
                x["from_request_ms_p50"], a.get(kind, nan)["from_request_ms_p50"], None, "{:.1f}"),
            Row(f"state: {kind} seen, after the response, p99 (ms)",
                x["after_response_ms_p99"], math.nan, None, "{:.1f}", limit=100),
        ]  # fmt: skip
    return table


def events_rows(o: dict[str, Any], a: dict[str, Any]) -> list[Row]:
    """Reported only: the project sets no goal against jupyter_server's firehose."""
    n = o["load"]["subscribers"]
    table = []
    for phase, label in (("sequential", "one POST at a time"), ("concurrent", "saturating")):
        x, y = o[phase], a[phase]
        table += [
            Row(f"events, {label}: events/s to {n} subscribers",
                x["events_per_s"], y["events_per_s"], None, "{:.0f}"),
            Row(f"events, {label}: delivery latency p50 (ms)",
                x["latency_ms_p50"], y["latency_ms_p50"], None, "{:.2f}"),
            Row(f"events, {label}: delivery latency p99 (ms)",
                x["latency_ms_p99"], y["latency_ms_p99"], None, "{:.2f}"),
            Row(f"events, {label}: all {n} received, p99 (ms)",
                x["all_received_ms_p99"], y["all_received_ms_p99"], None, "{:.2f}"),
            Row(f"events, {label}: POST response p50 (ms)",
                x["post_ms_p50"], y["post_ms_p50"], None, "{:.2f}"),
            Row(f"events, {label}: server CPU per event (us)",
                x["server_cpu_us_per_event"], y["server_cpu_us_per_event"], None, "{:.0f}"),
            Row(f"events, {label}: missing deliveries",
                x["missing_deliveries"], y["missing_deliveries"], None, "{:.0f}"),
        ]  # fmt: skip
    return table


def run_events(pair: list[Server], plan: Plan) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for server in pair:
        idle = [s for s in pair if s is not server]
        log(f"events: {server.name} ...")
        result = results[server.name] = events.run(server, plan.events(), idle)
        for phase in ("sequential", "concurrent"):
            r = result[phase]
            log(
                f"  {phase}: {r['deliveries']}/{r['deliveries_expected']} deliveries, "
                f"{r['events_per_s']:.0f} events/s, p50 {r['latency_ms_p50']:.1f} ms, "
                f"p99 {r['latency_ms_p99']:.1f} ms, POST p50 {r['post_ms_p50']:.1f} ms, "
                f"server CPU {r['server_cpu_us_per_event']:.0f} us/event, POSTs answered "
                f"{r['post_statuses']}; CPU cores: load generator {r['loadgen_cpu_cores']:.2f}, "
                f"others {r['other_cpu_cores']:.2f}"
            )
    return results


def execution_rows(o: dict[str, Any], a: dict[str, Any]) -> list[Row]:
    """A server whose execution was not available has NaN figures (shown as n/a)."""

    def pair(figure: Callable[[dict[str, Any]], float]) -> tuple[float, float]:
        ours, anchor = (float(figure(r)) if r.get("available") else math.nan for r in (o, a))
        return ours, anchor

    def flood(key: str, part: str = "flood") -> Callable[[dict[str, Any]], float]:
        return lambda r: execution.flood_median(r, key, part)

    def polled(key: str, scale: float = 1.0) -> tuple[float, float]:
        ours, anchor = pair(flood(key, "nbmodel_flood"))
        return ours * scale, anchor * scale

    via = "execution via nbmodel's API, polled every 50 ms"

    lines = execution.FLOOD_LINES
    return [
        Row("execution: first output, median (ms)",
            *pair(lambda r: r["first_output"]["median_ms"]), 1 / 2, "{:.1f}"),
        Row("execution: first output, p90 (ms)",
            *pair(lambda r: r["first_output"]["p90_ms"]), None, "{:.1f}"),
        Row(f"execution: flood of {lines:,} lines, server CPU (s)",
            *pair(flood("server_cpu_s")), 0.33, "{:.2f}"),
        Row("execution: flood, server CPU until quiet (s)",
            *pair(flood("server_cpu_until_quiet_s")), None, "{:.2f}"),
        Row("execution: flood, wall time to the end (s)",
            *pair(flood("wall_s")), None, "{:.2f}"),
        Row(f"{via}: server CPU (s)", *polled("server_cpu_s"), 0.33, "{:.2f}"),
        Row(f"{via}: bytes polled (MB)", *polled("polled_bytes", 1e-6), None, "{:.2f}"),
        Row(f"{via}: polls", *polled("polls"), None, "{:.0f}"),
        Row(f"{via}: server CPU until quiet (s)",
            *polled("server_cpu_until_quiet_s"), None, "{:.2f}"),
        Row(f"{via}: wall time to the 200 (s)", *polled("wall_s"), None, "{:.2f}"),
        Row("execution: edits in another notebook during floods, p50 (ms)",
            *pair(lambda r: r["edit_flood"]["p50_ms"]), None, "{:.1f}"),
        Row("execution: edits in another notebook during floods, p99 (ms)",
            *pair(lambda r: r["edit_flood"]["p99_ms"]), None, "{:.1f}", limit=10),
        Row("execution: edits in another notebook without a flood, p99 (ms)",
            *pair(lambda r: r["edit_baseline"]["p99_ms"]), None, "{:.1f}"),
    ]  # fmt: skip


def execution_notes(results: dict[str, dict[str, Any]]) -> list[str]:
    notes = []
    for name in ("ours", "anchor"):
        r = results[name]["execution"]
        if not r.get("available"):
            notes.append(f"execution {name}: not available ({r.get('reason')})")
            continue
        floods = [*r["flood"], *r["edit_flood"]["floods"]]
        lasts = sorted({f["reader_last_line"] for f in floods})
        exact = sum(1 for f in floods if f["reader_text_exact"])
        outputs = sorted({" + ".join(f["reader_outputs"]) for f in floods})
        notes.append(
            f"execution {name}: the reader's document ended with {lasts} after each flood, "
            f"exactly the printed text in {exact} of {len(floods)}; outputs: {outputs}; "
            f"{r['edit_flood']['edits']} edits during {r['edit_flood']['flood_s']:.1f} s of "
            f"floods, {r['edit_flood']['delivered']} delivered"
        )
        polled = r.get("nbmodel_flood", [])
        notes.append(
            f"execution {name} via nbmodel's API: the reader's document ended with "
            f"{sorted({f['reader_last_line'] for f in polled})}; the 200's outputs were the "
            f"printed text in {sum(1 for f in polled if f['final_outputs_exact'])} of "
            f"{len(polled)}, the last 202's a prefix of it in "
            f"{sum(1 for f in polled if f['last_pending_is_prefix'])}; outputs sent as "
            f"{sorted({str(f['outputs_types']) for f in polled})}"
        )
    return notes


def run_durability(pair: list[Server], plan: Plan, name: str) -> dict[str, dict[str, Any]]:
    """One durability figure on both servers; a timed one is tried again when other processes
    disturbed it (the store size is not timed, and it stops its server)."""
    results: dict[str, dict[str, Any]] = {}
    for server in pair:
        idle = [s for s in pair if s is not server and s.process is not None]
        measure = functools.partial(durability.PARTS[name], server, plan.durability, idle)
        if name in durability.TIMED:
            result, tries = calm(measure, lambda r: float(r["other_cpu_cores"]))
            result["attempts_other_cpu_cores"] = tries
        else:
            result = measure(0)
        results[server.name] = result
        log(f"durability {name}, {server.name}: {result}")
    return results


def durability_notes(results: dict[str, dict[str, Any]]) -> list[str]:
    notes = []
    for name in ("ours", "anchor"):
        r, s = results[name]["durability"]["reopen"], results[name]["durability"]["store"]
        notes.append(
            f"durability {name}: {sum(r['edits_kept'])} of {len(r['edits_kept'])} reopened "
            f"documents had every earlier edit; rooms freed {r['freed_after_s']} s after the "
            f"client left; store files after the edits: {s['store_files']}"
        )
    return notes


def durability_rows(o: dict[str, Any], a: dict[str, Any]) -> list[Row]:
    """Updates/s count what is stored: at the reader on ours (stored before it is broadcast),
    once the anchor's YStore holds it too (its broadcast does not wait for the store)."""
    u, r, s = "updates", "reopen", "store"
    edits = f"{o[s]['edits']:,} edits to a {o[s]['file_bytes'] / 1e6:.1f} MB notebook"
    return [
        Row("durable updates/s into one document, each acked",
            o[u]["acked_per_s"], a[u]["acked_per_s"], 1.0, "{:.0f}", higher=True),
        Row("durable updates/s into one document, pipelined",
            o[u]["pipelined_per_s"], a[u]["pipelined_per_s"], 1.0, "{:.0f}", higher=True),
        Row("  the same, received by the reader, each acked",
            o[u]["acked_received_per_s"], a[u]["acked_received_per_s"], None, "{:.0f}"),
        Row("  the same, received by the reader, pipelined",
            o[u]["pipelined_received_per_s"], a[u]["pipelined_received_per_s"], None, "{:.0f}"),
        Row(f"reopen of {o[r]['cells']:,} cells after eviction, median (ms)",
            o[r]["median_ms"], a[r]["median_ms"], 1 / 10, "{:.0f}"),
        Row(f"store after {edits} (bytes)",
            o[s]["store_bytes"], a[s]["store_bytes"], 1 / 20, "{:,.0f}"),
        Row("  the notebook file (bytes)",
            o[s]["file_bytes"], a[s]["file_bytes"], None, "{:,.0f}"),
        Row("  its Y state as the server sent it at the first open (bytes)",
            o[s]["encoded_state_bytes"], a[s]["encoded_state_bytes"], None, "{:,.0f}"),
        Row("  its Y state after the edits, encoded by the reader (bytes)",
            o[s]["encoded_state_bytes_after"], a[s]["encoded_state_bytes_after"], None,
            "{:,.0f}"),
    ]  # fmt: skip


def fanout_rows(o: dict[str, Any], a: dict[str, Any]) -> list[Row]:
    return [
        Row("fan-out: server CPU per delivery (us)",
            o["fanout"]["cpu_us_per_delivery"], a["fanout"]["cpu_us_per_delivery"], 1 / 10),
        Row("fan-out: latency p50 (ms)",
            o["fanout"]["latency_ms_p50"], a["fanout"]["latency_ms_p50"], None, "{:.2f}"),
        Row("fan-out: latency p99 (ms)",
            o["fanout"]["latency_ms_p99"], a["fanout"]["latency_ms_p99"], 1 / 5, "{:.2f}"),
        Row("fan-out: missing deliveries",
            o["fanout"]["missing_deliveries"], a["fanout"]["missing_deliveries"], None, "{:.0f}"),
        Row("saturating: deliveries/s",
            o["saturate"]["deliveries_per_s"], a["saturate"]["deliveries_per_s"], None, "{:.0f}"),
        Row("saturating: edits/s accepted",
            o["saturate"]["edits_per_s"], a["saturate"]["edits_per_s"], None, "{:.0f}"),
        Row("saturating: server CPU per delivery (us)",
            o["saturate"]["cpu_us_per_delivery"], a["saturate"]["cpu_us_per_delivery"]),
        Row("saturating: latency p99 (ms)",
            o["saturate"]["latency_ms_p99"], a["saturate"]["latency_ms_p99"], None, "{:.1f}"),
    ]  # fmt: skip


def render(table: list[Row]) -> str:
    header = ("metric", "ours", "anchor", "ratio", "goal", "")
    lines = [
        (
            r.metric,
            "n/a" if math.isnan(r.ours) else r.fmt.format(r.ours),
            "n/a" if math.isnan(r.anchor) else r.fmt.format(r.anchor),
            "-" if r.ratio is None else f"{r.ratio:.3f}",
            r.goal_text,
            r.met,
        )
        for r in table
    ]
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    out = []
    for n, row in enumerate([header, *lines]):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def git_state() -> dict[str, str]:
    """The commit our server ran from and its uncommitted changes (the package is editable)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=servers.HERE.parent, capture_output=True)
        return done.stdout.decode(errors="replace").strip()

    return {
        "head": git("rev-parse", "HEAD"),
        "changes": git("status", "--short", "jupyter_datastore"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter loads, fewer repetitions")
    parser.add_argument(
        "--only",
        action="append",
        choices=(*PARTS, *ON_THEIR_OWN),
        help="run only this part (repeatable); default: all of them (panel, lab_load, "
        "gateway, supernode, graphql, widgets: only when named)",
    )
    args = parser.parse_args()
    parts = set(args.only or PARTS)
    if "gateway" in parts:  # a gateway kernel's first output against a local one: on its own
        import gateway

        gateway.report(gateway.run(8 if args.quick else 20))
        parts.discard("gateway")
        if not parts:
            return
    if "graphql" in parts:  # GraphQL against REST on one server of ours: on its own
        import graphql_api

        graphql_api.report(graphql_api.run(args.quick))
        parts.discard("graphql")
    if "supernode" in parts:  # a cold open through an upstream against a local one: on its own
        import supernode

        supernode.report(supernode.run(3 if args.quick else 5))
        parts.discard("supernode")
        if not parts:
            return
    if "lab_load" in parts:  # JupyterLab's load with and without our extension: on its own
        import lab_load

        lab_load.report(lab_load.run(5 if args.quick else 10))
        parts.discard("lab_load")
        if not parts:
            return
    if "widgets" in parts:  # ipywidgets in JupyterLab, server-side runs: on its own
        import widgets

        widgets.report(widgets.run(20 if args.quick else 50, 8 if args.quick else 20))
        parts.discard("widgets")
        if not parts:
            return
    if "panel" in parts:  # JupyterLab's Datastore panel in Chromium: reported on its own
        import panel

        panel.report(panel.run(10 if args.quick else 50))
        parts.discard("panel")
        if not parts:
            return
    plan = QUICK if args.quick else FULL
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(exist_ok=True)
    report: dict[str, Any] = {
        "started": stamp,
        "plan": asdict(plan),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
        "python": sys.version,
        "ours_git": [],  # at each start of our server: the package is editable
    }
    anchor_python = anchor_exec_python = None
    if parts & {"fanout", "open", "memory", "events", "state", "durability"}:
        anchor_python = servers.ensure_anchor_venv()
        report["anchor_versions"] = servers.anchor_versions(anchor_python)
    results: dict[str, dict[str, Any]] = {"ours": {}, "anchor": {}}
    if "execution" in parts:
        try:
            anchor_exec_python = servers.ensure_anchor_exec_venv()
        except RuntimeError as error:  # the anchor could not be installed: say why, go on
            log(f"execution: the anchor is not installable: {error}")
            reason = f"the anchor is not installable: {error}"
            results["anchor"]["execution"] = {"available": False, "reason": reason}
            results["ours"]["execution"] = {"available": False, "reason": "no anchor to compare"}
        else:
            report["anchor_exec_versions"] = servers.anchor_versions(
                anchor_exec_python, servers.ANCHOR_EXEC_PACKAGES
            )
    started: list[Server] = []

    def start_pair(
        anchor_python: Path, ours: tuple[str, ...] = (), anchor: tuple[str, ...] = ()
    ) -> list[Server]:
        pair = [servers.ours(*ours), servers.anchor(anchor_python, *anchor)]
        for server in pair:
            started.append(server)
            server.start()
            log(f"{server.name}: pid {server.pid}, {server.endpoint.url}")
            if server.name == "ours":
                report["ours_git"].append(git_state())
        return pair

    def stop(pair: list[Server]) -> None:
        for server in pair:
            server.stop()

    try:
        if parts & {"fanout", "open"}:
            assert anchor_python is not None
            pair = start_pair(anchor_python)
            if "fanout" in parts:
                for name, part in run_fanouts(pair, plan).items():
                    results[name].update(part)
            if "open" in parts:
                for name, part in run_cold_opens(pair, plan).items():
                    results[name].update(part)
            stop(pair)
        if "memory" in parts:
            assert anchor_python is not None
            pair = start_pair(anchor_python)  # memory is measured on freshly started servers
            for name, part in run_memory(pair, plan).items():
                results[name]["memory"] = part
            stop(pair)
            pair = start_pair(anchor_python, opening.OURS_IDLE, opening.ANCHOR_IDLE)
            for name, part in run_growth(pair, plan).items():
                results[name]["growth"] = part
            stop(pair)
        if "events" in parts:  # a plain jupyter_server's /api/events is the anchor
            assert anchor_python is not None
            pair = start_pair(anchor_python)
            for name, part in run_events(pair, plan).items():
                results[name]["events"] = part
            stop(pair)
        if "state" in parts:  # a plain jupyter_server's /api/events is the anchor
            assert anchor_python is not None
            pair = start_pair(anchor_python)
            for name, part in state.run(pair, plan.state).items():
                results[name]["state"] = part
                log(f"state, {name}: {part}")
            stop(pair)
        if "durability" in parts:
            assert anchor_python is not None
            options = (durability.OURS_OPTIONS, durability.ANCHOR_OPTIONS)
            for name in durability.PARTS:
                pair = start_pair(anchor_python, *options)  # fresh servers and stores
                for server_name, part in run_durability(pair, plan, name).items():
                    results[server_name].setdefault("durability", {})[name] = part
                stop(pair)
        if anchor_exec_python is not None:  # the anchor with jupyter-server-nbmodel
            pair = start_pair(anchor_exec_python)
            for name, part in execution.run(pair, plan.execution()).items():
                results[name]["execution"] = part
            stop(pair)
    finally:
        for server in started:
            if server.process is not None:
                log(f"stopping {server.name} (pid {server.pid})")
            server.stop()
            if server.log_path.exists():
                shutil.copy(server.log_path, RESULTS / f"{stamp}-{server.name}-{server.port}.log")
            server.cleanup()
        leftover = execution.stop_kernels()  # kernels that outlived their server, by pid
        if leftover:
            log(f"stopped kernels that outlived their server: {leftover}")

    table = rows(results, plan)
    report["machine"]["loadavg_end"] = os.getloadavg()
    report["results"] = results
    report["table"] = [{**r.__dict__, "ratio": r.ratio, "met": r.met} for r in table]
    out = RESULTS / f"{stamp}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(report, indent=2))
    print()
    print(render(table))
    print()
    for kind in ("fanout", "saturate") if "fanout" in parts else ():
        for name in ("ours", "anchor"):
            r = results[name][kind]
            print(
                f"{kind} {name}: CPU cores used: server {r['server_cpu_share']:.2f} "
                f"({r['server_cpu_system_share'] * 100:.0f}% of it in the kernel), load "
                f"generator {r['loadgen_cpu_cores']:.2f}, other processes "
                f"{r['other_cpu_cores']:.2f}; {r['frames_to_readers']} frames to readers; "
                f"machine quiet before: {r['quiet_before']}; closes: {r['reader_closes'] or 'none'}"
            )
    if "execution" in parts:
        print("\n".join(execution_notes(results)))
    if "durability" in parts:
        print("\n".join(durability_notes(results)))
    if any(state != report["ours_git"][0] for state in report["ours_git"]):
        print("\nwarning: this project's server code changed during the run (see ours_git)")
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
