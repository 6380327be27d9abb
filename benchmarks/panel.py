"""The Datastore panel: how soon a change made over REST shows in JupyterLab's panel.

Stock JupyterLab in headless Chromium with our extension, the Datastore panel open. From the
page itself (so that one clock measures both ends), each round issues a REST call with
`fetch` and takes `performance.now()` just before it; a MutationObserver on the panel takes
the time the row for the result enters the DOM. Two actions:

- kernel: `POST /api/kernels` (a new kernel; shut down after each round, its row gone
  before the next). The response comes once the kernel has started, so the time from the
  request includes the kernel's start; the time after the response is the panel's own.
- execution: `POST /api/datastore/executions` (a cell queued on the notebook's kernel, which
  already runs); the row of the new execution, and the round ends when it shows finished.

Printed: p50 and p99 of both times, per action; the goal: p99 <= 100 ms (from the request for
a queued cell, after the response for a kernel; a row shown before the response counts as 0).

    .venv/bin/python benchmarks/panel.py [--rounds 50]
    .venv/bin/python benchmarks/run.py --only panel
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys

from playwright.sync_api import sync_playwright

from servers import TOKEN, Server, ours

GOAL_MS = 100.0
LOAD_TIMEOUT = 120_000  # ms
PANEL = "#jupyter-datastore-panel"
PAGE_CONFIG = {
    "disabledExtensions": ["@jupyterlab/apputils-extension:announcements"],
    "notebookStartsKernel": "false",
    "buildCheck": False,
    "buildAvailable": False,
}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "id": "c1", "metadata": {}, "outputs": [], "source": "1 + 1",
         "execution_count": None},
    ],
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}  # fmt: skip

# In the page: a MutationObserver notes when each row (by its data-* id) enters the panel,
# and `__round` times one REST call against it.
SETUP = """(panel) => {
  const seen = new Map();
  const waiting = new Map();
  const note = node => {
    if (!(node instanceof HTMLElement)) return;
    const id = node.dataset.kernelId || node.dataset.executionId;
    if (!id || !node.matches('.jp-Datastore-kernel, .jp-Datastore-execution')) return;
    if (!seen.has(id)) {
      const now = performance.now();
      seen.set(id, now);
      const resolve = waiting.get(id);
      if (resolve) { waiting.delete(id); resolve(now); }
    }
  };
  new MutationObserver(records => {
    for (const record of records) record.addedNodes.forEach(note);
  }).observe(document.querySelector(panel), {subtree: true, childList: true});
  const xsrf = () =>
    decodeURIComponent((document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || '');
  const call = (method, url, body) => fetch(url, {
    method,
    headers: {'X-XSRFToken': xsrf(), 'Content-Type': 'application/json'},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const shown = id => seen.has(id)
    ? Promise.resolve(seen.get(id))
    : new Promise(resolve => waiting.set(id, resolve));
  const until = (check, timeout) => new Promise((resolve, reject) => {
    const started = performance.now();
    const tick = () => {
      if (check()) resolve();
      else if (performance.now() - started > timeout) reject(new Error('timed out'));
      else requestAnimationFrame(tick);
    };
    tick();
  });
  window.__round = async (kind) => {
    const started = performance.now();
    const response = kind === 'kernel'
      ? await call('POST', '/api/kernels', {name: 'python3'})
      : await call('POST', '/api/datastore/executions', {path: 'bench.ipynb', cell_ids: ['c1']});
    const answered = performance.now();
    if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
    const body = await response.json();
    const id = kind === 'kernel' ? body.id : body.executions[0].id;
    const at = await Promise.race([
      shown(id),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`${id} not shown`)), 30000)),
    ]);
    if (kind === 'kernel') {
      await call('DELETE', `/api/kernels/${id}`);
      await until(() => !document.querySelector(`${panel} [data-kernel-id="${id}"]`), 30000);
    } else {
      const row = () => document.querySelector(`${panel} [data-execution-id="${id}"]`);
      await until(() => row() && row().dataset.status === 'ok', 30000);
    }
    return {request: at - started, response: Math.max(0, at - answered)};
  };
}"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(server: Server, rounds: int) -> dict[str, dict[str, float]]:
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (expected on PATH): the panel benchmark needs it")
    results: dict[str, dict[str, float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            page.goto(f"{server.endpoint.url}/lab?token={TOKEN}", wait_until="commit")
            tab = page.locator('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-datastore-panel"]')
            tab.wait_for(timeout=LOAD_TIMEOUT)
            if tab.get_attribute("aria-selected") != "true":
                tab.click()
            page.locator(f'{PANEL} .jp-Datastore-feed[data-feed="live"]').wait_for(
                timeout=LOAD_TIMEOUT
            )
            page.evaluate(SETUP, PANEL)
            # A first run starts the notebook's kernel: not measured.
            page.evaluate("() => window.__round('execution')")
            for kind in ("execution", "kernel"):
                times = [page.evaluate("(k) => window.__round(k)", kind) for _ in range(rounds)]
                request = [t["request"] for t in times]
                response = [t["response"] for t in times]
                results[kind] = {
                    "rounds": rounds,
                    "from_request_p50_ms": percentile(request, 0.5),
                    "from_request_p99_ms": percentile(request, 0.99),
                    "after_response_p50_ms": percentile(response, 0.5),
                    "after_response_p99_ms": percentile(response, 0.99),
                }
        finally:
            browser.close()
    return results


def report(results: dict[str, dict[str, float]]) -> None:
    print(f"Datastore panel: a REST action to its row in the panel (goal: p99 <= {GOAL_MS:.0f} ms)")
    print("times in ms: from the request issued / after its response came (0: shown before)")
    heads = ("action", "rounds", "req p50", "req p99", "resp p50", "resp p99")
    print(f"{heads[0]:<10} {heads[1]:>6}" + "".join(f" {h:>9}" for h in heads[2:]) + "  goal")
    for kind, r in results.items():
        # A queued cell's row must show within the goal from the request; a kernel's from
        # the response (the request waits for the kernel to start).
        measured = r["from_request_p99_ms"] if kind == "execution" else r["after_response_p99_ms"]
        met = "met" if measured <= GOAL_MS else "NOT met"
        print(
            f"{kind:<10} {r['rounds']:>6.0f} {r['from_request_p50_ms']:>9.1f} "
            f"{r['from_request_p99_ms']:>9.1f} {r['after_response_p50_ms']:>9.1f} "
            f"{r['after_response_p99_ms']:>9.1f}  {met}"
        )  # fmt: skip


def run(rounds: int = 50) -> dict[str, dict[str, float]]:
    server = ours()
    settings = server.home / "lab-settings"
    settings.mkdir()
    (settings / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    server.command.append(f"--LabApp.app_settings_dir={settings}")
    (server.root / "bench.ipynb").write_text(json.dumps(NOTEBOOK))
    try:
        server.start()
        return measure(server, rounds)
    finally:
        server.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50, help="rounds per action (50)")
    args = parser.parse_args(argv)
    results = run(args.rounds)
    report(results)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
