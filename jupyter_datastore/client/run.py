"""`jupyter-datastore run NOTEBOOK --server URL`: run a notebook's code cells on a server.

The cells run on the server, in order, on the notebook's kernel; their outputs land in the
shared document as they come, so anyone who has the notebook open watches them arrive, and
the notebook is saved at the end. Progress goes to stderr: a bar on a terminal, a line per
cell otherwise. Exit status: 0 when every cell ran ok; 1 when one failed (its error is
printed, and the server cancels the cells after it, as Run All stops) or the run timed out;
2 for a usage error or a server that cannot be used (unreachable, refused, no such file).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
from typing import TextIO

from ..progress import Bar
from .client import Client, Execution
from .documents import Cell
from .errors import ClientError
from .room import Backoff

__all__ = ["Progress", "main", "run"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Progress:
    """The cells of a run on a progress bar (`progress.Bar`)."""

    def __init__(self, cells: list[Cell], stream: TextIO) -> None:
        self.labels = {cell.id: _label(cell) for cell in cells}
        self.order = [cell.id for cell in cells]
        self.bar = Bar(len(cells), stream)

    def current(self) -> str:
        done = self.bar.done
        return self.labels[self.order[done]] if done < len(self.order) else "done"

    def finished(self, execution: Execution) -> None:
        label = self.labels.get(execution.cell_id or "", execution.cell_id or "")
        self.bar.advance(f"{execution.status}: {label}", self._next())

    def _next(self) -> str:
        following = self.bar.done + 1
        return self.labels[self.order[following]] if following < len(self.order) else "done"

    def close(self) -> None:
        self.bar.close()

    async def tick(self) -> None:
        """Redraw every half second (the clock moves while a long cell runs)."""
        while self.bar.tty:
            self.bar.draw(self.current())
            await asyncio.sleep(0.5)


def _label(cell: Cell) -> str:
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    return f"{cell.id}: {first.strip()[:60]}"


def report(execution: Execution, stream: TextIO) -> None:
    """What went wrong with a cell, as the notebook would show it."""
    ansi = stream.isatty()
    stream.write(f"\ncell {execution.cell_id} {execution.status}")
    stream.write(f" ({execution.reason})\n" if execution.reason else "\n")
    lines = execution.traceback
    if not lines and execution.error:
        lines = [f"{execution.error.get('ename')}: {execution.error.get('evalue')}"]
    for line in lines:
        stream.write((line if ansi else _ANSI.sub("", line)) + "\n")
    stream.flush()


async def run(
    path: str,
    server: str,
    token: str | None,
    *,
    kernel: str | None = None,
    timeout: float | None = None,
    stream: TextIO = sys.stderr,
) -> int:
    """Run every code cell of the notebook at `path`; the exit status (see the module)."""
    async with Client(server, token, backoff=Backoff(give_up_after=30.0)) as client:
        notebook = await client.open_notebook(path)
        cells = [cell for cell in notebook.cells if cell.is_code]
        if not cells:
            stream.write(f"{path}: no code cells\n")
            return 0
        progress = Progress(cells, stream)
        ticker = asyncio.create_task(progress.tick())
        try:
            submitted = await client.submit(
                [cell.id for cell in cells], room_id=notebook.room_id, kernel=kernel
            )
            finished = await notebook.wait(
                submitted, timeout=timeout, on_finished=progress.finished
            )
        except asyncio.TimeoutError:
            progress.close()
            stream.write(f"timed out after {timeout:g} s; the cells left were cancelled\n")
            return 1
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        progress.close()
        with contextlib.suppress(ClientError, asyncio.TimeoutError):
            await notebook.save()
        failed = next((e for e in finished if not e.ok), None)
        if failed is not None:
            report(failed, stream)
            return 1
        stream.write(f"{path}: {len(finished)} cells ran ok\n")
        return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="jupyter-datastore run",
        description="Run a notebook's code cells on a jupyter-datastore server; the outputs "
        "land in the shared notebook.",
    )
    parser.add_argument("notebook", help="the notebook's path, relative to the server's root")
    parser.add_argument("--server", required=True, help="the server's URL (with its base URL)")
    parser.add_argument("--token", help="the server's token (default: $JUPYTER_TOKEN)")
    parser.add_argument("--kernel", help="the kernelspec to start if the notebook has no kernel")
    parser.add_argument("--timeout", type=float, help="seconds the whole run may take")
    args = parser.parse_args(argv)
    token = args.token if args.token is not None else os.environ.get("JUPYTER_TOKEN")
    try:
        return asyncio.run(
            run(args.notebook, args.server, token, kernel=args.kernel, timeout=args.timeout)
        )
    except ClientError as exc:
        print(f"jupyter-datastore run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
