"""Our extension in Notebook 7 (headless Chromium): server notifications and the prompts of
server runs, as in JupyterLab (tests/test_lab_notifications.py, tests/test_lab_prompts.py).

alice has Notebook 7's file browser (/tree) in one window and the notebook's page
(/notebooks/report.ipynb) in another. A notification posted for her over REST toasts in both
and is listed in the notification center (View > Show Notifications: Notebook 7 has no
status bar bell); its Open opens the notebook's page and marks it read, so the other window
drops it; marked read in one window, it is gone from the other's toasts and center. A
server run's `input()` shows the stdin box in the cell of the notebook's page, and Enter
answers it. Open on the notebook's own page reveals the cell there (Notebook 7's opener
would open a new tab and empty the page).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from notebooks import code_cell, notebook, write_notebook
from playwright.sync_api import Page, expect
from test_jupyterlab import LOAD_TIMEOUT, PAGE_CONFIG, Tab, browser_tabs, settle, wait_until
from test_lab_notifications import SHOWN_WITHIN, Window, notify, rows
from test_lab_prompts import ASK_NAME, STDIN, status
from two_users import ARGS as TWO_USERS
from two_users import two_users_env

pytestmark = pytest.mark.browser

EDITOR = ".jp-Notebook .jp-Cell .cm-content"
# Page errors of Notebook 7 with the stock collaboration front end, with or without our
# extension (jupyter-docprovider's status bar plugin needs JupyterLab's status bar, which
# Notebook 7 does not have, and a settings listener of Notebook 7 itself): not ours.
NOT_OURS = {"Cannot read properties of undefined (reading 'schema')"}


def start_notebook7(make_server: Any, tmp_path: Path, root: Path) -> Any:
    """Our server with Notebook 7, alice owning everything (others view).

    Notebook 7 reads no `--LabApp.app_settings_dir`: its page config comes from the
    `labconfig/page_config.json` of the Jupyter config path (disabled extensions as a map).
    """
    config = tmp_path / "jupyter-config"
    (config / "labconfig").mkdir(parents=True)
    page_config = {
        **PAGE_CONFIG,
        "disabledExtensions": dict.fromkeys(PAGE_CONFIG["disabledExtensions"], True),
    }
    (config / "labconfig" / "page_config.json").write_text(json.dumps(page_config))
    args = [
        *TWO_USERS,
        "--DatastoreApp.server_side_execution=True",
        "--DatastoreApp.default_role=viewer",
        "--DatastoreApp.owners=alice",
    ]
    env = {**two_users_env(), "JUPYTER_CONFIG_PATH": str(config)}
    return make_server(args, root=root, env=env)


def report_notebook(root: Path) -> None:
    cells = [code_cell(f"step_{n} = {n}", f"c{n}") for n in range(1, 4)]
    write_notebook(root / "report.ipynb", notebook(*cells, code_cell(ASK_NAME, "ask")))


def listed(page: Page) -> list[str]:
    """The messages in Notebook 7's notification center (View > Show Notifications).

    Notebook 7 has no status bar, and the center's popup is anchored to the status bar's
    bell: it opens with its list in the page but not visible (Notebook 7's, not ours), and
    toasts are hidden while it is open. So the list is read from the page, and the center
    closed by a click elsewhere, as a popup is.
    """
    page.locator(".lm-MenuBar-itemLabel", has_text="View").click()
    page.locator(".lm-Menu-item", has_text="Show Notifications").click()
    expect(page.locator(".jp-Notification-List")).to_have_count(1)
    items = page.locator(".jp-Notification-List-Item").all_text_contents()
    page.mouse.click(640, 790)
    expect(page.locator(".jp-Notification-Center")).to_have_count(0)
    return items


def ours_failed(tab: Tab) -> list[str]:
    """Page errors that are not Notebook 7's own, and console errors naming our extension."""
    errors = [e for e in tab.errors if e not in NOT_OURS]
    return errors + [m for m in tab.console if m.startswith("error") and "datastore" in m]


@pytest.mark.timeout(300)
def test_notebook7_toasts_lists_opens_and_reads_notifications_and_shows_prompts(
    make_server, tmp_path
) -> None:
    root = tmp_path / "root"
    report_notebook(root)
    server = start_notebook7(make_server, tmp_path, root)

    with browser_tabs(server) as (browser, tabs):
        tabs += [Window(browser, "tree"), Window(browser, "notebook")]
        tree, page = tabs
        tree.open(f"{server.url}/tree?token=alice-token")
        page.open(f"{server.url}/notebooks/report.ipynb?token=alice-token")
        expect(tree.page.locator(".jp-DirListing-item", has_text="report.ipynb")).to_be_visible(
            timeout=LOAD_TIMEOUT
        )
        expect(page.page.locator(EDITOR).first).to_have_text("step_1 = 1", timeout=LOAD_TIMEOUT)

        # 1. A notification for alice: a toast in both pages, and in the notification center.
        notify(
            server,
            "bob",
            ["alice"],
            "Report ready: see step 3",
            type="warning",
            link="report.ipynb",
            data={"cell_id": "c3"},
        )
        for window in (tree, page):
            toast = window.toast("Report ready: see step 3")
            expect(toast).to_be_visible(timeout=SHOWN_WITHIN)
            expect(toast).to_have_class(re.compile(r"jp-Notification-Toast-warning"))
        [item] = listed(page.page)
        assert "Report ready: see step 3" in item, item

        # 2. Open, from the file browser: the notebook's page, in a new tab (Notebook 7
        # opens every document in a page of its own); marked read, so the notebook's page
        # drops it too.
        with tree.page.context.expect_page(timeout=SHOWN_WITHIN) as opened:
            tree.toast("Report ready").get_by_role("button", name="Open").click()
        popup = opened.value
        expect(popup).to_have_url(re.compile(r"/notebooks/report\.ipynb"), timeout=LOAD_TIMEOUT)
        expect(popup.locator(EDITOR).first).to_have_text("step_1 = 1", timeout=LOAD_TIMEOUT)
        wait_until(
            lambda: rows(server, "alice")["Report ready: see step 3"]["read"],
            timeout=10,
            what="the notification marked read on the server",
        )
        expect(page.toast("Report ready")).to_have_count(0, timeout=SHOWN_WITHIN)
        expect(tree.toast("Report ready")).to_have_count(0)
        popup.close()

        # 3. Mark read on a toast in the file browser: read, and gone from the notebook's
        # page, toast and notification center.
        notify(server, "bob", ["alice"], "Second one", type="error")
        for window in (tree, page):
            expect(window.toast("Second one")).to_be_visible(timeout=SHOWN_WITHIN)
        tree.toast("Second one").get_by_role("button", name="Mark read").click()
        expect(tree.toast("Second one")).to_have_count(0)
        wait_until(
            lambda: rows(server, "alice")["Second one"]["read"],
            timeout=10,
            what="the notification marked read on the server",
        )
        expect(page.toast("Second one")).to_have_count(0, timeout=SHOWN_WITHIN)
        assert listed(page.page) == []

        # 4. A server run's input(): the stdin box in that cell of the notebook's page.
        response = server_run(server, "ask")
        cell = page.page.locator(".jp-Notebook .jp-Cell").nth(3)
        box = cell.locator(STDIN)
        expect(box).to_be_visible(timeout=SHOWN_WITHIN)
        expect(cell.locator(".jp-Stdin-prompt")).to_have_text("name? ")
        assert status(server, response["id"]) == "awaiting_input"
        box.fill("Ada")
        box.press("Enter")
        expect(box).to_have_count(0, timeout=SHOWN_WITHIN)
        expect(cell.locator(".jp-OutputArea-output").last).to_contain_text(
            "hello Ada", timeout=SHOWN_WITHIN
        )
        wait_until(lambda: status(server, response["id"]) == "ok", 30, "the run to finish")
        for window in tabs:
            assert not ours_failed(window), (window.name, ours_failed(window))
        settle(tabs)


@pytest.mark.timeout(300)
def test_notebook7_open_on_the_notebooks_own_page_reveals_the_cell(make_server, tmp_path) -> None:
    root = tmp_path / "root"
    report_notebook(root)
    server = start_notebook7(make_server, tmp_path, root)

    with browser_tabs(server) as (browser, tabs):
        tabs.append(Window(browser, "notebook"))
        [page] = tabs
        page.open(f"{server.url}/notebooks/report.ipynb?token=alice-token")
        expect(page.page.locator(EDITOR).first).to_have_text("step_1 = 1", timeout=LOAD_TIMEOUT)
        notify(
            server, "bob", ["alice"], "Look at step 3", link="report.ipynb", data={"cell_id": "c3"}
        )
        page.toast("Look at step 3").get_by_role("button", name="Open").click()
        # The page still shows the notebook, with the cell active, and no other tab opened
        # (Notebook 7's opener would open a new one and empty this page).
        active = page.page.locator(".jp-Notebook .jp-Cell.jp-mod-active .cm-content")
        expect(active).to_have_text("step_3 = 3", timeout=SHOWN_WITHIN)
        settle(tabs)
        expect(page.page.locator(EDITOR)).to_have_count(4)
        assert len(page.page.context.pages) == 1, [p.url for p in page.page.context.pages]


def server_run(server: Any, cell_id: str) -> dict[str, Any]:
    """Start a cell of report.ipynb on the server over REST, as alice (as the Python client
    does)."""
    response = httpx.post(
        f"{server.url}/api/datastore/executions",
        json={"path": "report.ipynb", "cell_ids": [cell_id]},
        headers={"Authorization": "token alice-token"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    [record] = response.json()["executions"]
    return dict(record)
