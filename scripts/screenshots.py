#!/usr/bin/env python3
"""Screenshots of this project's JupyterLab extension, for the docs: docs/img/*.png.

    scripts/screenshots.py          (runs itself with .venv/bin/python)

Starts our server (`jupyter-datastore serve`) with two users, alice and bob (the tests'
identity provider, tests/two_users.py), on a temporary folder holding a small notebook, and
opens JupyterLab as alice in headless Chromium (/usr/bin/chromium) at 1280x800:

- docs/img/notification.png: bob's notification (posted over REST, linking the notebook and
  a cell) toasting in alice's JupyterLab, the notebook open;
- docs/img/prompt.png: a run on the server (started over REST) waiting on `input()`, with
  the stdin box in the cell;
- docs/img/panel.png: the Datastore side panel (command `datastore:open-panel`) with a kernel
  running and an execution finished; skipped, with a message, when JupyterLab has no such
  command.

Every server it starts is stopped by its pid (and the kernels it left, by theirs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
VENV_PYTHON = HERE / ".venv" / "bin" / "python"
if Path(sys.prefix).resolve() != (HERE / ".venv").resolve() and VENV_PYTHON.exists():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])

import psutil  # noqa: E402  (the venv's, after the re-exec above)
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

IMAGES = HERE / "docs" / "img"
NOTEBOOK = "report.ipynb"
PANEL_COMMAND = "datastore:open-panel"
VIEWPORT = {"width": 1280, "height": 800}
LOAD_TIMEOUT = 90_000  # ms
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic",
]  # fmt: skip
PAGE_CONFIG = {
    # No news toast, no build check; the app exposed as window.jupyterapp (for its commands).
    "disabledExtensions": ["@jupyterlab/apputils-extension:announcements"],
    "buildCheck": False,
    "buildAvailable": False,
    "exposeAppInBrowser": True,
}
CELLS = [
    ("md", "intro", "# Quarterly report\nLoads the sales data and summarizes it by region."),
    ("code", "load", 'sales = {"north": 120, "south": 95, "east": 143, "west": 88}\nlen(sales)'),
    ("code", "total", 'total = sum(sales.values())\nprint(f"total: {total}")'),
    ("code", "top", 'top = max(sales, key=sales.get)\nprint(f"top region: {top}")'),
    ("code", "ask", 'region = input("region to detail? ")\nprint(region, sales.get(region))'),
]


def notebook() -> dict[str, Any]:
    cells = []
    for kind, cell_id, source in CELLS:
        cell: dict[str, Any] = {"id": cell_id, "metadata": {}, "source": source}
        if kind == "md":
            cell["cell_type"] = "markdown"
        else:
            cell.update(cell_type="code", execution_count=None, outputs=[])
        cells.append(cell)
    kernelspec = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    return {
        "cells": cells,
        "metadata": {"kernelspec": kernelspec},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """Our server as a subprocess on a temporary folder; stopped by its pid."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = home / "root"
        self.root.mkdir()
        settings = home / "lab-settings"
        settings.mkdir()
        (settings / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            str(VENV_PYTHON), "-m", "jupyter_datastore.cli", "serve",
            f"--root={self.root}", "--ip=127.0.0.1", f"--port={self.port}",
            "--ServerApp.port_retries=0", f"--LabApp.app_settings_dir={settings}",
            "--ServerApp.identity_provider_class=two_users.TwoUsers",
            "--DatastoreApp.server_side_execution=True", "--DatastoreApp.owners=alice",
            f"--BaseFileIdManager.db_path={home / 'fileid.db'}",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home / "server.log"

    def start(self) -> None:
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self.home / "config"),
            "JUPYTER_DATA_DIR": str(self.home / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            "PYTHONPATH": str(HERE / "tests"),  # two_users.TwoUsers
        }
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.home
            )
        print(f"server: pid {self.process.pid}, {self.url}", flush=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log()}")
            try:
                self.request("GET", "/api/status", "alice")
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the server did not start in 90 s:\n{self.log()}")

    def request(self, method: str, path: str, user: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {user}-token", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return json.loads(text) if text else None

    def stop(self) -> None:
        """SIGTERM by pid (SIGKILL after 30 s); then the kernels it left, by their pids."""
        if self.process is None:
            return
        pid = self.process.pid
        children = (
            psutil.Process(pid).children(recursive=True) if self.process.poll() is None else []
        )
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for child in children:
            if child.is_running():
                child.kill()
        print(f"server: pid {pid} stopped", flush=True)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def save(page: Page, name: str) -> Path:
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / name
    page.screenshot(path=str(path))
    print(f"saved {path.relative_to(HERE)}", flush=True)
    return path


def wait_execution(server: Server, execution_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = server.request("GET", f"/api/datastore/executions/{execution_id}", "alice")
        if record["status"] == status:
            return
        time.sleep(0.2)
    raise RuntimeError(f"execution {execution_id} did not reach {status!r}")


def run_cell(server: Server, cell_id: str) -> str:
    body = {"path": NOTEBOOK, "cell_ids": [cell_id]}
    [record] = server.request("POST", "/api/datastore/executions", "alice", body)["executions"]
    return str(record["id"])


def notification_shot(server: Server, page: Page) -> None:
    body = {
        "recipients": ["alice"],
        "message": "bob: the report is ready, see the top region",
        "type": "success",
        "link": NOTEBOOK,
        "data": {"cell_id": "top"},
    }
    server.request("POST", "/api/notifications", "bob", body)
    toast = page.locator(".Toastify__toast", has_text="the report is ready")
    expect(toast).to_be_visible(timeout=15_000)
    page.wait_for_timeout(800)  # the toast's slide-in
    save(page, "notification.png")
    toast.get_by_role("button", name="Mark read").click()
    expect(toast).to_have_count(0)


def prompt_shot(server: Server, page: Page) -> str:
    for cell_id in ("load", "total", "top"):
        wait_execution(server, run_cell(server, cell_id), "ok")
    asked = run_cell(server, "ask")
    wait_execution(server, asked, "awaiting_input")
    cell = page.locator(".jp-Notebook .jp-Cell").nth(4)
    box = cell.locator(".jp-OutputArea-stdin-item .jp-Stdin-input")
    expect(box).to_be_visible(timeout=30_000)
    box.click()  # the cell active, the cursor in the box
    page.wait_for_timeout(500)
    save(page, "prompt.png")
    return asked


def panel_shot(page: Page) -> bool:
    has = page.evaluate(f"() => window.jupyterapp.commands.hasCommand({PANEL_COMMAND!r})")
    if not has:
        print(
            f"skipped docs/img/panel.png: JupyterLab has no command {PANEL_COMMAND!r} "
            "(the Datastore panel is not in the built extension yet)",
            flush=True,
        )
        return False
    page.evaluate(f"() => window.jupyterapp.commands.execute({PANEL_COMMAND!r})")
    page.wait_for_timeout(2500)  # the panel's first state and events
    save(page, "panel.png")
    return True


def main() -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (expected on PATH, e.g. Debian's /usr/bin/chromium)")
    home = Path(tempfile.mkdtemp(prefix="jds-screenshots-"))
    server = Server(home)
    (server.root / NOTEBOOK).write_text(json.dumps(notebook(), indent=1))
    try:
        server.start()
        # The notebook's kernel, running before the page opens (the page joins it).
        session = {"path": NOTEBOOK, "type": "notebook", "name": NOTEBOOK}
        server.request("POST", "/api/sessions", "alice", {**session, "kernel": {"name": "python3"}})
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport=VIEWPORT).new_page()
                page.goto(f"{server.url}/lab/tree/{NOTEBOOK}?token=alice-token")
                editor = page.locator(".jp-Notebook .jp-CodeCell .cm-content")
                expect(editor.first).to_be_visible(timeout=LOAD_TIMEOUT)
                expect(page.locator(".jp-Toolbar-kernelName").first).to_contain_text(
                    "Python 3", timeout=LOAD_TIMEOUT
                )
                # alice's notification feed is up once the extension listed her unread ones.
                page.wait_for_timeout(1500)
                notification_shot(server, page)
                asked = prompt_shot(server, page)
                box = page.locator(".jp-OutputArea-stdin-item .jp-Stdin-input")
                box.fill("east")
                box.press("Enter")
                wait_execution(server, asked, "ok")  # an execution finished, a kernel running
                expect(box).to_have_count(0, timeout=30_000)
                panel_shot(page)
            finally:
                browser.close()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
