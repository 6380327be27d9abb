"""Stock JupyterLab (jupyter-docprovider, jupyter-collaboration-ui) in headless Chromium.

Two browser contexts are two users: each opens the same notebook from our server, sees the
other's typing, and Ctrl-S writes the notebook file. With server-side execution on, a cell
run from JupyterLab runs on our server and its outputs outlive the tab.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from notebooks import code_cell, notebook, read_notebook, sources, write_notebook
from playwright.sync_api import (
    Browser,
    Error,
    Locator,
    Request,
    WebSocket,
    expect,
    sync_playwright,
)
from two_users import ARGS as TWO_USERS
from two_users import two_users_env

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

# JupyterLab's page config, read from its app settings folder: nothing on first run that
# asks for a click, and nothing that reaches out of the machine.
PAGE_CONFIG = {
    # News, the update check and the "get notified about official Jupyter news?" toast.
    "disabledExtensions": ["@jupyterlab/apputils-extension:announcements"],
    # Notebooks open with no kernel, and so with no kernel selection dialog.
    "notebookStartsKernel": "false",
    # No "a build is needed" check against the server at start.
    "buildCheck": False,
    "buildAvailable": False,
}

EMIT_FROM_PAGE = """async () => {
  const xsrf = decodeURIComponent((document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || "");
  const response = await fetch("/api/events", {
    method: "POST",
    headers: {"X-XSRFToken": xsrf, "Content-Type": "application/json"},
    body: JSON.stringify({
      schema_id: "https://example.org/lab/opened/v1",
      version: 1,
      data: {path: "run.ipynb"},
    }),
  });
  return response.status;
}"""

LAB_SCHEMA = {
    "$id": "https://example.org/lab/opened/v1",
    "version": "1",
    "type": "object",
    "properties": {"path": {"type": "string"}},
}

_IPYWIDGETS_NO_KERNEL = "Cannot read properties of null (reading 'kernel')"
"""What jupyterlab_widgets 3.0 raises, unhandled, in a notebook opened with no kernel: it
asks the session context for its kernel's id once ready, and a notebook with no kernel has
no session. Any notebook page raises it where ipywidgets is installed (the test extra has
it); it changes nothing in the page."""

LOAD_TIMEOUT = 60_000  # ms: JupyterLab's first load on a slow machine
SYNC_TIMEOUT = 10_000  # ms: an edit reaching the other page
EDITOR = ".jp-Notebook .jp-Cell .jp-InputArea-editor .cm-content"
ROOM_PATH = "/api/collaboration/room/"
GLOBAL = "JupyterLab:globalAwareness"
PERMISSION = "https://events.jupyter.org/jupyter_datastore/permission/v1"


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed (expected on PATH, e.g. Debian's /usr/bin/chromium): "
            "the browser tests need it and never download a browser",
            pytrace=False,
        )
    return path


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Tab:
    """One user: a browser context with one JupyterLab page, and what the page did."""

    def __init__(self, browser: Browser, name: str) -> None:
        self.name = name
        self.page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        self.console: list[str] = []
        self.errors: list[str] = []
        self.socket_urls: list[str] = []
        self.requests: set[Request] = set()
        self.refused: list[str] = []
        """The URLs the server answered 403 (forbidden)."""
        self.last_activity = time.monotonic()
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("response", lambda r: r.status == 403 and self.refused.append(r.url))
        self.page.on("pageerror", self._page_error)
        self.page.on("websocket", self._socket)
        self.page.on("request", self._request)
        self.page.on("requestfinished", self._request_done)
        self.page.on("requestfailed", self._request_done)

    def _page_error(self, error: Error) -> None:
        if _IPYWIDGETS_NO_KERNEL in str(error) and "jupyterlab-manager" in (error.stack or ""):
            return  # ipywidgets' bug, not ours (see _IPYWIDGETS_NO_KERNEL)
        self.errors.append(str(error))

    def _socket(self, socket: WebSocket) -> None:
        self.socket_urls.append(socket.url)
        socket.on("framereceived", lambda _: self._touch())

    def _touch(self) -> None:
        self.last_activity = time.monotonic()

    def _request(self, request: Request) -> None:
        self.requests.add(request)
        self._touch()

    def _request_done(self, request: Request) -> None:
        self.requests.discard(request)
        self._touch()

    def rooms(self) -> set[str]:
        """Names of the collaboration rooms the page connected to."""
        urls = [url for url in self.socket_urls if ROOM_PATH in url]
        return {url.split(ROOM_PATH, 1)[1].split("?", 1)[0] for url in urls}

    @property
    def editor(self) -> Locator:
        return self.page.locator(EDITOR).first

    @property
    def cells(self) -> Locator:
        return self.page.locator(".jp-Notebook .jp-Cell")

    @property
    def read_only_mark(self) -> Locator:
        """jupyter-datastore's mark on a document the user may only view."""
        return self.page.locator(".jp-Datastore-readOnly")

    @property
    def dirty_tab(self) -> Locator:
        """The notebook's tab while it has unsaved changes."""
        return self.page.locator(".lm-TabBar-tab.jp-mod-dirty")

    def type_at_end(self, text: str) -> None:
        self.editor.click()
        self.page.keyboard.press("Control+End")
        self.page.keyboard.type(text)

    def report(self) -> str:
        lines = [f"--- page {self.name}: {self.page.url}"]
        lines += [f"page error: {error}" for error in self.errors]
        lines += self.console[-40:]
        return "\n".join(lines)


def settle(tabs: list[Tab], quiet: float = 0.5, timeout: float = 15) -> None:
    """Wait until no page has had a request or a WebSocket message for `quiet` seconds.

    A test's pages leave once the requests after its last step are over, so that what the
    server logs at the end is about the test, not about pages torn down mid-request.
    (jupyter_server does not await its writes to a page; one to a page that left is logged
    at debug level, see handlers/left_mid_write.py.)
    """
    deadline = time.monotonic() + timeout
    while True:
        tabs[0].page.wait_for_timeout(50)  # Playwright delivers page events while it waits
        now = time.monotonic()
        if all(not tab.requests and now - tab.last_activity >= quiet for tab in tabs):
            return
        if now > deadline:
            busy = {tab.name: sorted(request.url for request in tab.requests) for tab in tabs}
            raise AssertionError(f"the pages were still busy after {timeout}s: {busy}")


def lab_server(make_server: Any, tmp_path: Path, root: Path, *args: str) -> Any:
    settings = tmp_path / "lab-settings"
    settings.mkdir()
    (settings / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    return make_server([f"--LabApp.app_settings_dir={settings}", *args], root=root)


@contextmanager
def browser_tabs(server: Any) -> Iterator[tuple[Browser, list[Tab]]]:
    """A headless Chromium; the tabs put in the list are closed at the end, and a failure
    reports what each page and the server logged."""
    executable = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        tabs: list[Tab] = []
        try:
            yield browser, tabs
        except Exception as exc:
            details = "\n".join(tab.report() for tab in tabs)
            raise AssertionError(f"{exc}\n{details}\n--- server log\n{server.log()}") from exc
        finally:
            for tab in tabs:
                tab.page.context.close()
            browser.close()


def test_two_jupyterlab_users_edit_one_notebook_and_ctrl_s_saves(make_server, tmp_path) -> None:
    root = tmp_path / "root"
    path = root / "shared.ipynb"
    # No kernelspec in the metadata: nothing for JupyterLab to start or to ask about.
    write_notebook(path, {**notebook(code_cell("x = 1", "c1")), "metadata": {}})
    # Only Ctrl-S writes the file.
    server = lab_server(make_server, tmp_path, root, "--DatastoreApp.autosave=False")
    url = f"{server.url}/lab/tree/shared.ipynb?token={server.token}"

    with browser_tabs(server) as (browser, tabs):
        tabs += [Tab(browser, "one"), Tab(browser, "two")]
        one, two = tabs
        for tab in tabs:  # both load at once
            tab.page.goto(url, wait_until="commit")
        for tab in tabs:
            expect(tab.editor).to_have_text("x = 1", timeout=LOAD_TIMEOUT)

        # Both pages are peers of the notebook's room on our server.
        notebook_rooms = {r for r in one.rooms() | two.rooms() if r.startswith("json:")}
        assert len(notebook_rooms) == 1, (one.socket_urls, two.socket_urls)
        room = notebook_rooms.pop()
        assert room.startswith("json:notebook:")

        def peers() -> int:
            status = server.get("/api/datastore/status")
            return sum(r["peers"] for r in status["rooms"] if r["name"] == room)

        wait_until(lambda: peers() == 2, timeout=10, what=f"2 peers in {room}")
        assert server.get("/api/kernels") == []  # no kernel was started

        # Presence across documents: both pages in the global awareness room, each with
        # one socket (a refused socket would reconnect many times a second).
        def present() -> int:
            status = server.get("/api/datastore/status")
            return sum(r["peers"] for r in status["rooms"] if r["name"] == GLOBAL)

        wait_until(lambda: present() == 2, timeout=10, what="2 peers in the presence room")
        for tab in tabs:
            assert sum(GLOBAL in url for url in tab.socket_urls) == 1, tab.socket_urls

        one.type_at_end(" # from one")
        expect(two.editor).to_have_text("x = 1 # from one", timeout=SYNC_TIMEOUT)
        two.type_at_end(" and two")
        expect(one.editor).to_have_text("x = 1 # from one and two", timeout=SYNC_TIMEOUT)

        # Both pages show the notebook as modified (the server's dirty state); the file
        # is as it was until Ctrl-S, then both pages show it as saved.
        for tab in tabs:
            expect(tab.dirty_tab).to_have_count(1, timeout=SYNC_TIMEOUT)
        assert sources(read_notebook(path)) == ["x = 1"]
        one.page.keyboard.press("Control+s")
        wait_until(
            lambda: sources(read_notebook(path)) == ["x = 1 # from one and two"],
            timeout=10,
            what="Ctrl-S to write the notebook",
        )
        for tab in tabs:
            expect(tab.dirty_tab).to_have_count(0, timeout=SYNC_TIMEOUT)
        assert [cell["id"] for cell in read_notebook(path)["cells"]] == ["c1"]
        assert not one.errors and not two.errors, (one.errors, two.errors)

        # The pages leave: the room loses its peers.
        settle(tabs)
        for tab in tabs:
            tab.page.goto("about:blank")
        wait_until(lambda: peers() == 0, timeout=10, what=f"the pages to leave {room}")


def test_jupyterlab_runs_cells_on_the_server_and_outputs_survive_the_tab(
    make_server, tmp_path
) -> None:
    """With server-side execution, JupyterLab asks our server to run the cell; the server
    writes the outputs into the document, so closing the tab mid-run loses nothing."""
    root = tmp_path / "root"
    code = "import time\nprint('hello from the server', flush=True)\ntime.sleep(3)\nprint('done')"
    write_notebook(root / "run.ipynb", notebook(code_cell(code, "c1")))
    server = lab_server(make_server, tmp_path, root, "--DatastoreApp.server_side_execution=True")
    # The notebook's kernel session exists before the page opens; JupyterLab joins it.
    session = server.request(
        "POST",
        "/api/sessions",
        {
            "path": "run.ipynb",
            "type": "notebook",
            "name": "run.ipynb",
            "kernel": {"name": "python3"},
        },
    )
    url = f"{server.url}/lab/tree/run.ipynb?token={server.token}"
    outputs = ".jp-Notebook .jp-Cell .jp-OutputArea-output"

    with browser_tabs(server) as (browser, tabs):
        tab = Tab(browser, "runner")
        tabs.append(tab)
        tab.page.goto(url, wait_until="commit")
        expect(tab.editor).to_contain_text("hello from the server", timeout=LOAD_TIMEOUT)
        # The page joined the notebook's kernel session.
        expect(tab.page.locator(".jp-Toolbar-kernelName").first).to_contain_text(
            "Python 3", timeout=LOAD_TIMEOUT
        )
        tab.editor.click()
        tab.page.keyboard.press("Shift+Enter")
        expect(tab.page.locator(outputs).first).to_contain_text(
            "hello from the server", timeout=SYNC_TIMEOUT * 3
        )
        # An event posted from the page as JupyterLab's EventManager does: it needs a 204
        # (under an extension's schema: the server's own cannot be posted).
        server.request("POST", "/api/events/schemas", LAB_SCHEMA)
        assert tab.page.evaluate(EMIT_FROM_PAGE) == 204
        records = server.get("/api/datastore/executions?path=run.ipynb")["executions"]
        assert len(records) == 1 and records[0]["kernel_id"] == session["kernel"]["id"]
        # The tab goes away mid-run; the server finishes the cell on its own.
        settle(tabs)
        tab.page.context.close()
        tabs.clear()
        wait_until(
            lambda: server.get(f"/api/datastore/executions/{records[0]['id']}")["status"] == "ok",
            timeout=30,
            what="the run to finish with no tab open",
        )
        again = Tab(browser, "again")
        tabs.append(again)
        again.page.goto(url, wait_until="commit")
        expect(again.page.locator(outputs).first).to_have_text(
            "hello from the server\ndone\n", timeout=LOAD_TIMEOUT
        )
        assert not again.errors, again.errors
        settle(tabs)


def test_a_viewer_in_jupyterlab_reads_live_in_a_read_only_notebook(make_server, tmp_path) -> None:
    """A viewer's notebook opens read-only with a mark and follows the owner's edits live;
    a role changed while it is open switches it at once; a change the server refused anyway
    (a cell inserted) is dropped by loading the notebook again, with a notification."""
    root = tmp_path / "root"
    path = root / "shared.ipynb"
    write_notebook(path, {**notebook(code_cell("x = 1", "c1")), "metadata": {}})
    (root / "notes.txt").write_text("some notes")
    (root / "private").mkdir()
    write_notebook(root / "private/secret.ipynb", notebook(code_cell("s = 1", "s1")))
    roles = ["--DatastoreApp.default_role=viewer", "--DatastoreApp.owners=alice"]
    settings = tmp_path / "lab-settings"
    settings.mkdir()
    (settings / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    args = [f"--LabApp.app_settings_dir={settings}", *TWO_USERS, *roles]
    server = make_server(args, root=root, env=two_users_env())
    lab = f"{server.url}/lab/tree/shared.ipynb"
    set_rule("private", {"users": {"alice": "owner"}, "default": "none"}, server)

    with browser_tabs(server) as (browser, tabs):
        tabs += [Tab(browser, "alice"), Tab(browser, "carol")]
        alice, carol = tabs
        alice.page.goto(f"{lab}?token=alice-token", wait_until="commit")
        carol.page.goto(f"{lab}?token=carol-token", wait_until="commit")
        for tab in tabs:
            expect(tab.editor).to_have_text("x = 1", timeout=LOAD_TIMEOUT)
        # The file browser shows carol what she may open, not the private folder.
        listing = ".jp-FileBrowser .jp-DirListing-itemText"
        expect(carol.page.locator(listing, has_text="shared.ipynb")).to_be_visible()
        expect(alice.page.locator(listing, has_text="private")).to_be_visible()
        expect(carol.page.locator(listing, has_text="private")).to_have_count(0)

        # carol's notebook is read-only, marked so (once: JupyterLab's own mark gives way).
        expect(carol.read_only_mark).to_be_visible(timeout=SYNC_TIMEOUT)
        expect(carol.page.locator(".jp-ToolbarLabelComponent")).to_have_count(0)
        expect(carol.editor).to_have_attribute("aria-readonly", "true")
        expect(alice.read_only_mark).to_be_hidden()
        alice.type_at_end(" # alice")
        expect(carol.editor).to_have_text("x = 1 # alice", timeout=SYNC_TIMEOUT)
        carol.type_at_end(" # carol")  # nothing is typed
        expect(carol.editor).to_have_text("x = 1 # alice")

        # A change the editor cannot stop: a cell inserted. The server refuses it, and
        # carol's page loads the notebook again instead of keeping a copy of its own.
        carol.page.keyboard.press("Escape")
        carol.page.keyboard.press("b")
        notice = carol.page.locator(".jp-toast-message", has_text="was not taken")
        expect(notice).to_be_visible(timeout=SYNC_TIMEOUT)
        expect(carol.cells).to_have_count(1, timeout=SYNC_TIMEOUT)
        expect(carol.editor).to_have_text("x = 1 # alice", timeout=LOAD_TIMEOUT)
        expect(carol.read_only_mark).to_be_visible()
        wait_until(
            lambda: sources(read_notebook(path)) == ["x = 1 # alice"],
            timeout=15,
            what="alice's edit autosaved, and no cell of carol's",
        )
        expect(alice.cells).to_have_count(1)

        # alice makes carol an editor: her window switches at once, from a fresh copy (hers
        # holds what the room refused, JupyterLab's own bookkeeping at least, on which her
        # edits would depend), and her typing counts.
        set_rule("shared.ipynb", {"users": {"carol": "editor"}}, server)
        promoted = carol.page.locator(".jp-toast-message", has_text="you may edit it now")
        expect(promoted).to_be_visible(timeout=SYNC_TIMEOUT)
        expect(carol.read_only_mark).to_be_hidden(timeout=SYNC_TIMEOUT)
        expect(carol.editor).to_have_text("x = 1 # alice", timeout=LOAD_TIMEOUT)
        expect(carol.editor).not_to_have_attribute("aria-readonly", "true")
        carol.type_at_end(" # carol")
        expect(alice.editor).to_have_text("x = 1 # alice # carol", timeout=SYNC_TIMEOUT)
        # ... and a viewer again: read-only again, without a reload.
        set_rule("shared.ipynb", None, server)
        expect(carol.read_only_mark).to_be_visible(timeout=SYNC_TIMEOUT)
        expect(carol.editor).to_have_attribute("aria-readonly", "true")
        wait_until(
            lambda: sources(read_notebook(path)) == ["x = 1 # alice # carol"],
            timeout=15,
            what="carol's edit as an editor autosaved",
        )
        audit = httpx.get(
            f"{server.url}/api/events",
            params={"schema_id": PERMISSION},
            headers={"Authorization": "token alice-token"},  # the audit trail is the owner's
            timeout=30,
        ).json()["events"]
        assert any(e["user"] == "carol" and e["operation"] == "edit" for e in audit)
        # A text file opens read-only too.
        carol.page.locator(listing, has_text="notes.txt").dblclick()
        text = carol.page.locator(".jp-FileEditor .cm-content")
        expect(text).to_have_text("some notes", timeout=LOAD_TIMEOUT)
        expect(text).to_have_attribute("aria-readonly", "true")
        file_mark = carol.page.locator(".jp-FileEditorPanel, .jp-Document", has=text)
        expect(file_mark.locator(".jp-Datastore-readOnly")).to_be_visible()
        # carol's page connected to the room three times (the two reloads), no more, and
        # raised no error.
        notebook_sockets = [u for u in carol.socket_urls if f"{ROOM_PATH}json:" in u]
        assert len(notebook_sockets) == 3, carol.socket_urls
        assert not carol.errors and not alice.errors, (carol.errors, alice.errors)
        # JupyterLab works for a viewer: nothing it needs (its page, settings, workspace,
        # kernel specs, contents, the room) was refused.
        settle(tabs)
        assert not carol.refused and not alice.refused, (carol.refused, alice.refused)


def set_rule(path: str, rule: dict[str, Any] | None, server: Any) -> None:
    """alice (an owner) sets the rule of `path`, or removes it (None)."""
    url = f"{server.url}/api/datastore/permissions/{path}"
    headers = {"Authorization": "token alice-token"}
    if rule is None:
        response = httpx.delete(url, headers=headers, timeout=30)
    else:
        response = httpx.put(url, json=rule, headers=headers, timeout=30)
    assert response.status_code == 200, response.text


def test_jupyterlab_time_slider_shows_the_past_and_restores_it(make_server, tmp_path) -> None:
    """JupyterLab's own time slider (jupyter-collaboration-ui) on our history and timeline
    endpoints: slide back, see the old version, restore it; the other user gets it too."""
    root = tmp_path / "root"
    path = root / "history.ipynb"
    write_notebook(path, {**notebook(code_cell("x = 1", "c1")), "metadata": {}})
    server = lab_server(make_server, tmp_path, root)
    url = f"{server.url}/lab/tree/history.ipynb?token={server.token}"

    with browser_tabs(server) as (browser, tabs):
        tabs += [Tab(browser, "one"), Tab(browser, "two")]
        one, two = tabs
        for tab in tabs:
            tab.page.goto(url, wait_until="commit")
        for tab in tabs:
            expect(tab.editor).to_have_text("x = 1", timeout=LOAD_TIMEOUT)
        one.type_at_end(" + 2")
        expect(two.editor).to_have_text("x = 1 + 2", timeout=SYNC_TIMEOUT)
        wait_until(lambda: sources(read_notebook(path)) == ["x = 1 + 2"], 10, "the autosave")

        one.page.locator('[title="Document Timeline"]').click()
        slider = one.page.locator("input.jp-Slider")
        expect(slider).to_be_visible(timeout=SYNC_TIMEOUT)
        slider.fill("0")  # the first point: the notebook as loaded
        expect(one.editor).to_have_text("x = 1", timeout=SYNC_TIMEOUT)
        expect(two.editor).to_have_text("x = 1 + 2")  # the document itself is unchanged

        one.page.locator(".jp-restoreBtn").click()
        expect(two.editor).to_have_text("x = 1", timeout=SYNC_TIMEOUT)
        expect(one.editor).to_have_text("x = 1", timeout=SYNC_TIMEOUT)
        wait_until(lambda: sources(read_notebook(path)) == ["x = 1"], 10, "the restored save")
        one.type_at_end(" + 3")  # back on the document: editing goes on, once
        expect(two.editor).to_have_text("x = 1 + 3", timeout=SYNC_TIMEOUT)
        assert not one.errors and not two.errors, (one.errors, two.errors)
        settle(tabs)
