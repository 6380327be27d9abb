"""Profile this project's server under the fan-out load (4 writers x 25 edits/s, 50 readers).

    .venv/bin/python benchmarks/profile_ours.py [--seconds 15] [--readers 50]

Samples the server with py-spy (installed into this venv if missing) for `--seconds` of the
load's measured window, writes the speedscope profile under benchmarks/results/, and prints
the functions with the most samples by own time and by total time.
"""

from __future__ import annotations

import argparse
import json
import linecache
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import fanout
import servers

RESULTS = servers.HERE / "results"


def py_spy() -> Path:
    binary = Path(sys.executable).parent / "py-spy"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], check=True)
    return binary


WAIT = re.compile(r"\.(select|get|wait|acquire|join|poll)\(")
"""A leaf line calling one of these is taken as waiting (py-spy counts some waits as busy)."""


def summarise(profile_path: Path, top: int) -> dict[str, Any]:
    """Busy time per thread and per function (name + file, all lines): own and total.

    py-spy leaves out samples of threads it sees idle, but counts some blocking calls (the
    event loop's epoll, a queue's get) as busy; samples whose innermost Python line is such a
    call are set apart as waiting, so shares are of the time threads really worked.
    """
    data = json.loads(profile_path.read_text())
    frames = data["shared"]["frames"]

    def key(index: int) -> str:
        frame = frames[index]
        file = "/".join(Path(frame.get("file") or "?").parts[-2:])
        return f"{frame['name']} ({file})"

    def waiting(index: int) -> bool:
        frame = frames[index]
        line = linecache.getline(frame.get("file") or "", frame.get("line") or 0)
        return bool(WAIT.search(line))

    threads: dict[str, float] = {}
    waits: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for profile in data["profiles"]:
        threads[profile["name"]] = 0.0
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if not stack:
                continue
            if waiting(stack[-1]):
                waits[key(stack[-1])] += weight
                continue
            threads[profile["name"]] += weight
            own[key(stack[-1])] += weight
            for name in {key(i) for i in stack}:
                total[name] += weight
    busy = sum(threads.values())
    return {
        "busy_seconds": busy,
        "threads": threads,
        "waiting": dict(waits),
        "own": [(name, seconds, seconds / busy) for name, seconds in own.most_common(top)],
        "total": [(name, seconds, seconds / busy) for name, seconds in total.most_common(top)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15, help="how long to sample")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--readers", type=int, default=50, help="readers in the room")
    args = parser.parse_args()
    binary = py_spy()
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"{stamp}-profile-ours.speedscope.json"
    server = servers.ours()
    recorder: subprocess.Popen[bytes] | None = None

    def record() -> None:
        nonlocal recorder
        command = [
            str(binary), "record", "--pid", str(server.pid), "--duration", str(int(args.seconds)),
            "--rate", str(args.rate), "--format", "speedscope", "--output", str(out),
        ]  # fmt: skip
        recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    try:
        server.start()
        load = fanout.Load(readers=args.readers, duration=args.seconds + 5)
        result = fanout.run(server, load, "profile", [], on_go=record)
        assert recorder is not None
        _, errors = recorder.communicate(timeout=60)
        if recorder.returncode != 0:
            raise RuntimeError(f"py-spy failed: {errors.decode(errors='replace')}")
    finally:
        if recorder is not None and recorder.poll() is None:
            recorder.kill()
            recorder.wait()
        server.cleanup()

    summary = summarise(out, args.top)
    print(
        f"load (while sampled): {result['cpu_us_per_delivery']:.1f} us CPU per delivery, "
        f"p50 {result['latency_ms_p50']:.2f} ms, p99 {result['latency_ms_p99']:.2f} ms, "
        f"{result['missing_deliveries']} missing"
    )
    print(f"busy thread time sampled over {args.seconds:.0f} s:")
    for thread, seconds in summary["threads"].items():
        print(f"  {seconds:6.2f} s  {thread}")
    print("set apart as waiting:")
    for name, seconds in summary["waiting"].items():
        print(f"  {seconds:6.2f} s  {name}")
    for title in ("own", "total"):
        print(f"\ntop functions by {title} time (seconds, share of all busy thread time):")
        for name, seconds, share in summary[title]:
            print(f"  {seconds:6.2f} s {share * 100:5.1f}%  {name}")
    (RESULTS / f"{stamp}-profile-ours.json").write_text(
        json.dumps({"load": result, "profile": str(out), **summary}, indent=2)
    )
    print(f"\nspeedscope profile: {out}")


if __name__ == "__main__":
    main()
