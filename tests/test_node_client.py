"""A real Node Yjs peer (y-websocket 1.x, @jupyter/ydoc, as in JupyterLab) and a Python peer
edit the same notebook through the server, live, and converge; a save writes both sides' edits.

The Node peer is tests/js/notebook_client.mjs; its packages are pinned in tests/js/package.json
and installed with `npm ci --prefix tests/js`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jupyter_ydoc import YNotebook
from notebooks import code_cell, markdown_cell, notebook, read_notebook, sources, write_notebook
from pycrdt import Array, Map, Text
from yclient import YClient, request_session, until

JS_DIR = Path(__file__).parent / "js"
SCRIPT = JS_DIR / "notebook_client.mjs"
TIMEOUT = 30.0

NODE_CELL = "b = a + 1  # a cell added in node"
NODE_TYPED = " and notes typed in node: café 🙂"
PYTHON_TYPED = "\nc = a * 3  # typed in python"
PYTHON_PREFIX = "(python was here) "


def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("`node` is not on PATH: this test needs Node.js (18 or later) to run a JS peer")
    return node


def check_node_modules() -> None:
    """Every package pinned in tests/js/package.json is installed, at its pinned version."""
    pinned = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    problems = []
    for name, version in pinned.items():
        manifest = JS_DIR / "node_modules" / name / "package.json"
        if not manifest.is_file():
            problems.append(f"{name} is not installed")
        elif json.loads(manifest.read_text()).get("version") != version:
            problems.append(f"{name} is not at the pinned version {version}")
    if problems:
        pytest.fail(
            "the Node packages of tests/js are missing or stale ("
            + "; ".join(problems)
            + "): run `npm ci --prefix tests/js` first"
        )


async def start_node(
    server: Any, session: dict[str, Any], new_cell_at: int, type_into: str, wait_for: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        node_executable(),
        str(SCRIPT),
        f"--url={server.url}",
        f"--token={server.token}",
        f"--room={session['format']}:{session['type']}:{session['fileId']}",
        f"--session-id={session['sessionId']}",
        f"--insert-at={new_cell_at}",
        f"--new-cell-source={NODE_CELL}",
        f"--type-into-id={type_into}",
        f"--typed-text={NODE_TYPED}",
        f"--wait-for={wait_for}",
        f"--timeout={TIMEOUT}",
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """Stop the process by its pid if it still runs, and reap it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
    await process.wait()


def cells(client: YClient) -> Array[Any]:
    return client.doc.get("cells", type=Array)


def cell_by_id(client: YClient, cell_id: str) -> Map[Any] | None:
    return next((cell for cell in cells(client) if cell.get("id") == cell_id), None)


def source_of(client: YClient, cell_id: str) -> str:
    cell = cell_by_id(client, cell_id)
    return "" if cell is None else str(cell["source"])


def node_present(client: YClient) -> bool:
    """Whether the client sees the Node peer's presence (its awareness `user`)."""
    return any(
        isinstance(state, dict) and state.get("user", {}).get("name") == "Node peer"
        for state in client.awareness.values()
    )


def python_sources(client: YClient) -> list[str]:
    return [str(cell["source"]) for cell in cells(client)]


async def type_text(source: Text, text: str, at_start: bool = False) -> None:
    """Type at the start or the end of a cell's source, as an editor does: one transaction,
    so one update on the wire, per keystroke, the cursor following what is typed."""
    position = 0 if at_start else len(source)  # pycrdt's offsets count UTF-8 bytes
    for character in text:
        source.insert(position, character)
        position += len(character.encode())
        await asyncio.sleep(0)  # let the client send this keystroke before the next one


def comparable(content: dict[str, Any]) -> dict[str, Any]:
    """What both peers must agree on: the notebook's metadata and every cell's fields."""
    return {
        "metadata": content["metadata"],
        "nbformat": content["nbformat"],
        "nbformat_minor": content["nbformat_minor"],
        "cells": [
            {key: cell.get(key) for key in ("id", "cell_type", "source", "metadata")}
            | ({"outputs": cell["outputs"]} if cell["cell_type"] == "code" else {})
            for cell in content["cells"]
        ],
    }


async def wait_or_exit(
    node: asyncio.subprocess.Process,
    output: asyncio.Future[tuple[bytes, bytes]],
    predicate: Callable[[], bool],
    what: str,
) -> None:
    """Wait for `predicate`, failing at once with the Node peer's output if it exits first."""
    await until(lambda: predicate() or output.done(), TIMEOUT, what)
    if not predicate():
        stdout, stderr = output.result()
        pytest.fail(
            f"the Node peer exited ({node.returncode}) before {what}:\n"
            f"stderr: {stderr.decode(errors='replace')}\nstdout: {stdout.decode()}"
        )


async def test_node_yjs_client_and_python_client_converge(server) -> None:
    node_executable()
    check_node_modules()
    path = server.root / "node-peer.ipynb"
    write_notebook(
        path,
        notebook(
            code_cell("a = 1", "c1"), markdown_cell("# Notes", "m1"), code_cell("print(a)", "c2")
        ),
    )
    session = await request_session(server.url, server.token, "node-peer.ipynb")
    py = await YClient.connect(server.url, server.token, "node-peer.ipynb")
    node: asyncio.subprocess.Process | None = None
    output: asyncio.Future[tuple[bytes, bytes]] | None = None
    try:
        node = await start_node(
            server, session, new_cell_at=1, type_into="m1", wait_for=PYTHON_TYPED
        )
        output = asyncio.ensure_future(node.communicate())
        # The Node peer's presence and its new cell reach the Python peer...
        await wait_or_exit(node, output, lambda: node_present(py), "the Node peer's presence")
        await wait_or_exit(
            node, output, lambda: NODE_CELL in python_sources(py), "the Node peer's new cell"
        )
        # ...and the Python peer types: at the start of the cell the Node peer types at the end
        # of (the two merge in one Y.Text), and at the end of another cell, the edit the Node
        # peer waits for before it prints what it holds.
        for cell_id, text, at_start in (("m1", PYTHON_PREFIX, True), ("c1", PYTHON_TYPED, False)):
            cell = cell_by_id(py, cell_id)
            assert cell is not None
            await type_text(cell["source"], text, at_start)
        await wait_or_exit(
            node,
            output,
            lambda: source_of(py, "m1") == PYTHON_PREFIX + "# Notes" + NODE_TYPED,
            "the Node peer's typing",
        )

        stdout, stderr = await asyncio.wait_for(output, TIMEOUT)
        assert node.returncode == 0, (
            f"the Node peer failed ({node.returncode}):\n{stderr.decode(errors='replace')}"
        )
        from_node = json.loads(stdout)

        # The Node peer saw the Python edit, along with its own.
        assert sources(from_node) == [
            "a = 1" + PYTHON_TYPED,
            NODE_CELL,
            PYTHON_PREFIX + "# Notes" + NODE_TYPED,
            "print(a)",
        ]
        new_cell = from_node["cells"][1]
        assert new_cell["cell_type"] == "code" and new_cell["id"] not in ("c1", "m1", "c2")
        # Both peers hold the same notebook: same cells, ids, types, sources and metadata.
        from_python = YNotebook(py.doc).get()
        assert comparable(from_python) == comparable(from_node)
        assert python_sources(py) == sources(from_node)
        # The Node peer left: its presence goes from the room.
        await until(lambda: not node_present(py), TIMEOUT, "the Node peer's awareness removal")

        # A save writes everyone's edits to the .ipynb file.
        reply = await py.save(17)
        assert reply == {"type": "save", "responseTo": 17, "status": "success"}
        on_disk = read_notebook(path)
        assert sources(on_disk) == sources(from_node)
        assert [cell["id"] for cell in on_disk["cells"]] == [
            cell["id"] for cell in from_node["cells"]
        ]
        assert [cell["cell_type"] for cell in on_disk["cells"]] == [
            "code",
            "code",
            "markdown",
            "code",
        ]
        assert on_disk["cells"][1]["outputs"] == [] and on_disk["cells"][1]["metadata"] == {}
        assert on_disk["metadata"]["kernelspec"]["name"] == "python3"
    finally:
        if node is not None:
            await stop_process(node)
        if output is not None:
            with contextlib.suppress(Exception):
                await output
        await py.close()
