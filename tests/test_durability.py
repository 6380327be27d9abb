"""Durability: what the server acknowledged survives a crash, and nothing ever doubles.

The first test kills the server with SIGKILL at random moments while writers edit one
notebook heavily and a reader watches, round after round, and checks after each restart:
every token that any client had received from the server before the kill is in what a
fresh client gets from the restarted server (before anyone who holds it reconnects), no
token and no cell appears twice, and every client, stale or fresh, converges.

The others are the reconnect scenarios, one at a time: a restart on the same store with
edits made while the server was down; a restart with no store (or a deleted one), where a
stale client is told to reload (1003, reloadable) and nothing it holds comes back; and a
file changed on disk while the clients were away (server stopped or killed, or the room
freed), where the disk change and the offline edits both end up in the document, once.

JDS_DURABILITY_ROUNDS (default 5) sets the rounds of the SIGKILL test, and
JDS_DURABILITY_SEED makes the same random choices again (when to kill, who reopens in a new
tab; how the typing interleaves still varies): the seed is printed, and is in every failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import websockets
from notebooks import code_cell, markdown_cell, notebook, read_notebook, sources, write_notebook
from pycrdt import Array, Doc, Map, Text
from yclient import YClient, request_session, until

from jupyter_datastore.protocol.messages import sync_step1

ROUNDS = int(os.environ.get("JDS_DURABILITY_ROUNDS", "5"))
WRITERS = 4
TOKEN = re.compile(r"w\d+\.\d+:\d+;")
"""A token: `w<slot>.<generation>:<n>;`, unique over the whole test."""
QUERY_AWARENESS = bytes([3])
"""A message with no effect on the document: once it is sent, so is every edit before it."""


# --- reading and editing documents ---


def cells_of(doc: Doc) -> Array:
    return doc.get("cells", type=Array)


def content(doc: Doc) -> list[tuple[str, str]]:
    """Each cell's id and source, in order."""
    return [(str(cell["id"]), str(cell["source"])) for cell in cells_of(doc)]


def cell_ids(doc: Doc) -> list[str]:
    return [str(cell["id"]) for cell in cells_of(doc)]


def tokens(doc: Doc) -> list[str]:
    found: list[str] = []
    for cell in cells_of(doc):
        found += TOKEN.findall(str(cell["source"]))
    return found


def malformed(doc: Doc) -> list[tuple[str, str]]:
    """Cells whose source is not a sequence of whole tokens (a torn or garbled insert)."""
    return [(i, s) for i, s in content(doc) if TOKEN.sub("", s)]


def append_text(doc: Doc, index: int, text: str) -> None:
    """Type at the end of a cell's source (an edit, never a re-assignment of the Y.Text)."""
    source = cells_of(doc)[index]["source"]
    source.insert(len(str(source)), text)


def prepend_text(doc: Doc, index: int, text: str) -> None:
    cells_of(doc)[index]["source"].insert(0, text)


def new_cell(cell_id: str, source: str) -> Map:
    return Map({"id": cell_id, "cell_type": "markdown", "source": Text(source), "metadata": Map()})


def on_disk(path: Path) -> list[tuple[str, str]]:
    """The cells of the notebook file, as `content` gives a document's."""
    nb = read_notebook(path)
    return list(zip([str(c["id"]) for c in nb["cells"]], sources(nb), strict=True))


def duplicates(items: list[str]) -> list[str]:
    return sorted(item for item, count in Counter(items).items() if count > 1)


def room_of(session: dict[str, Any]) -> str:
    return f"{session['format']}:{session['type']}:{session['fileId']}"


async def expect_reload(srv: Any, room: str, session_id: str, doc: Doc) -> dict[str, Any]:
    """Connect as a stale y-websocket client does (its old sessionId, then SyncStep1 with
    its state vector) and expect to be told to reload: 1003 with JSON {reason, sessionId,
    reloadable}. Nothing may be sent to it before the close (no sync of any kind)."""
    url = f"{srv.url.replace('http', 'ws', 1)}/api/collaboration/room/{room}"
    query = f"?sessionId={session_id}&token={srv.token}"
    received: list[Any] = []
    async with websockets.connect(url + query) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):  # closed already: as good
            await ws.send(sync_step1(doc.get_state()))
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                received.append(await asyncio.wait_for(ws.recv(), 20))
        code, reason = ws.close_code, ws.close_reason
    assert received == [], f"a stale client was sent {received!r} before being told to reload"
    assert code == 1003, (code, reason)
    payload: dict[str, Any] = json.loads(reason)
    assert payload["reloadable"] is True, payload
    return payload


# --- 1. SIGKILL at random moments under heavy editing ---


class Writer:
    """One user typing uniquely identifiable tokens into a notebook, now and then adding a
    cell of their own (with a unique id, its source one token)."""

    def __init__(self, slot: int, generation: int, rng: random.Random) -> None:
        self.name = f"w{slot}.{generation}"
        self.slot, self.generation = slot, generation
        self.rng = rng
        self.doc = Doc()
        self.n = 0
        self.made: list[str] = []

    def owns(self, item: str) -> bool:
        """Whether a token or a cell id is this writer's own."""
        return item.startswith(self.name + ":") or item.startswith(self.name + "-")

    def step(self) -> None:
        token = f"{self.name}:{self.n};"
        cells = cells_of(self.doc)
        if self.n % 10 == 9:
            cell = new_cell(f"{self.name}-{self.n}", token)
            cells.insert(self.rng.randrange(len(cells) + 1), cell)
        else:
            source = cells[self.rng.randrange(len(cells))]["source"]
            text = str(source)
            if self.rng.random() < 0.6:
                position = len(text)  # typing on at the end
            else:  # or between two tokens anywhere in the cell
                position = self.rng.choice([0] + [i + 1 for i, c in enumerate(text) if c == ";"])
            source.insert(position, token)
        self.made.append(token)
        self.n += 1


async def type_until(stop: asyncio.Event, writer: Writer) -> None:
    while not stop.is_set():
        writer.step()
        await asyncio.sleep(writer.rng.uniform(0.002, 0.02))  # typing speed, not a wait


async def test_sigkill_at_random_moments_loses_nothing_received_and_doubles_nothing(
    make_server, tmp_path: Path
) -> None:
    seed = int(os.environ.get("JDS_DURABILITY_SEED") or random.randrange(1 << 30))
    print(f"durability seed {seed}: JDS_DURABILITY_SEED={seed} makes the same choices")
    rng = random.Random(seed)
    srv = make_server()
    path = tmp_path / "durable.ipynb"
    write_notebook(path, notebook(*(code_cell("", f"c{i}") for i in range(3))))
    session = await request_session(srv.url, srv.token, "durable.ipynb")
    room, session_id = room_of(session), session["sessionId"]

    async def connect(doc: Doc | None = None) -> YClient:
        """A peer; with `doc`, one that reconnects with the document it holds, as
        JupyterLab's y-websocket provider does, with the sessionId it had."""
        return await YClient.connect(srv.url, srv.token, room=room, session_id=session_id, doc=doc)

    def writer(slot: int, generation: int) -> Writer:
        return Writer(slot, generation, random.Random(rng.randrange(1 << 30)))

    writers = [writer(slot, 0) for slot in range(WRITERS)]
    reader = Doc()
    everyone: list[Writer] = list(writers)  # every writer ever, the abandoned ones too
    clients = [await connect(w.doc) for w in writers] + [await connect(reader)]
    lost_unacknowledged = survived_unacknowledged = unbroadcast = 0
    try:
        for round_ in range(ROUNDS):
            where = f"seed {seed}, round {round_}"
            stop = asyncio.Event()
            typing = [asyncio.ensure_future(type_until(stop, w)) for w in writers]
            await asyncio.sleep(rng.uniform(0.3, 1.5))  # editing goes on; the kill lands then
            if rng.random() < 0.5:  # now and then while the server is busiest: a burst (paste)
                for w in writers:
                    for _ in range(rng.randrange(10, 40)):
                        w.step()
            # The kill comes from another thread, while this loop goes on sending and reading.
            process = srv.process
            assert process is not None
            killer = threading.Timer(rng.uniform(0, 0.03), os.kill, (process.pid, signal.SIGKILL))
            killer.start()
            await until(lambda p=process: p.poll() is not None, what=f"{where}: the kill")
            killer.join()
            made_before = {t for w in writers for t in w.made}
            srv.stop(signal.SIGKILL)  # reaped already: forgets the process
            # What the clients had from the server when it died, down to the last bytes it
            # sent (read from the sockets once it is dead): everything the reader holds, and
            # each writer's copy of the others' tokens and cells.
            for client in clients:
                await client.wait_closed(20)
            received, received_cells = set(tokens(reader)), set(cell_ids(reader))
            for w in writers:
                received |= {t for t in tokens(w.doc) if not w.owns(t)}
                received_cells |= {c for c in cell_ids(w.doc) if not w.owns(c)}
            unbroadcast += len(made_before - received)
            await asyncio.sleep(rng.uniform(0.0, 0.3))  # they type on while it is down
            stop.set()
            await asyncio.gather(*typing)
            for client in clients:
                await client.close()

            # Some users reopen the notebook in a new tab rather than reconnecting: what they
            # had not been acknowledged may be lost, but must then be lost everywhere.
            abandoned = [w for w in writers if rng.random() < 0.25]
            at_risk = {t for w in abandoned for t in w.made} - received
            for w in abandoned:
                writers[w.slot] = writer(w.slot, w.generation + 1)
                everyone.append(writers[w.slot])
            kept_reader = rng.random() < 0.7
            if not kept_reader:
                reader = Doc()
            expected = set(received)
            expected_cells = set(received_cells) | {"c0", "c1", "c2"}
            for w in writers:  # a reconnecting writer sends what the server lacks (SyncStep2)
                expected |= set(tokens(w.doc))
                expected_cells |= set(cell_ids(w.doc))
            if kept_reader:
                expected |= set(tokens(reader))
                expected_cells |= set(cell_ids(reader))

            srv.start()
            again = await request_session(srv.url, srv.token, "durable.ipynb")
            assert again["sessionId"] == session_id, f"{where}: the same store, the same session"
            assert room_of(again) == room
            # A fresh client first, before anyone who holds the tokens reconnects: what it
            # gets is what the server kept.
            probe = await connect()
            try:
                stored = tokens(probe.doc)
                assert received <= set(stored), (
                    f"{where}: received before the kill, missing after it: "
                    f"{sorted(received - set(stored))[:20]}"
                )
                assert received_cells <= set(cell_ids(probe.doc)), f"{where}: a cell was lost"
                assert not duplicates(stored), f"{where}: doubled: {duplicates(stored)[:20]}"
                assert not duplicates(cell_ids(probe.doc)), f"{where}: a cell appears twice"
                assert not malformed(probe.doc), f"{where}: torn text {malformed(probe.doc)}"

                clients = [await connect(w.doc) for w in writers] + [await connect(reader)]

                def converged(
                    p: YClient = probe, want: set[str] = expected, peers: list[YClient] = clients
                ) -> bool:
                    if not want <= set(tokens(p.doc)):
                        return False
                    target = content(p.doc)
                    return all(content(c.doc) == target for c in peers)

                await until(converged, timeout=30, what=f"{where}: every client converges")
                final = tokens(probe.doc)
                assert not duplicates(final), f"{where}: doubled: {duplicates(final)[:20]}"
                ids = cell_ids(probe.doc)
                assert not duplicates(ids), f"{where}: cells twice: {duplicates(ids)}"
                assert expected_cells <= set(ids), f"{where}: lost {expected_cells - set(ids)}"
                assert not malformed(probe.doc), f"{where}: torn text {malformed(probe.doc)}"
                made = {t for w in everyone for t in w.made}
                assert set(final) <= made, f"{where}: tokens no one typed: {set(final) - made}"
                # Unacknowledged tokens of abandoned tabs: in the document, once, or nowhere.
                lost = at_risk - set(final)
                assert not any(lost & set(tokens(c.doc)) for c in clients)
                lost_unacknowledged += len(lost)
                survived_unacknowledged += len(at_risk) - len(lost)
            finally:
                await probe.close()

        # At the end, the file and a clean restart agree with what everyone has.
        want = content(clients[-1].doc)
        assert (await clients[0].save(1, timeout=30))["status"] == "success"
        assert on_disk(path) == want
        for client in clients:
            await client.close()
        clients = []
        srv.restart(signal.SIGTERM)
        last = await connect()
        try:
            assert content(last.doc) == want
        finally:
            await last.close()
        typed = sum(w.n for w in everyone)
        print(
            f"{typed} tokens typed over {ROUNDS} kills; {unbroadcast} in flight at a kill "
            f"(seen by no other client); unacknowledged tokens of abandoned tabs: "
            f"{survived_unacknowledged} survived, {lost_unacknowledged} lost"
        )
        assert typed > ROUNDS * WRITERS * 10, "the writers did type heavily"
    finally:
        for client in clients:
            await client.close()


# --- 2. reconnect scenarios ---


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_a_restart_on_the_same_store_merges_offline_edits_once(
    make_server, tmp_path: Path, sig: int
) -> None:
    srv = make_server()
    path = tmp_path / "same.ipynb"
    write_notebook(
        path,
        notebook(code_cell("one", "c1"), code_cell("two", "c2"), markdown_cell("three", "m3")),
    )
    session = await request_session(srv.url, srv.token, "same.ipynb")
    room, session_id = room_of(session), session["sessionId"]

    async def connect(doc: Doc | None = None) -> YClient:
        return await YClient.connect(srv.url, srv.token, room=room, session_id=session_id, doc=doc)

    a, b = await connect(), await connect()
    append_text(a.doc, 0, " by a")
    append_text(b.doc, 1, " by b")
    # Each seen by the other peer: acknowledged, so durable.
    await until(
        lambda: content(a.doc) == content(b.doc) == [
            ("c1", "one by a"), ("c2", "two by b"), ("m3", "three")
        ],
        what="each edit at the other peer",
    )  # fmt: skip
    append_text(a.doc, 2, " in flight")  # on the wire when the server stops; not acknowledged
    await a.send(QUERY_AWARENESS)
    srv.stop(sig)
    await a.wait_closed(20)
    await b.wait_closed(20)
    await a.close()
    await b.close()
    # Both go on editing while the server is down, in the same cell too.
    append_text(a.doc, 0, " offline a")
    cells_of(a.doc).insert(1, new_cell("a-new", "added offline by a"))
    prepend_text(b.doc, 0, "b> ")
    cells_of(b.doc).append(new_cell("b-new", "added offline by b"))

    srv.start()
    assert (await request_session(srv.url, srv.token, "same.ipynb"))["sessionId"] == session_id
    fresh = await connect()  # before the stale clients: what the server kept
    stale_a = stale_b = None
    try:
        kept = dict(content(fresh.doc))
        assert kept["c1"] == "one by a" and kept["c2"] == "two by b", kept
        assert kept["m3"] in ("three", "three in flight"), kept
        assert cell_ids(fresh.doc) == ["c1", "c2", "m3"]
        stale_a, stale_b = await connect(a.doc), await connect(b.doc)
        want = [
            ("c1", "b> one by a offline a"),
            ("a-new", "added offline by a"),
            ("c2", "two by b"),
            ("m3", "three in flight"),
            ("b-new", "added offline by b"),
        ]
        await until(lambda: content(fresh.doc) == want, what="the offline edits, once each")
        await until(
            lambda: content(stale_a.doc) == content(stale_b.doc) == want, what="convergence"
        )
        assert (await fresh.save(2))["status"] == "success"
        assert on_disk(path) == want
        late = await connect()
        assert content(late.doc) == want
        await late.close()
    finally:
        for client in (fresh, stale_a, stale_b):
            if client is not None:
                await client.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_a_restart_without_the_store_tells_stale_clients_to_reload(
    make_server, tmp_path: Path, sig: int
) -> None:
    srv = make_server(["--store=sqlite://:memory:"])
    path = tmp_path / "memory.ipynb"
    write_notebook(path, notebook(code_cell("x", "c1"), markdown_cell("y", "m2")))
    session = await request_session(srv.url, srv.token, "memory.ipynb")
    room, old_session = room_of(session), session["sessionId"]
    a = await YClient.connect(srv.url, srv.token, room=room, session_id=old_session)
    append_text(a.doc, 0, " seen")
    assert (await a.save(1))["status"] == "success"  # the file has it: nothing else will
    assert on_disk(path) == [("c1", "x seen"), ("m2", "y")]
    srv.stop(sig)
    await a.wait_closed(20)
    await a.close()
    # Offline edits on a document of a store that no longer exists.
    append_text(a.doc, 0, " offline")
    cells_of(a.doc).append(new_cell("stale", "must not come back"))

    srv.start()
    store_session = srv.get("/api/datastore/status")["sessionId"]
    new_session = (await request_session(srv.url, srv.token, "memory.ipynb"))["sessionId"]
    assert new_session != old_session, "a new store is a new session"
    assert new_session.startswith(store_session), "the document's session is the new store's"
    payload = await expect_reload(srv, room, old_session, a.doc)
    assert payload["sessionId"] == new_session, payload
    assert payload["reason"] == "unknown_session", payload
    # Told again if it does not listen: a stale session never merges.
    assert (await expect_reload(srv, room, old_session, a.doc))["sessionId"] == new_session

    fresh = await YClient.connect(srv.url, srv.token, room=room, session_id=new_session)
    try:
        assert content(fresh.doc) == [("c1", "x seen"), ("m2", "y")]  # the file, once
        reloaded = await YClient.connect(srv.url, srv.token, "memory.ipynb")  # the reload
        assert content(reloaded.doc) == content(fresh.doc)
        await reloaded.close()
        assert (await fresh.save(2))["status"] == "success"
        assert on_disk(path) == [("c1", "x seen"), ("m2", "y")]
    finally:
        await fresh.close()


@pytest.mark.parametrize("away", ["server stopped", "server killed", "room freed"])
async def test_a_file_changed_on_disk_while_clients_were_away_merges_with_their_edits(
    make_server, tmp_path: Path, away: str
) -> None:
    # Killed: with no autosave in the meantime, the room's last edit is in the store only.
    args = ["--DatastoreApp.save_delay=60", "--DatastoreApp.save_max_wait=120"]
    srv = make_server(args if away == "server killed" else [])
    path = tmp_path / "disk.ipynb"
    write_notebook(
        path, notebook(code_cell("one", "c1"), code_cell("two", "c2"), code_cell("three", "c3"))
    )
    session = await request_session(srv.url, srv.token, "disk.ipynb")
    room, session_id = room_of(session), session["sessionId"]

    async def connect(doc: Doc | None = None) -> YClient:
        return await YClient.connect(srv.url, srv.token, room=room, session_id=session_id, doc=doc)

    a, b = await connect(), await connect()
    append_text(a.doc, 0, " seen")
    assert (await a.save(1))["status"] == "success"
    append_text(a.doc, 2, " unsaved")
    await until(lambda: content(b.doc) == content(a.doc), what="the edit at b (durable)")
    await a.close()
    await b.close()
    if away == "room freed":

        def freed() -> bool:
            return room not in [r["name"] for r in srv.get("/api/datastore/status")["rooms"]]

        await until(freed, timeout=20, what="the room freed")
    else:
        srv.stop(signal.SIGTERM if away == "server stopped" else signal.SIGKILL)
    # A stopped server and a freed room saved the last edit; a killed server did not.
    last = "three" if away == "server killed" else "three unsaved"
    assert on_disk(path) == [("c1", "one seen"), ("c2", "two"), ("c3", last)]

    # Another program changes the file meanwhile (compact JSON, as a script would write it).
    nb = read_notebook(path)
    nb["cells"][0]["source"] = "disk: " + sources(nb)[0]
    nb["cells"][1]["source"] = "two, edited on disk"
    nb["cells"].append(markdown_cell("from disk", "m-disk"))
    path.write_text(json.dumps(nb))
    # And the client edits its copy.
    append_text(a.doc, 0, " + offline")
    cells_of(a.doc).append(new_cell("mine", "added offline"))

    if away != "room freed":
        srv.start()
        assert (await request_session(srv.url, srv.token, "disk.ipynb"))["sessionId"] == session_id
    stale = await connect(a.doc)
    fresh = await connect()
    try:
        head = [
            ("c1", "disk: one seen + offline"),
            ("c2", "two, edited on disk"),
            ("c3", "three unsaved"),
        ]
        tail = {("m-disk", "from disk"), ("mine", "added offline")}

        def merged(doc: Doc) -> bool:
            cells = content(doc)
            return cells[:3] == head and set(cells[3:]) == tail and len(cells) == 5

        await until(lambda: merged(fresh.doc), what=f"{away}: the disk change and the edits")
        await until(lambda: content(stale.doc) == content(fresh.doc), what="the stale client")
        want = content(fresh.doc)
        assert (await fresh.save(2))["status"] == "success"
        assert on_disk(path) == want
    finally:
        await stale.close()
        await fresh.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_a_store_deleted_while_the_server_was_stopped_tells_stale_clients_to_reload(
    make_server, tmp_path: Path, sig: int
) -> None:
    srv = make_server()
    path = tmp_path / "gone.ipynb"
    write_notebook(path, notebook(code_cell("one", "c1"), markdown_cell("two", "m2")))
    session = await request_session(srv.url, srv.token, "gone.ipynb")
    room, old_session = room_of(session), session["sessionId"]
    a = await YClient.connect(srv.url, srv.token, room=room, session_id=old_session)
    b = await YClient.connect(srv.url, srv.token, room=room, session_id=old_session)
    append_text(a.doc, 0, " seen")
    assert (await a.save(1))["status"] == "success"
    append_text(a.doc, 1, " maybe saved")  # durable in the store; on disk or not, by now
    await until(lambda: content(b.doc) == content(a.doc), what="the edit at b")
    srv.stop(sig)
    for client in (a, b):
        await client.wait_closed(20)
        await client.close()
    store = list((tmp_path / ".jupyter").glob("datastore.db*"))
    assert store, "the store is a file under the root"
    for file in store:
        file.unlink()
    append_text(a.doc, 0, " offline")
    cells_of(a.doc).append(new_cell("stale", "must not come back"))
    file_now = on_disk(path)

    srv.start()
    store_session = srv.get("/api/datastore/status")["sessionId"]
    new_session = (await request_session(srv.url, srv.token, "gone.ipynb"))["sessionId"]
    assert new_session != old_session, "a new store is a new session"
    assert new_session.startswith(store_session), "the document's session is the new store's"
    for stale in (a, b):
        payload = await expect_reload(srv, room, old_session, stale.doc)
        assert payload["sessionId"] == new_session, payload
    fresh = await YClient.connect(srv.url, srv.token, "gone.ipynb")
    try:
        assert content(fresh.doc) == file_now  # the file's content, exactly once
        assert "stale" not in cell_ids(fresh.doc)
        assert file_now[0] == ("c1", "one seen")
        assert (await fresh.save(2))["status"] == "success"
        assert on_disk(path) == file_now
    finally:
        await fresh.close()
