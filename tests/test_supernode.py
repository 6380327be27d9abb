"""Supernode mode: this server in front of a stock Jupyter server (a real one, on loopback),
serving its notebooks and kernels (`jupyter-datastore serve --upstream URL`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from execapi import ExecApi, outputs_text
from notebooks import code_cell, notebook, read_notebook, sources, write_notebook
from pycrdt import Array
from upstreams import UpstreamServer
from yclient import YClient, eventually, until

pytestmark = pytest.mark.timeout(240)

SLOW_POLL = "--DatastoreApp.file_poll_interval=60"
"""Polling left aside: a change made on the upstream must come through its events."""


def supernode_args(upstream: UpstreamServer, *more: str) -> list[str]:
    return [f"--upstream={upstream.url}", f"--upstream-token={upstream.token}", *more]


def cell_source(client: YClient, index: int) -> str:
    return str(client.doc.get("cells", type=Array)[index]["source"])


def type_into(client: YClient, index: int, text: str) -> None:
    source = client.doc.get("cells", type=Array)[index]["source"]
    source.insert(len(str(source)), text)


async def upstream_status(server: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(headers={"Authorization": f"token {server.token}"}) as http:
        response = await http.get(f"{server.url}/api/datastore/state")
    response.raise_for_status()
    return dict(response.json()["status"]["upstream"])


async def status_is(server: Any, **expected: Any) -> bool:
    """Whether the state's `status.upstream` has these values now."""
    status = await upstream_status(server)
    return all(status[key] == value for key, value in expected.items())


async def upstream_kernels(upstream: UpstreamServer) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(headers=upstream.headers) as http:
        response = await http.get(f"{upstream.url}/api/kernels")
    response.raise_for_status()
    return list(response.json())


async def test_two_clients_co_edit_an_upstream_notebook_and_run_a_cell_on_its_kernel(
    upstream: UpstreamServer, make_server: Any, tmp_path: Path
) -> None:
    (upstream.root / "sub").mkdir()
    code = "import os\nprint(os.getcwd())"
    write_notebook(upstream.root / "sub" / "nb.ipynb", notebook(code_cell(code, "c1")))
    local = tmp_path / "local"
    local.mkdir()
    server = make_server(supernode_args(upstream), root=local)
    a = await YClient.connect(server.url, server.token, "sub/nb.ipynb")
    b = await YClient.connect(server.url, server.token, "sub/nb.ipynb")
    api = ExecApi(server.url, server.token)
    try:
        assert cell_source(b, 0) == code  # read from the upstream
        type_into(a, 0, "\nprint('edited')")
        await until(lambda: "edited" in cell_source(b, 0), what="a's edit at b")
        await until(
            lambda: "edited" in sources(read_notebook(upstream.root / "sub" / "nb.ipynb"))[0],
            timeout=20,
            what="the autosave on the upstream's disk",
        )
        assert not (local / "sub").exists()  # nothing of the notebook's is kept locally

        (record,) = await api.run("sub/nb.ipynb", "c1")
        done = await api.wait(record["id"], timeout=90)
        assert done["status"] == "ok", done
        # The kernel is the upstream's, started in the notebook's folder there.
        assert [k["id"] for k in await upstream_kernels(upstream)] == [done["kernel_id"]]
        expected = f"{upstream.root / 'sub'}\nedited\n"
        await until(
            lambda: outputs_text(b.doc, "c1") == expected,
            what=f"the outputs at b, not {outputs_text(b.doc, 'c1')!r}",
        )

        def saved_outputs() -> str:
            nb = read_notebook(upstream.root / "sub" / "nb.ipynb")
            return "".join("".join(o.get("text", "")) for o in nb["cells"][0]["outputs"])

        await until(lambda: saved_outputs() == expected, timeout=20, what="outputs on disk")
        assert not (local / "sub").exists()
    finally:
        await api.close()
        await a.close()
        await b.close()


async def test_a_change_made_on_the_upstream_reaches_an_open_document_through_its_events(
    upstream: UpstreamServer, make_server: Any, tmp_path: Path
) -> None:
    write_notebook(
        upstream.root / "shared.ipynb", notebook(code_cell("ours", "c1"), code_cell("theirs", "c2"))
    )
    server = make_server(supernode_args(upstream, SLOW_POLL), root=tmp_path / "local")
    client = await YClient.connect(server.url, server.token, "shared.ipynb")
    try:
        type_into(client, 0, " edited here")
        await until(
            lambda: sources(read_notebook(upstream.root / "shared.ipynb"))[0] == "ours edited here",
            timeout=20,
            what="the save on the upstream",
        )
        # A user of the upstream saves the notebook there, through its own contents API.
        model = notebook(code_cell("ours edited here", "c1"), code_cell("theirs, changed", "c2"))
        async with httpx.AsyncClient(headers=upstream.headers) as http:
            response = await http.put(
                f"{upstream.url}/api/contents/shared.ipynb",
                json={"type": "notebook", "format": "json", "content": model},
            )
            response.raise_for_status()
            await until(
                lambda: cell_source(client, 1) == "theirs, changed",
                timeout=10,
                what="the upstream's change in the open document (polling is at 60 s)",
            )
            # And renamed there: the document follows its file.
            response = await http.patch(
                f"{upstream.url}/api/contents/shared.ipynb", json={"path": "moved.ipynb"}
            )
            response.raise_for_status()
        type_into(client, 0, ", after the move")
        await until(
            lambda: (
                (upstream.root / "moved.ipynb").exists()
                and sources(read_notebook(upstream.root / "moved.ipynb"))[0].endswith("the move")
            ),
            timeout=20,
            what="the save under the new name",
        )
        assert not (upstream.root / "shared.ipynb").exists()
    finally:
        await client.close()


async def test_the_upstream_going_away_holds_saves_and_loses_nothing(
    upstream: UpstreamServer, make_server: Any, tmp_path: Path
) -> None:
    path = upstream.root / "away.ipynb"
    write_notebook(path, notebook(code_cell("one", "c1"), code_cell("two", "c2")))
    server = make_server(supernode_args(upstream), root=tmp_path / "local")
    a = await YClient.connect(server.url, server.token, "away.ipynb")
    b = await YClient.connect(server.url, server.token, "away.ipynb")
    try:
        assert (await upstream_status(server))["reachable"] is True
        upstream.stop()
        await eventually(lambda: status_is(server, reachable=False), timeout=15)
        status = await upstream_status(server)
        assert upstream.url in status["error"] and status["url"] == upstream.url
        # Editing goes on between the clients; the save waits.
        type_into(a, 0, " while away")
        await until(lambda: cell_source(b, 0) == "one while away", what="the edit at b")
        # Meanwhile the file changes on the upstream's own disk.
        write_notebook(
            path, notebook(code_cell("one", "c1"), code_cell("two, changed there", "c2"))
        )
        upstream.start()
        want = ["one while away", "two, changed there"]
        await until(
            lambda: [cell_source(b, 0), cell_source(b, 1)] == want,
            timeout=30,
            what="the change made on the upstream merged in",
        )
        await until(
            lambda: sources(read_notebook(path)) == want, timeout=30, what="the held save written"
        )
        status = await upstream_status(server)
        assert status["reachable"] is True and status["error"] is None
    finally:
        await a.close()
        await b.close()
    server.restart()  # the store kept everything
    c = await YClient.connect(server.url, server.token, "away.ipynb")
    try:
        assert [cell_source(c, 0), cell_source(c, 1)] == want
    finally:
        await c.close()


async def test_a_document_closed_while_the_upstream_is_away_is_saved_when_it_is_back(
    upstream: UpstreamServer, make_server: Any, tmp_path: Path
) -> None:
    """The supernode is stopped too: the held edit waits in the store, across restarts."""
    path = upstream.root / "later.ipynb"
    write_notebook(path, notebook(code_cell("start", "c1")))
    server = make_server(supernode_args(upstream), root=tmp_path / "local")
    client = await YClient.connect(server.url, server.token, "later.ipynb")
    witness = await YClient.connect(server.url, server.token, "later.ipynb")
    upstream.stop()
    type_into(client, 0, " kept")
    await until(lambda: cell_source(witness, 0) == "start kept", what="the edit, taken")
    await client.close()
    await witness.close()
    server.stop()
    upstream.start()
    server.start()
    reader = await YClient.connect(server.url, server.token, "later.ipynb")
    try:
        assert cell_source(reader, 0) == "start kept"
        await until(
            lambda: sources(read_notebook(path)) == ["start kept"],
            timeout=20,
            what="the held edit saved on the upstream",
        )
    finally:
        await reader.close()


async def test_contents_and_kernelspecs_come_from_the_upstream_and_errors_pass_through(
    upstream: UpstreamServer, make_server: Any, tmp_path: Path
) -> None:
    (upstream.root / "data.txt").write_text("upstream text")
    server = make_server(supernode_args(upstream), root=tmp_path / "local")
    headers = {"Authorization": f"token {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        listing = (await http.get("/api/contents")).json()
        assert [item["name"] for item in listing["content"]] == ["data.txt"]
        text = (await http.get("/api/contents/data.txt")).json()
        assert text["content"] == "upstream text"
        assert (await http.get("/api/contents/nothing.txt")).status_code == 404
        specs = (await http.get("/api/kernelspecs")).json()
        assert "python3" in specs["kernelspecs"]
        upstream.stop()
        away = await http.get("/api/contents/data.txt")
        assert away.status_code == 503, away.text
        assert upstream.url in json.dumps(away.json())
        kernel = await http.post("/api/kernels", json={"name": "python3"})
        assert kernel.status_code == 503, kernel.text
        message = kernel.json()["message"]
        assert message.startswith(f"the upstream Jupyter server at {upstream.url} cannot be")
        model = {"path": "new.ipynb", "type": "notebook", "kernel": {"name": "python3"}}
        session = await http.post("/api/sessions", json=model)
        assert session.status_code == 503, session.text  # not jupyter_server's wrapping 500
        assert f"the upstream {upstream.url} cannot be reached" in session.json()["message"]


def test_serve_refuses_upstream_with_a_gateway() -> None:
    from jupyter_datastore.cli import serve_arguments

    with pytest.raises(SystemExit):
        serve_arguments(["--upstream=http://a", "--gateway-url=http://b"])
    args = serve_arguments(["--upstream=http://up:8888/", "--upstream-token=t"])
    assert "--GatewayClient.url=http://up:8888/" in args
    assert any(a.startswith("--ServerApp.contents_manager_class=") for a in args)


@pytest.mark.browser
def test_two_jupyterlab_pages_co_edit_an_upstream_notebook_and_run_a_cell(
    upstream: UpstreamServer, make_server: Any, tmp_path: Path
) -> None:
    """JupyterLab served by the supernode: two users on a notebook of the upstream, one runs
    a cell on the upstream's kernel (JupyterLab's own kernel connection, relayed)."""
    from playwright.sync_api import expect
    from test_jupyterlab import (
        LOAD_TIMEOUT,
        SYNC_TIMEOUT,
        Tab,
        browser_tabs,
        lab_server,
        settle,
        wait_until,
    )

    path = upstream.root / "lab.ipynb"
    write_notebook(path, notebook(code_cell("print('hi from', 6 * 7)", "c1")))
    local = tmp_path / "local"
    local.mkdir()
    server = lab_server(make_server, tmp_path, local, *supernode_args(upstream))
    # The pages open notebooks with no kernel (PAGE_CONFIG): the session JupyterLab joins.
    model = {"path": "lab.ipynb", "type": "notebook", "name": "lab.ipynb"}
    server.request("POST", "/api/sessions", {**model, "kernel": {"name": "python3"}})
    url = f"{server.url}/lab/tree/lab.ipynb?token={server.token}"
    with browser_tabs(server) as (browser, tabs):
        tabs += [Tab(browser, "one"), Tab(browser, "two")]
        one, two = tabs
        for tab in tabs:
            tab.page.goto(url, wait_until="commit")
        for tab in tabs:
            expect(tab.editor).to_have_text("print('hi from', 6 * 7)", timeout=LOAD_TIMEOUT)
        one.editor.click()
        one.page.keyboard.press("End")
        one.page.keyboard.type("  # one")
        expect(two.editor).to_have_text("print('hi from', 6 * 7)  # one", timeout=SYNC_TIMEOUT)
        expect(
            one.page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
        ).to_have_count(1, timeout=LOAD_TIMEOUT)
        one.editor.click()
        one.page.keyboard.press("Shift+Enter")
        for tab in tabs:
            output = tab.page.locator(".jp-Notebook .jp-Cell .jp-OutputArea-output").first
            expect(output).to_have_text("hi from 42", timeout=SYNC_TIMEOUT * 3)
        # JupyterLab's kernel is the upstream's.
        ours = [k["id"] for k in server.get("/api/kernels")]
        assert ours == [
            k["id"]
            for k in httpx.get(f"{upstream.url}/api/kernels", headers=upstream.headers).json()
        ]

        def saved() -> bool:
            cell = read_notebook(path)["cells"][0]
            return "".join(cell["source"]).endswith("# one") and bool(cell.get("outputs"))

        wait_until(saved, 20, "the autosave of the edit and the outputs on the upstream's disk")
        assert not one.errors and not two.errors, (one.errors, two.errors)
        settle(tabs)


async def test_roles_decide_over_the_upstreams_files_and_its_place_is_the_owners(
    upstream: UpstreamServer, make_server: Any, tmp_path: Path
) -> None:
    """The gate decides every request on the upstream's paths as on local ones; a user with
    no role sees none of its files, and only a user with a role on the root learns where the
    files come from (`status.upstream`)."""
    from roles import ROLE_ARGS, http, share
    from two_users import two_users_env

    write_notebook(upstream.root / "shared" / "nb.ipynb", notebook(code_cell("x", "c1")))
    write_notebook(upstream.root / "private.ipynb", notebook(code_cell("secret", "c1")))
    server = make_server(
        [*supernode_args(upstream), *ROLE_ARGS], root=tmp_path / "local", env=two_users_env()
    )
    await share(server, "shared", {"users": {"bob": "viewer"}})
    async with http(server, "alice") as alice, http(server, "bob") as bob:
        async with http(server, "mallory") as mallory:
            assert (await mallory.get("/api/contents")).status_code == 403
            assert (await mallory.get("/api/contents/private.ipynb")).status_code in (403, 404)
            state = (await mallory.get("/api/datastore/state")).json()
            assert "upstream" not in state["status"]
        assert (await bob.get("/api/contents")).status_code == 403
        listing = (await bob.get("/api/contents/shared")).json()["content"]
        assert [item["name"] for item in listing] == ["nb.ipynb"]
        assert (await bob.get("/api/contents/shared/nb.ipynb")).json()["writable"] is False
        root = (await alice.get("/api/contents")).json()["content"]
        assert sorted(item["name"] for item in root) == ["private.ipynb", "shared"]
        model = {"type": "file", "format": "text", "content": "no"}
        refused = await bob.put("/api/contents/shared/new.txt", json=model)
        assert refused.status_code == 403
        assert not (upstream.root / "shared" / "new.txt").exists()
        assert "upstream" not in (await bob.get("/api/datastore/state")).json()["status"]
        owner_view = (await alice.get("/api/datastore/state")).json()["status"]
        assert owner_view["upstream"]["url"] == upstream.url


async def test_an_upstream_that_refuses_its_event_stream_is_followed_by_polling(
    make_server: Any, tmp_path: Path
) -> None:
    from two_users import two_users_env

    upstream = UpstreamServer(
        tmp_path / "upstream",
        ["--ServerApp.authorizer_class=deny_events.DenyEvents"],
        two_users_env(),
    ).start()
    try:
        path = upstream.root / "polled.ipynb"
        write_notebook(path, notebook(code_cell("start", "c1")))
        server = make_server(supernode_args(upstream), root=tmp_path / "local")
        client = await YClient.connect(server.url, server.token, "polled.ipynb")
        try:
            await eventually(lambda: status_is(server, events="polling"), timeout=15)
            write_notebook(path, notebook(code_cell("changed there", "c1")))  # on its disk
            await until(lambda: cell_source(client, 0) == "changed there", what="the change")
            upstream.stop()
            await eventually(lambda: status_is(server, reachable=False), timeout=15)
            type_into(client, 0, ", and here")
            upstream.start()
            await eventually(lambda: status_is(server, reachable=True), timeout=20)
            await until(
                lambda: sources(read_notebook(path)) == ["changed there, and here"],
                timeout=20,
                what="the held save, once the upstream answers again",
            )
        finally:
            await client.close()
    finally:
        upstream.stop()


async def test_a_kernel_restarted_on_the_upstream_ends_the_run_under_way(
    upstream: UpstreamServer, make_server: Any, tmp_path: Path
) -> None:
    """A restart made there by its own users says nothing on the kernel's WebSocket: the
    upstream's kernel_actions event tells the supernode, and the run ends."""
    slow = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    write_notebook(upstream.root / "slow.ipynb", notebook(code_cell(slow, "c1")))
    server = make_server(supernode_args(upstream), root=tmp_path / "local")
    api = ExecApi(server.url, server.token)
    try:
        (record,) = await api.run("slow.ipynb", "c1")
        await api.wait(record["id"], {"running"}, timeout=90)
        running = await api.get(record["id"])
        async with httpx.AsyncClient(headers=upstream.headers) as http:
            restart = f"{upstream.url}/api/kernels/{running['kernel_id']}/restart"
            (await http.post(restart)).raise_for_status()
        done = await api.wait(record["id"], timeout=20)
        assert done["status"] == "error", done
        assert "restarted" in done["reason"], done
    finally:
        await api.close()
