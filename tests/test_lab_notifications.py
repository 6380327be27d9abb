"""Our JupyterLab extension in stock JupyterLab (headless Chromium): a user's server
notifications as JupyterLab notifications, live, with two users and two windows of one.

alice has two windows, bob one. A notification for alice toasts in both of hers and never in
bob's; its action opens the notebook at the cell it names; dismissing it in one window marks
it read on the server and the other window drops it; a reload shows no read one again, and
one sent while her page was closed shows once; the feed resumes after the server restarts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from notebooks import code_cell, notebook, write_notebook
from playwright.sync_api import Locator, WebSocket, expect
from test_jupyterlab import LOAD_TIMEOUT, PAGE_CONFIG, Tab, browser_tabs, settle, wait_until
from two_users import ARGS as TWO_USERS
from two_users import two_users_env

FEED = "/api/events/subscribe/notification"
TOAST = ".Toastify__toast"
SHOWN_WITHIN = 10_000  # ms: a notification reaching a page's toast


class Window(Tab):
    """A Tab that also keeps the frames its notification feed received."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.feed: list[dict[str, Any]] = []

    def _socket(self, socket: WebSocket) -> None:
        super()._socket(socket)
        if FEED in socket.url:
            socket.on("framereceived", lambda payload: self.feed.append(json.loads(payload)))

    def open(self, url: str) -> None:
        """Load JupyterLab and wait until its feed has resumed (it follows the server)."""
        self.feed.clear()
        self.page.goto(url, wait_until="commit")
        self.wait_for_resume(LOAD_TIMEOUT / 1000)

    def wait_for_resume(self, timeout: float) -> None:
        self.wait(
            lambda: any(f.get("__control__") == "resumed" for f in self.feed),
            timeout,
            f"{self.name}'s notification feed to resume",
        )

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """`wait_until`, letting Playwright deliver the page's events while it waits."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            self.page.wait_for_timeout(50)

    def toast(self, message: str) -> Locator:
        return self.page.locator(TOAST, has_text=message)

    def received(self, message: str) -> list[dict[str, Any]]:
        """The feed's notification frames with this message."""
        return [
            f
            for f in self.feed
            if f.get("type") == "notification" and f["notification"]["message"] == message
        ]


def notify(server: Any, sender: str, recipients: list[str], message: str, **extra: Any) -> None:
    body = {"recipients": recipients, "message": message, **extra}
    response = httpx.post(
        f"{server.url}/api/notifications",
        json=body,
        headers={"Authorization": f"token {sender}-token"},
        timeout=30,
    )
    assert response.status_code == 201, response.text


def rows(server: Any, user: str) -> dict[str, dict[str, Any]]:
    """The user's notifications on the server, by message."""
    response = httpx.get(
        f"{server.url}/api/notifications",
        headers={"Authorization": f"token {user}-token"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {row["message"]: row for row in response.json()["notifications"]}


def start_lab(make_server: Any, tmp_path: Path, root: Path) -> Any:
    settings = tmp_path / "lab-settings"
    settings.mkdir()
    (settings / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    args = [f"--LabApp.app_settings_dir={settings}", *TWO_USERS]
    return make_server(args, root=root, env=two_users_env())


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_alices_notifications_toast_in_her_windows_only_and_read_in_one_is_read_in_all(
    make_server, tmp_path
) -> None:
    root = tmp_path / "root"
    cells = [code_cell(f"step_{n} = {n}", f"c{n}") for n in range(1, 4)]
    write_notebook(root / "report.ipynb", {**notebook(*cells), "metadata": {}})
    server = start_lab(make_server, tmp_path, root)
    lab = f"{server.url}/lab"

    with browser_tabs(server) as (browser, tabs):
        tabs += [Window(browser, "alice-1"), Window(browser, "alice-2"), Window(browser, "bob")]
        alice_1, alice_2, bob = tabs
        for window in tabs:
            user = window.name.split("-")[0]
            window.open(f"{lab}?token={user}-token")

        # 1. A notification for alice: a toast in both of her windows, of its type.
        notify(
            server,
            "bob",
            ["alice"],
            "Report ready: see step 3",
            type="warning",
            link="report.ipynb",
            data={"cell_id": "c3"},
        )
        for window in (alice_1, alice_2):
            toast = window.toast("Report ready: see step 3")
            expect(toast).to_be_visible(timeout=SHOWN_WITHIN)
            expect(toast).to_have_class(re.compile(r"jp-Notification-Toast-warning"))
        # Not in bob's: his feed never got it, his page shows no such toast.
        notify(server, "alice", ["bob"], "For bob only")
        expect(bob.toast("For bob only")).to_be_visible(timeout=SHOWN_WITHIN)
        expect(bob.toast("Report ready")).to_have_count(0)
        assert not bob.received("Report ready: see step 3")
        expect(alice_1.toast("For bob only")).to_have_count(0)

        # 2. Its action opens the notebook at the cell it names, and marks it read: the
        # other window drops it.
        alice_1.toast("Report ready").get_by_role("button", name="Open").click()
        active = alice_1.page.locator(".jp-Notebook .jp-Cell.jp-mod-active .cm-content")
        expect(active).to_have_text("step_3 = 3", timeout=LOAD_TIMEOUT)
        expect(alice_1.page.locator(".lm-TabBar-tab", has_text="report.ipynb")).to_be_visible()
        wait_until(
            lambda: rows(server, "alice")["Report ready: see step 3"]["read"],
            timeout=10,
            what="the notification marked read on the server",
        )
        expect(alice_2.toast("Report ready")).to_have_count(0, timeout=SHOWN_WITHIN)
        expect(alice_1.toast("Report ready")).to_have_count(0)

        # 3. Dismissed in the notification center of one window: read, gone in the other.
        notify(server, "bob", ["alice"], "Second one", type="error")
        for window in (alice_1, alice_2):
            expect(window.toast("Second one")).to_be_visible(timeout=SHOWN_WITHIN)
            expect(window.toast("Second one")).to_have_class(
                re.compile(r"jp-Notification-Toast-error")
            )
        alice_2.page.locator(".jp-Notification-Status").click()
        item = alice_2.page.locator(".jp-Notification-List-Item", has_text="Second one")
        item.locator(".jp-Notification-Toast-Close").click()
        expect(item).to_have_count(0)
        wait_until(
            lambda: rows(server, "alice")["Second one"]["read"],
            timeout=10,
            what="the dismissed notification marked read on the server",
        )
        expect(alice_1.toast("Second one")).to_have_count(0, timeout=SHOWN_WITHIN)
        alice_1.page.locator(".jp-Notification-Status").click()
        expect(alice_1.page.locator(".jp-Notification-List-Item")).to_have_count(0)

        # 4. alice closes her second window; a notification comes while it is closed. When
        # it is back, that one shows, once, and the read ones do not.
        settle(tabs)
        alice_2.page.goto("about:blank")
        notify(server, "bob", ["alice"], "While you were away", type="info")
        expect(alice_1.toast("While you were away")).to_be_visible(timeout=SHOWN_WITHIN)
        alice_2.open(f"{lab}?token=alice-token")
        expect(alice_2.toast("While you were away")).to_have_count(1, timeout=SHOWN_WITHIN)
        alice_2.page.locator(".jp-Notification-Status").click()
        listed = alice_2.page.locator(".jp-Notification-List-Item")
        expect(listed).to_have_count(1)
        expect(listed).to_have_text(re.compile("While you were away"))
        # Its resume sent nothing already listed (the one it missed came with the list).
        assert not alice_2.received("While you were away"), alice_2.feed

        # 5. The server goes away and comes back: the feed reconnects and resumes, so a new
        # one shows once and nothing old comes back.
        settle(tabs)
        server.stop()
        alice_1.feed.clear()
        server.start()
        alice_1.wait_for_resume(60)
        notify(server, "bob", ["alice"], "After the restart", type="success")
        expect(alice_1.toast("After the restart")).to_have_count(1, timeout=SHOWN_WITHIN)
        assert len(alice_1.received("After the restart")) == 1
        expect(alice_1.toast("Report ready")).to_have_count(0)
        expect(alice_1.toast("Second one")).to_have_count(0)
        for window in tabs:
            assert not window.errors, (window.name, window.errors)
        settle(tabs)


def test_the_extension_is_installed_enabled_and_served_to_jupyterlab(make_server, tmp_path) -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "jupyterlab.labextensions", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", listing.stdout + listing.stderr)
    assert re.search(r"jupyter-datastore v\S+ enabled OK \(python, jupyter-datastore\)", text), text
    # The page JupyterLab gets from our server loads it.
    server = make_server([], root=tmp_path)
    page = httpx.get(f"{server.url}/lab?token={server.token}", timeout=30)
    assert page.status_code == 200
    found = re.search(
        r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page.text, re.S
    )
    assert found, page.text[:2000]
    config = json.loads(found.group(1))
    [ours] = [e for e in config["federated_extensions"] if e["name"] == "jupyter-datastore"]
    assert ours["load"].startswith("static/remoteEntry.")
    assert "jupyter-datastore" not in config.get("disabledExtensions", [])
    loaded = httpx.get(
        f"{server.url}/lab/extensions/jupyter-datastore/{ours['load']}?token={server.token}",
        timeout=30,
    )
    assert loaded.status_code == 200 and '"jupyter-datastore"' in loaded.text
