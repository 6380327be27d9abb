"""SIGKILL in the middle of heavy editing, again and again, on both store backends.

Four writers type uniquely numbered tokens into a notebook (and now and then add a cell with
a unique id) while a reader watches; the server is killed with SIGKILL at a random moment,
restarted on the same store, and every client reconnects with the document it holds, as
JupyterLab does. What any client had received from the server before the kill must be in
the document afterwards; nothing may appear twice; everyone must end with the same content.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
from pathlib import Path

from notebooks import code_cell, notebook, write_notebook
from pycrdt import Array, Doc, Map, Text
from yclient import YClient, request_session, until

WRITERS = 4
ROUNDS = int(os.environ.get("JDS_CRASH_ROUNDS", "4"))
TOKEN = re.compile(r"w\d+:\d+;")


def tokens(doc: Doc) -> list[str]:
    found: list[str] = []
    for cell in doc.get("cells", type=Array):
        found += TOKEN.findall(str(cell["source"]))
    return found


def cell_ids(doc: Doc) -> list[str]:
    return [str(cell["id"]) for cell in doc.get("cells", type=Array)]


def content(doc: Doc) -> list[tuple[str, str]]:
    return [(str(cell["id"]), str(cell["source"])) for cell in doc.get("cells", type=Array)]


def type_token(doc: Doc, writer: int, n: int) -> None:
    """Append a token to the first cell; every tenth one also adds a cell of its own."""
    token = f"w{writer}:{n};"
    cells = doc.get("cells", type=Array)
    source = cells[0]["source"]
    source.insert(len(str(source)), token)
    if n % 10 == 9:
        cell = Map(
            {
                "id": f"w{writer}-c{n}",
                "cell_type": "markdown",
                "source": Text(token.replace(";", "!")),
                "metadata": Map(),
            }
        )
        cells.append(cell)


async def type_until(stop: asyncio.Event, doc: Doc, writer: int, start: int) -> int:
    """Type a token about every 10 ms until told to stop; returns the next number."""
    n = start
    while not stop.is_set():
        type_token(doc, writer, n)
        n += 1
        await asyncio.sleep(0.01)  # typing speed, not synchronisation
    return n


async def test_sigkill_under_heavy_editing_loses_nothing_received_and_duplicates_nothing(
    store_args: list[str], make_server, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")  # shown on failure: the same kills again with this seed
    rng = random.Random(seed)
    srv = make_server(store_args)
    write_notebook(tmp_path / "crash.ipynb", notebook(code_cell("", "c0")))
    session = await request_session(srv.url, srv.token, "crash.ipynb")
    room, session_id = f"json:notebook:{session['fileId']}", session["sessionId"]

    async def connect(doc: Doc | None = None) -> YClient:
        """A peer that reconnects with the document it holds, as y-websocket does."""
        return await YClient.connect(srv.url, srv.token, room=room, session_id=session_id, doc=doc)

    docs = [Doc() for _ in range(WRITERS + 1)]  # the writers', then the reader's
    clients = [await connect(d) for d in docs]
    numbers = [0] * WRITERS
    try:
        for round_ in range(ROUNDS):
            stop = asyncio.Event()
            typing = [
                asyncio.ensure_future(type_until(stop, docs[w], w, numbers[w]))
                for w in range(WRITERS)
            ]
            await asyncio.sleep(rng.uniform(0.2, 0.8))  # let them type: the kill lands mid-way
            srv.stop(signal.SIGKILL)
            # What clients had from the server when it died: all the reader holds, and what
            # each writer holds of the others' tokens.
            received = set(tokens(docs[-1]))
            for w in range(WRITERS):
                received |= {t for t in tokens(docs[w]) if not t.startswith(f"w{w}:")}
            stop.set()
            numbers = list(await asyncio.gather(*typing))
            for client in clients:
                await client.close()

            srv.start()
            clients = [await connect(d) for d in docs]
            fresh = await connect()
            try:
                # Every writer's offline tokens come back with its reconnection.
                every = set().union(*(tokens(d) for d in docs))
                await until(
                    lambda e=every, f=fresh.doc: set(tokens(f)) == e,
                    timeout=20,
                    what=f"round {round_}: all tokens at a fresh client",
                )
                assert received <= set(tokens(fresh.doc)), (
                    f"round {round_}: lost {received - set(tokens(fresh.doc))}"
                )
                found = tokens(fresh.doc)
                assert len(found) == len(set(found)), f"round {round_}: a token appears twice"
                ids = cell_ids(fresh.doc)
                assert len(ids) == len(set(ids)), f"round {round_}: a cell appears twice"
                await until(
                    lambda f=fresh.doc: all(content(d) == content(f) for d in docs),
                    timeout=20,
                    what=f"round {round_}: every client converges",
                )
            finally:
                await fresh.close()
        assert sum(numbers) > ROUNDS * WRITERS * 5  # the clients did type heavily
    finally:
        for client in clients:
            await client.close()
