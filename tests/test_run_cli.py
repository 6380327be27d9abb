"""`jupyter-datastore run NOTEBOOK --server URL`, as a user runs it: a subprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from conftest import free_port
from notebooks import code_cell, markdown_cell, notebook, read_notebook, write_notebook

from jupyter_datastore.client import Client


def run(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
    if token is not None:
        env["JUPYTER_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "jupyter_datastore.cli", "run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def text_of(cell: dict[str, Any]) -> str:
    parts = []
    for output in cell["outputs"]:
        if output["output_type"] == "stream":
            parts.append("".join(output["text"]))
        elif "data" in output:
            parts.append("".join(output["data"].get("text/plain", "")))
    return "".join(parts)


def test_all_cells_run_and_their_outputs_are_in_the_file(server) -> None:
    path = server.root / "report.ipynb"
    write_notebook(
        path,
        notebook(
            markdown_cell("# Report", "title"),
            code_cell("total = sum(range(10))", "sum"),
            code_cell("print('total', total)", "show"),
            code_cell("total * 2", "double"),
        ),
    )
    done = run("report.ipynb", "--server", server.url, token=server.token)
    assert done.returncode == 0, done.stderr
    # stderr is not a terminal here: a line per cell, then a summary.
    assert "[1/3] ok: sum: total = sum(range(10))" in done.stderr
    assert "[3/3] ok: double" in done.stderr
    assert "3 cells ran ok" in done.stderr
    cells = read_notebook(path)["cells"]  # saved before `run` exits
    assert text_of(cells[2]) == "total 45\n"
    assert text_of(cells[3]) == "90"
    assert [c.get("execution_count") for c in cells] == [None, 1, 2, 3]


def test_a_failing_cell_exits_1_with_its_error(server) -> None:
    path = server.root / "broken.ipynb"
    write_notebook(
        path,
        notebook(
            code_cell("x = 1", "fine"),
            code_cell("1 / 0", "divide"),
            code_cell("print('not reached')", "after"),
        ),
    )
    done = run("broken.ipynb", "--server", server.url, "--token", server.token)
    assert done.returncode == 1, done.stderr
    assert "cell divide error" in done.stderr
    assert "ZeroDivisionError" in done.stderr and "division by zero" in done.stderr
    assert "\x1b[" not in done.stderr  # no colour codes when stderr is not a terminal
    assert "[3/3] cancelled: after" in done.stderr
    cells = read_notebook(path)["cells"]
    assert cells[1]["outputs"][0]["ename"] == "ZeroDivisionError"
    assert cells[2]["outputs"] == []


def test_a_timeout_cancels_the_run_and_exits_1(server) -> None:
    write_notebook(
        server.root / "slow.ipynb",
        notebook(code_cell("import time; time.sleep(60)", "slow"), code_cell("1", "next")),
    )
    done = run("slow.ipynb", "--server", server.url, "--timeout", "3", token=server.token)
    assert done.returncode == 1, done.stderr
    assert "timed out after 3 s" in done.stderr

    def statuses() -> set[str]:
        runs = server.get("/api/datastore/executions?path=slow.ipynb")["executions"]
        return {r["status"] for r in runs}

    wait_until(lambda: statuses() == {"interrupted", "cancelled"}, "the cells stopped")


def test_usage_and_connection_errors_exit_2(server) -> None:
    missing = run("missing.ipynb", "--server", server.url, token=server.token)
    assert missing.returncode == 2
    assert "no file at missing.ipynb" in missing.stderr

    refused = run("missing.ipynb", "--server", server.url, token="wrong")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith("jupyter-datastore run: PUT /api/collaboration/session/")

    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = run("missing.ipynb", "--server", closed, token=server.token)
    assert unreachable.returncode == 2 and f"cannot reach {closed}" in unreachable.stderr

    no_server = run("missing.ipynb")
    assert no_server.returncode == 2 and "--server" in no_server.stderr


def test_an_empty_notebook_runs_nothing(server) -> None:
    write_notebook(server.root / "prose.ipynb", notebook(markdown_cell("only words", "w")))
    done = run("prose.ipynb", "--server", server.url, token=server.token)
    assert done.returncode == 0 and "no code cells" in done.stderr


async def test_others_watch_the_outputs_arrive(server) -> None:
    write_notebook(
        server.root / "watched.ipynb",
        notebook(code_cell("print('hello from run')", "c1"), code_cell("input_done = 1", "c2")),
    )
    async with Client(server.url, server.token) as client:
        watcher = await client.open_notebook("watched.ipynb")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jupyter_datastore.cli", "run", "watched.ipynb",
            "--server", server.url, "--token", server.token,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await watcher.wait_for(lambda nb: nb.cell("c2").execution_count is not None, 60)
        assert watcher.cell("c1").outputs[0]["text"] == "hello from run\n"
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, stderr.decode()
