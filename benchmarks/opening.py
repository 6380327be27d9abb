"""Opening notebooks: cold-open time and memory per open room.

Cold open: a notebook file the server has never seen (a fresh copy each time), timed from the
session PUT to the SyncStep2 reply to the client's SyncStep1. Memory: RSS growth of a
freshly started server after N distinct notebooks are opened, one connected client each.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

from notebooks import write_notebook
from servers import CpuWatch, Server, quiesce
from ywire import open_room, sync


async def _open(server: Server, path: str) -> tuple[float, Any]:
    """(seconds from the session PUT to SyncStep2, the open WebSocket)."""
    start = time.perf_counter()
    session = server.endpoint.session(path)
    ws = await open_room(server.endpoint.room_url(session))
    await sync(ws)
    return time.perf_counter() - start, ws


def cold_open(server: Server, cells: int, name: str, idle: list[Server]) -> tuple[float, float]:
    """One cold open of a fresh `cells`-cell notebook, with every server quiet before it:
    (seconds, CPU cores used meanwhile by processes other than the server and this one)."""
    path = write_notebook(server.root, f"{name}.ipynb", cells)
    quiesce([server, *idle])

    async def once() -> float:
        seconds, ws = await _open(server, path)
        await ws.close()
        return seconds

    watch = CpuWatch({"server": [server.pid], "client": [os.getpid()]})
    seconds = asyncio.run(once())
    used = watch.stop()
    return seconds, used["others"] / used["elapsed"]


def summarise_opens(runs: list[tuple[float, float]]) -> dict[str, Any]:
    return {
        "median_ms": statistics.median(seconds for seconds, _ in runs) * 1e3,
        "runs_ms": [round(seconds * 1e3, 1) for seconds, _ in runs],
        "other_cpu_cores": [round(others, 2) for _, others in runs],
    }


def memory_per_room(server: Server, rooms: int, cells: int, idle: list[Server]) -> dict[str, Any]:
    """RSS growth per room after opening `rooms` distinct notebooks, one client on each.

    A first room (not counted) is opened before the baseline, so that one-time costs (modules
    imported and caches filled on first use) are not charged to the rooms.
    """
    warm_up = write_notebook(server.root, "mem-warm-up.ipynb", cells)
    paths = [write_notebook(server.root, f"mem-{i}.ipynb", cells) for i in range(rooms)]

    async def measure() -> dict[str, Any]:
        sockets = []
        try:
            sockets.append((await _open(server, warm_up))[1])
            quiet_before = await asyncio.to_thread(quiesce, [server, *idle])
            before = server.rss_bytes()
            for path in paths:
                _, ws = await _open(server, path)
                sockets.append(ws)
            quiet_after = await asyncio.to_thread(quiesce, [server, *idle])
            after = server.rss_bytes()
        finally:
            for ws in sockets:
                await ws.close()
        return {
            "rooms": rooms,
            "cells": cells,
            "rss_before_mb": before / 2**20,
            "rss_after_mb": after / 2**20,
            "mb_per_room": (after - before) / rooms / 2**20,
            "quiet": quiet_before and quiet_after,
        }

    return asyncio.run(measure())


ROOM_IDLE_SECONDS = 3
"""How soon both servers free a room after its last client left, for `growth_after_close`."""
OURS_IDLE = (f"--DatastoreApp.room_idle_timeout={ROOM_IDLE_SECONDS}",)
ANCHOR_IDLE = (f"--YDocExtension.document_cleanup_delay={ROOM_IDLE_SECONDS}",)


def growth_after_close(
    server: Server, sizes: tuple[int, ...], idle: list[Server]
) -> dict[str, Any]:
    """RSS growth of a freshly started server (started with `OURS_IDLE` or `ANCHOR_IDLE`)
    after it opened notebooks of `sizes` cells (one client each), and once their clients
    left and their rooms were freed: what a server keeps of rooms that are gone."""
    from durability import room_name, rooms_deleted, wait_freed

    paths = [write_notebook(server.root, f"grow-{cells}.ipynb", cells) for cells in sizes]

    async def measure() -> dict[str, Any]:
        quiet_before = await asyncio.to_thread(quiesce, [server, *idle])
        before = server.rss_bytes()
        sockets = [(await _open(server, path))[1] for path in paths]
        rooms = [room_name(server, path) for path in paths]
        await asyncio.to_thread(quiesce, [server, *idle])
        opened = server.rss_bytes()
        deleted = {room: rooms_deleted(server, room) for room in rooms}
        for ws in sockets:
            await ws.close()
        freed_after = [await wait_freed(server, room, deleted[room]) for room in rooms]
        quiet_after = await asyncio.to_thread(quiesce, [server, *idle])
        closed = server.rss_bytes()
        return {
            "cells": list(sizes),
            "rss_before_mb": before / 2**20,
            "open_growth_mb": (opened - before) / 2**20,
            "closed_growth_mb": (closed - before) / 2**20,
            "freed_after_s": [round(seconds, 1) for seconds in freed_after],
            "quiet": quiet_before and quiet_after,
        }

    return asyncio.run(measure())
