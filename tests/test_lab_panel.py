"""The Datastore panel in stock JupyterLab (headless Chromium): the server's kernels,
sessions, executions, open documents and events, live, with actions where the role allows.

alice is an owner, bob an editor, carol a viewer (on the root; `private/` is alice's
alone), mallory has no role. Kernels and executions are started over REST, as another client
would; the panel shows them as they change, and its actions (interrupt, restart, shut down a
kernel; answer a cell's input()) work; clicking an execution opens its notebook at its cell;
a second user opening a notebook shows in its row of open documents; the event tail shows
the last events and the new ones, and its filter narrows it; carol sees no action and
nothing of `private/`; mallory gets a short message; a state socket refused at its handshake
leaves the panel live through the events, and one closed with 4403 says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from notebooks import code_cell, notebook, write_notebook
from playwright.sync_api import Locator, expect
from test_jupyterlab import LOAD_TIMEOUT, PAGE_CONFIG, Tab, browser_tabs, settle, wait_until
from two_users import ARGS as TWO_USERS
from two_users import two_users_env

pytestmark = pytest.mark.browser

SHOWN_WITHIN = 30_000  # ms: a change on the server reaching the panel (kernels start slowly)
PANEL = "#jupyter-datastore-panel"
ASK_NAME = 'name = input("name? ")\nprint(f"hello {name}")'
# The panel is live through the state socket (or, on a server without it, through events).
LIVE = re.compile("^(live|events)$")
DURATION = re.compile(r"^\d+(\.\d)? (ms|s)$|min")
SLOW = "import time\ntime.sleep(1.5)\nprint('slept')"


class PanelTab(Tab):
    """A user's JupyterLab page with the Datastore panel open."""

    def open(self, url: str) -> None:
        self.page.goto(url, wait_until="commit")
        self.show_panel()

    def show_panel(self, feed: str | re.Pattern[str] = LIVE) -> None:
        """Open the panel from its side bar tab (unless the restored layout shows it), and
        wait for its feed to be in this state."""
        tab = self.page.locator(f'.jp-SideBar .lm-TabBar-tab[data-id="{PANEL[1:]}"]')
        tab.wait_for(timeout=LOAD_TIMEOUT)

        def shown() -> bool:
            if not self.panel.is_visible() and tab.get_attribute("aria-selected") != "true":
                tab.click()
            return self.panel.is_visible()

        self.wait(shown, LOAD_TIMEOUT / 1000, f"{self.name}'s panel to show")
        expect(self.panel.locator(".jp-Datastore-feed")).to_have_attribute(
            "data-feed", feed, timeout=SHOWN_WITHIN
        )

    @property
    def panel(self) -> Locator:
        return self.page.locator(PANEL)

    def kernel(self, kernel_id: str) -> Locator:
        return self.panel.locator(f'.jp-Datastore-kernel[data-kernel-id="{kernel_id}"]')

    def execution(self, execution_id: str) -> Locator:
        return self.panel.locator(f'.jp-Datastore-execution[data-execution-id="{execution_id}"]')

    def document(self, path: str) -> Locator:
        return self.panel.locator(f'.jp-Datastore-document[data-path="{path}"]')

    def events(self) -> Locator:
        return self.panel.locator(".jp-Datastore-event:not([hidden])")

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """`wait_until`, letting Playwright deliver the page's events while it waits."""

        def check() -> bool:
            self.page.wait_for_timeout(20)
            return predicate()

        wait_until(check, timeout, what)


def start(
    make_server: Any, tmp_path: Any, cells: list[dict[str, Any]], default_role: str = "viewer"
) -> Any:
    root = tmp_path / "root"
    write_notebook(root / "run.ipynb", notebook(*cells))
    write_notebook(root / "other.ipynb", notebook(code_cell(SLOW, "slow")))
    write_notebook(root / "private/secret.ipynb", notebook(code_cell("s = 1", "s1")))
    settings = tmp_path / "lab-settings"
    settings.mkdir()
    (settings / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    args = [
        f"--LabApp.app_settings_dir={settings}",
        *TWO_USERS,
        f"--DatastoreApp.default_role={default_role}",
        "--DatastoreApp.owners=alice",
    ]
    server = make_server(args, root=root, env=two_users_env())
    rule = {"users": {"alice": "owner"}, "default": "none"}
    answer = call(server, "alice", "PUT", "/api/datastore/permissions/private", rule)
    assert answer.status_code == 200, answer.text
    return server


def call(server: Any, user: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method,
        f"{server.url}{path}",
        json=body,
        headers={"Authorization": f"token {user}-token"},
        timeout=30,
    )


def run(server: Any, user: str, path: str, cell_id: str) -> str:
    answer = call(
        server, user, "POST", "/api/datastore/executions", {"path": path, "cell_ids": [cell_id]}
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["executions"][0]["id"])


@pytest.mark.timeout(300)
def test_the_panel_shows_kernels_live_and_acts_on_them_and_tails_events(
    make_server, tmp_path
) -> None:
    server = start(make_server, tmp_path, [code_cell("x = 1", "c1")])
    with browser_tabs(server) as (browser, tabs):
        alice = PanelTab(browser, "alice")
        tabs.append(alice)
        alice.open(f"{server.url}/lab?token=alice-token")

        # A kernel started over REST shows, with its state.
        started = call(server, "alice", "POST", "/api/kernels", {"name": "python3"})
        assert started.status_code == 201, started.text
        kernel_id = started.json()["id"]
        row = alice.kernel(kernel_id)
        expect(row).to_be_visible(timeout=SHOWN_WITHIN)
        expect(row.locator(".jp-Datastore-state")).to_have_text("idle", timeout=SHOWN_WITHIN)
        expect(row.locator(".jp-Datastore-name")).to_have_text("python3")

        # Interrupt and restart from the panel: the kernel's events reach the tail.
        row.locator('[data-action="interrupt"]').click()
        interrupted = alice.panel.locator(".jp-Datastore-event", has_text="action=interrupt")
        expect(interrupted.first).to_be_visible(timeout=SHOWN_WITHIN)
        row.locator('[data-action="restart"]').click()
        restarted = alice.panel.locator(".jp-Datastore-event", has_text="action=restart")
        expect(restarted.first).to_be_visible(timeout=SHOWN_WITHIN)
        expect(row.locator(".jp-Datastore-state")).to_have_text("idle", timeout=SHOWN_WITHIN)

        # The filter narrows the tail to what matches, and widening it shows all again.
        alice.wait(lambda: alice.events().count() >= 3, 10, "a few events in the tail")
        everything = alice.events().count()
        alice.panel.locator(".jp-Datastore-filter").fill("action=restart")
        alice.wait(lambda: 0 < alice.events().count() < everything, 10, "the filter to narrow")
        for text in alice.events().all_inner_texts():
            assert "restart" in text, text
        alice.panel.locator(".jp-Datastore-filter").fill("")
        alice.wait(lambda: alice.events().count() >= everything, 10, "the filter to widen")

        # Shut down from the panel: the kernel leaves the list.
        row.locator('[data-action="shutdown"]').click()
        expect(row).to_have_count(0, timeout=SHOWN_WITHIN)
        assert call(server, "alice", "GET", "/api/kernels").json() == []

        # A page opened later shows the last events first (the tail), then the live ones.
        alice.page.reload(wait_until="commit")
        alice.show_panel()
        expect(restarted.first).to_be_visible(timeout=SHOWN_WITHIN)
        assert not alice.errors, alice.errors
        settle(tabs)


@pytest.mark.timeout(300)
def test_the_panel_shows_executions_opens_their_cell_and_answers_input(
    make_server, tmp_path
) -> None:
    cells = [code_cell("a = 1", "first"), code_cell(SLOW, "slow"), code_cell(ASK_NAME, "ask")]
    server = start(make_server, tmp_path, cells)
    with browser_tabs(server) as (browser, tabs):
        alice = PanelTab(browser, "alice")
        tabs.append(alice)
        alice.open(f"{server.url}/lab?token=alice-token")
        # Every status an execution row takes, as the page saw it.
        alice.page.evaluate(
            """() => {
              window.__statuses = {};
              new MutationObserver(records => {
                for (const r of records) {
                  const row = r.target.closest && r.target.closest('[data-execution-id]');
                  for (const node of [row, ...r.addedNodes]) {
                    if (node && node.dataset && node.dataset.executionId) {
                      const seen = window.__statuses[node.dataset.executionId] ||= [];
                      if (seen[seen.length - 1] !== node.dataset.status) {
                        seen.push(node.dataset.status);
                      }
                    }
                  }
                }
              }).observe(document.querySelector('#jupyter-datastore-panel'),
                         {subtree: true, childList: true, attributes: true});
            }"""
        )
        slow = run(server, "alice", "run.ipynb", "slow")
        row = alice.execution(slow)
        expect(row).to_be_visible(timeout=SHOWN_WITHIN)
        expect(row).to_have_attribute("data-status", "ok", timeout=SHOWN_WITHIN)
        expect(row.locator(".jp-Datastore-duration")).to_have_text(DURATION)
        seen = alice.page.evaluate(f"window.__statuses[{json.dumps(slow)}]")
        # Queued while the notebook's kernel starts, then running, then finished.
        assert seen[0] == "queued" and "running" in seen and seen[-1] == "ok", seen

        # Clicking it opens the notebook with that cell active.
        row.locator(".jp-Datastore-where").click()
        active = alice.page.locator(".jp-Notebook .jp-Cell.jp-mod-active .cm-content")
        expect(active).to_contain_text("time.sleep(1.5)", timeout=LOAD_TIMEOUT)

        # input() answered from the panel: the box shows as soon as the cell asks.
        ask = run(server, "alice", "run.ipynb", "ask")
        row = alice.execution(ask)
        expect(row).to_have_attribute("data-status", "awaiting_input", timeout=SHOWN_WITHIN)
        expect(row.locator(".jp-Datastore-prompt")).to_have_text("name? ")
        row.locator(".jp-Datastore-input").fill("Ada")
        row.locator(".jp-Datastore-input").press("Enter")
        expect(row).to_have_attribute("data-status", "ok", timeout=SHOWN_WITHIN)
        record = call(server, "alice", "GET", f"/api/datastore/executions/{ask}").json()
        assert any("hello Ada" in str(output) for output in record["outputs"]), record
        assert not alice.errors, alice.errors
        settle(tabs)


@pytest.mark.timeout(300)
def test_open_documents_show_who_is_in_them_and_a_viewer_sees_no_action_nor_private_paths(
    make_server, tmp_path
) -> None:
    server = start(make_server, tmp_path, [code_cell(SLOW, "slow")])
    # bob may edit everything but private/ (carol stays a viewer).
    rule = {"users": {"bob": "editor"}, "default": "viewer"}
    answer = call(server, "alice", "PUT", "/api/datastore/permissions/", rule)
    assert answer.status_code == 200, answer.text
    with browser_tabs(server) as (browser, tabs):
        alice, carol, bob = (
            PanelTab(browser, "alice"),
            PanelTab(browser, "carol"),
            Tab(browser, "bob"),
        )
        tabs += [alice, carol, bob]
        alice.open(f"{server.url}/lab/tree/private/secret.ipynb?token=alice-token")
        carol.open(f"{server.url}/lab?token=carol-token")
        # alice's open document shows with her in it; carol does not see it at all.
        secret = alice.document("private/secret.ipynb")
        expect(secret).to_be_visible(timeout=SHOWN_WITHIN)
        expect(secret).to_have_attribute("data-users", "alice", timeout=SHOWN_WITHIN)

        # bob opens run.ipynb: both panels show him in it.
        bob.page.goto(f"{server.url}/lab/tree/run.ipynb?token=bob-token", wait_until="commit")
        expect(bob.editor).to_contain_text("time.sleep", timeout=LOAD_TIMEOUT)
        for tab in (alice, carol):
            expect(tab.document("run.ipynb")).to_have_attribute(
                "data-users", "bob", timeout=SHOWN_WITHIN
            )
            expect(tab.document("run.ipynb").locator(".jp-Datastore-peers")).to_have_text("1 peer")

        # A kernel and an execution: alice gets their actions, carol sees them without any.
        started = call(server, "alice", "POST", "/api/kernels", {"name": "python3"})
        kernel_id = started.json()["id"]
        slow = run(server, "alice", "other.ipynb", "slow")
        for tab in (alice, carol):
            expect(tab.kernel(kernel_id)).to_be_visible(timeout=SHOWN_WITHIN)
            expect(tab.execution(slow)).to_be_visible(timeout=SHOWN_WITHIN)
        expect(alice.kernel(kernel_id).locator('[data-action="shutdown"]')).to_be_visible()
        expect(carol.kernel(kernel_id).locator(".jp-Datastore-actions")).to_have_attribute(
            "data-shown", "", timeout=SHOWN_WITHIN
        )
        expect(carol.execution(slow)).to_have_attribute("data-status", "ok", timeout=SHOWN_WITHIN)
        expect(carol.panel.locator("[data-action]")).to_have_count(0)
        expect(carol.document("private/secret.ipynb")).to_have_count(0)
        expect(carol.panel).not_to_contain_text("private/")
        # alice makes carol a runner: her panel offers the kernel's actions at once.
        rule = {"users": {"bob": "editor", "carol": "runner"}, "default": "viewer"}
        answer = call(server, "alice", "PUT", "/api/datastore/permissions/", rule)
        assert answer.status_code == 200, answer.text
        shutdown = carol.kernel(kernel_id).locator('[data-action="shutdown"]')
        expect(shutdown).to_be_visible(timeout=SHOWN_WITHIN)
        for tab in tabs:
            assert not tab.errors, (tab.name, tab.errors)
        settle(tabs)


@pytest.mark.timeout(300)
def test_a_user_with_no_role_gets_a_short_message_and_a_refused_feed_breaks_nothing(
    make_server, tmp_path
) -> None:
    server = start(make_server, tmp_path, [code_cell("x = 1", "c1")], default_role="none")
    with browser_tabs(server) as (browser, tabs):
        mallory, refused = PanelTab(browser, "mallory"), PanelTab(browser, "refused")
        tabs += [mallory, refused]
        mallory.open(f"{server.url}/lab?token=mallory-token")
        expect(mallory.panel.locator(".jp-Datastore-note")).to_be_visible(timeout=SHOWN_WITHIN)
        # A kernel on no notebook shows to everyone, with no action for her.
        started = call(server, "alice", "POST", "/api/kernels", {"name": "python3"})
        kernel = mallory.kernel(started.json()["id"])
        expect(kernel).to_be_visible(timeout=SHOWN_WITHIN)
        expect(kernel.locator(".jp-Datastore-actions")).to_have_attribute(
            "data-shown", "", timeout=SHOWN_WITHIN
        )
        expect(mallory.panel.locator("[data-action]")).to_have_count(0)

        # The state socket refused at its handshake: the panel follows the state through
        # the events (GET /api/datastore/state again after each), live all the same.
        state_feed = re.compile(r".*/api/datastore/state/subscribe.*")
        refused.page.route_web_socket(state_feed, lambda socket: socket.close(code=1011))
        refused.page.goto(f"{server.url}/lab?token=mallory-token", wait_until="commit")
        refused.show_panel(feed="events")
        expect(refused.kernel(started.json()["id"])).to_be_visible(timeout=SHOWN_WITHIN)
        second = call(server, "alice", "POST", "/api/kernels", {"name": "python3"})
        expect(refused.kernel(second.json()["id"])).to_be_visible(timeout=SHOWN_WITHIN)

        # The state socket closed with 4403 after its first frame (access withdrawn): the
        # panel says so.
        def withdrawn(socket: Any) -> None:
            socket.send(json.dumps({"type": "state", "state": {}}))
            socket.close(code=4403, reason="access withdrawn")

        mallory.page.route_web_socket(state_feed, withdrawn)
        mallory.page.reload(wait_until="commit")
        mallory.show_panel(feed="refused")
        expect(mallory.panel.locator(".jp-Datastore-message")).to_be_visible()
        for tab in tabs:
            assert not tab.errors, (tab.name, tab.errors)
        settle(tabs)
