"""Prompts of server runs in stock JupyterLab (headless Chromium): a cell run on the server
(started over REST, as the Python client does) that calls `input()` or `getpass()` shows
JupyterLab's own stdin box in that cell, in every window of a user allowed to answer.

alice (owner) has two windows, carol (viewer) one. The box shows in both of alice's
windows and not in carol's; a reload while the prompt waits shows it again; Enter in one
window answers the run and the box leaves both; a getpass prompt's box is a password input.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from notebooks import code_cell, notebook, write_notebook
from playwright.sync_api import Locator, Response, expect
from test_jupyterlab import LOAD_TIMEOUT, PAGE_CONFIG, Tab, browser_tabs, settle, wait_until
from two_users import ARGS as TWO_USERS
from two_users import two_users_env

pytestmark = pytest.mark.browser

SHOWN_WITHIN = 30_000  # ms: a prompt (or its answer) reaching a page
STDIN = ".jp-OutputArea-stdin-item .jp-Stdin-input"
ASK_NAME = 'name = input("name? ")\nprint(f"hello {name}")'
ASK_SECRET = 'import getpass\nsecret = getpass.getpass("secret? ")\nprint("length", len(secret))'


class Window(Tab):
    """A Tab that also keeps the roles its page asked the server for."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.roles_asked: list[int] = []
        self.page.on("response", self._response)

    def _response(self, response: Response) -> None:
        if "/api/datastore/permissions/" in response.url:
            self.roles_asked.append(response.status)

    def cell(self, index: int) -> Locator:
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def stdin(self, index: int) -> Locator:
        return self.cell(index).locator(STDIN)

    def outputs(self, index: int) -> Locator:
        return self.cell(index).locator(".jp-OutputArea-output")


def run(server: Any, user: str, cell_id: str) -> dict[str, Any]:
    """Start a cell on the server over REST, as the Python client does."""
    response = httpx.post(
        f"{server.url}/api/datastore/executions",
        json={"path": "prompts.ipynb", "cell_ids": [cell_id]},
        headers={"Authorization": f"token {user}-token"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    [record] = response.json()["executions"]
    return dict(record)


def status(server: Any, execution_id: str) -> str:
    return str(server.get(f"/api/datastore/executions/{execution_id}")["status"])


@pytest.mark.timeout(300)
def test_a_server_runs_prompt_shows_in_each_window_of_who_may_answer_and_leaves_on_answer(
    make_server, tmp_path
) -> None:
    root = tmp_path / "root"
    cells = [code_cell(ASK_NAME, "ask"), code_cell(ASK_SECRET, "secret")]
    write_notebook(root / "prompts.ipynb", notebook(*cells))
    settings = tmp_path / "lab-settings"
    settings.mkdir()
    (settings / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    args = [
        f"--LabApp.app_settings_dir={settings}",
        *TWO_USERS,
        "--DatastoreApp.server_side_execution=True",
        "--DatastoreApp.default_role=viewer",
        "--DatastoreApp.owners=alice",
    ]
    server = make_server(args, root=root, env=two_users_env())
    lab = f"{server.url}/lab/tree/prompts.ipynb"

    with browser_tabs(server) as (browser, tabs):
        tabs += [Window(browser, "alice-1"), Window(browser, "alice-2"), Window(browser, "carol")]
        alice_1, alice_2, carol = tabs
        for window in tabs:
            user = window.name.split("-")[0]
            window.page.goto(f"{lab}?token={user}-token", wait_until="commit")
        for window in tabs:
            expect(window.cell(0).locator(".cm-content")).to_contain_text(
                'input("name? ")', timeout=LOAD_TIMEOUT
            )

        # 1. input(): the box in that cell, in both of alice's windows, with its prompt.
        asked = run(server, "alice", "ask")
        for window in (alice_1, alice_2):
            expect(window.stdin(0)).to_be_visible(timeout=SHOWN_WITHIN)
            expect(window.stdin(0)).not_to_have_attribute("type", "password")
            expect(window.cell(0).locator(".jp-Stdin-prompt")).to_have_text("name? ")
            expect(window.stdin(1)).to_have_count(0)
        assert status(server, asked["id"]) == "awaiting_input"
        # carol, a viewer, may not answer: her page asked her role, and shows no box.
        wait_until(lambda: 200 in carol.roles_asked, 30, "carol's page to read her role")
        expect(carol.page.locator(STDIN)).to_have_count(0)

        # 2. A reload while the prompt waits shows the box again.
        alice_2.page.reload(wait_until="commit")
        expect(alice_2.stdin(0)).to_be_visible(timeout=LOAD_TIMEOUT)

        # 3. Enter in one window answers the run: the box leaves both, the output shows it.
        alice_1.stdin(0).fill("Ada")
        alice_1.stdin(0).press("Enter")
        for window in (alice_1, alice_2):
            expect(window.stdin(0)).to_have_count(0, timeout=SHOWN_WITHIN)
            expect(window.outputs(0).last).to_contain_text("hello Ada", timeout=SHOWN_WITHIN)
        wait_until(lambda: status(server, asked["id"]) == "ok", 30, "the run to finish")
        expect(carol.outputs(0).last).to_contain_text("hello Ada", timeout=SHOWN_WITHIN)

        # 4. getpass(): a password box; answered from the other window.
        secret = run(server, "alice", "secret")
        for window in (alice_1, alice_2):
            expect(window.stdin(1)).to_be_visible(timeout=SHOWN_WITHIN)
            expect(window.stdin(1)).to_have_attribute("type", "password")
        alice_2.stdin(1).fill("hunter2")
        alice_2.stdin(1).press("Enter")
        for window in (alice_1, alice_2):
            expect(window.stdin(1)).to_have_count(0, timeout=SHOWN_WITHIN)
            expect(window.outputs(1).last).to_contain_text("length 7", timeout=SHOWN_WITHIN)
            expect(window.cell(1).locator(".jp-OutputArea")).not_to_contain_text("hunter2")
        wait_until(lambda: status(server, secret["id"]) == "ok", 30, "the getpass run to finish")
        for window in tabs:
            assert not window.errors, (window.name, window.errors)
        settle(tabs)
