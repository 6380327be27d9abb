"""JupyterLab's load time with and without this project's extension, on one server, in one run.

    .venv/bin/python benchmarks/run.py --only lab_load [--quick]
    .venv/bin/python benchmarks/lab_load.py [--loads N]

Our server serves a small notebook; headless Chromium opens /lab/tree/<it> `loads` times
with our extension and as many without, alternating, each load in a fresh browser context
(a cold cache, as a first visit). A load is timed from the navigation's start to when both
the notebook's first cell editor is visible and JupyterLab's `app.restored` has resolved
(both read in the page, on its own clock). "Without" disables the extension through
JupyterLab's page config (`disabledExtensions: ["jupyter-datastore"]` in the app settings
dir's page_config.json, which the server reads at each page request), and each load checks
that it really had none of our plugins (the app's plugin list, and no request to
/api/notifications) and that "with" had them all. The goal: "with" at most 10% slower
(the ratio of the medians).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import servers

GOAL = 1.10
"""Largest ratio of the medians (with / without) that meets the goal."""
NOTEBOOK = "small.ipynb"
OURS = "jupyter-datastore"
# JupyterLab's page config for both: nothing on first load that asks for a click or reaches
# out of the machine, no kernel, and the app exposed as window.jupyterapp (to read its
# plugins and its `restored`).
PAGE_CONFIG: dict[str, Any] = {
    "disabledExtensions": ["@jupyterlab/apputils-extension:announcements"],
    "notebookStartsKernel": "false",
    "buildCheck": False,
    "buildAvailable": False,
    "exposeAppInBrowser": True,
}
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic",
]  # fmt: skip
# Runs in the page from its first script: notes (on the page's clock, from the navigation's
# start) when the first cell editor is visible and when the app has restored.
PROBE = """
(() => {
  const marks = (window.__loadMarks = {});
  const poll = () => {
    const app = window.jupyterapp;
    if (app && !marks.hooked) {
      marks.hooked = true;
      app.restored.then(() => { marks.restored = performance.now(); });
    }
    if (marks.editor === undefined) {
      const editor = document.querySelector(
        '.jp-Notebook .jp-Cell .jp-InputArea-editor .cm-content'
      );
      if (editor && editor.offsetParent !== null && editor.textContent.length > 0) {
        marks.editor = performance.now();
      }
    }
    if (marks.editor === undefined || marks.restored === undefined) {
      setTimeout(poll, 5);
    }
  };
  poll();
})();
"""
LOAD_TIMEOUT = 120_000  # ms


def small_notebook() -> dict[str, Any]:
    cells = [
        {
            "cell_type": "code",
            "id": f"c{n}",
            "source": f"x_{n} = {n}\nprint(x_{n})",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
        }
        for n in range(1, 6)
    ]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def write_page_config(settings: Path, with_ours: bool) -> None:
    config = json.loads(json.dumps(PAGE_CONFIG))
    if not with_ours:
        config["disabledExtensions"].append(OURS)
    (settings / "page_config.json").write_text(json.dumps(config))


def load_once(browser: Any, url: str) -> dict[str, Any]:
    """One load in a fresh context: its times (ms) and which of our plugins it had."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        context.add_init_script(PROBE)
        page = context.new_page()
        notifications: list[str] = []
        page.on("request", lambda r: "/api/notifications" in r.url and notifications.append(r.url))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text[:300]))
        page.goto(url, wait_until="commit")
        try:
            page.wait_for_function(
                "() => window.__loadMarks && window.__loadMarks.editor !== undefined"
                " && window.__loadMarks.restored !== undefined",
                timeout=LOAD_TIMEOUT,
                polling=50,
            )
        except Exception as error:
            marks = page.evaluate("() => window.__loadMarks")
            raise RuntimeError(
                f"the load did not finish: {marks}, page errors: {errors}"
            ) from error
        marks = page.evaluate("() => window.__loadMarks")
        plugins = page.evaluate(
            f"() => window.jupyterapp.listPlugins().filter(id => id.startsWith('{OURS}:'))"
        )
        activated = page.evaluate(
            f"() => window.jupyterapp.listPlugins().filter(id => id.startsWith('{OURS}:')"
            " && window.jupyterapp.isPluginActivated(id))"
        )
        # Our notification feed asks for the unread ones once the app has restored.
        if plugins:
            page.wait_for_timeout(500)
        return {
            "ms": max(marks["editor"], marks["restored"]),
            "editor_ms": marks["editor"],
            "restored_ms": marks["restored"],
            "our_plugins": plugins,
            "our_plugins_activated": activated,
            "notification_requests": len(notifications),
        }
    finally:
        context.close()


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1), linear between the nearest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def run(loads: int = 10) -> dict[str, Any]:
    """Start our server, time `loads` loads with and `loads` without, alternating; stop it."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("chromium is not on PATH (e.g. Debian's /usr/bin/chromium)")
    settings = Path(tempfile.mkdtemp(prefix="bench-lab-settings-"))
    write_page_config(settings, with_ours=True)
    server = servers.ours(f"--LabApp.app_settings_dir={settings}")
    (server.root / NOTEBOOK).write_text(json.dumps(small_notebook()))
    runs: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}
    try:
        server.start()
        print(f"lab_load: our server pid {server.pid}, {server.endpoint.url}", flush=True)
        url = f"{server.endpoint.url}/lab/tree/{NOTEBOOK}?token={servers.TOKEN}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                order = ["with", "without"]
                for n in range(loads + 1):  # the first pair warms the server up, not counted
                    for kind in order:
                        write_page_config(settings, with_ours=kind == "with")
                        result = load_once(browser, url)
                        check(kind, result)
                        if n > 0:
                            runs[kind].append(result)
                        print(
                            f"  {'warm-up' if n == 0 else n:>7} {kind:>7}: {result['ms']:7.0f} ms "
                            f"(editor {result['editor_ms']:.0f}, restored "
                            f"{result['restored_ms']:.0f}), our plugins "
                            f"{len(result['our_plugins_activated'])}",
                            flush=True,
                        )
                    order.reverse()  # alternate which goes first
            finally:
                browser.close()
    finally:
        server.stop()
        server.cleanup()
        shutil.rmtree(settings, ignore_errors=True)
    return summarize(runs)


def check(kind: str, result: dict[str, Any]) -> None:
    """Without: none of our plugins and no notification request; with: all of them active."""
    if kind == "without":
        if result["our_plugins"] or result["notification_requests"]:
            raise RuntimeError(f"the extension was not disabled: {result}")
    elif not result["our_plugins"] or result["our_plugins"] != result["our_plugins_activated"]:
        raise RuntimeError(f"the extension was not loaded and activated: {result}")
    elif not result["notification_requests"]:
        raise RuntimeError(f"the extension made no /api/notifications request: {result}")


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"runs": runs}
    for kind, results in runs.items():
        times = [r["ms"] for r in results]
        summary[kind] = {
            "loads": len(times),
            "median_ms": statistics.median(times),
            "p90_ms": percentile(times, 0.9),
            "min_ms": min(times),
            "max_ms": max(times),
        }
    summary["plugins"] = runs["with"][0]["our_plugins"] if runs["with"] else []
    summary["ratio_median"] = summary["with"]["median_ms"] / summary["without"]["median_ms"]
    summary["ratio_p90"] = summary["with"]["p90_ms"] / summary["without"]["p90_ms"]
    summary["goal"] = GOAL
    summary["met"] = summary["ratio_median"] <= GOAL
    return summary


def report(summary: dict[str, Any]) -> None:
    w, wo = summary["with"], summary["without"]
    print()
    print(f"JupyterLab load of /lab/tree/{NOTEBOOK} (navigation -> first cell editor visible")
    print("and app restored), fresh browser context each, one server, alternating:")
    print(f"  {'':8} {'loads':>5} {'median ms':>10} {'p90 ms':>8} {'min ms':>8} {'max ms':>8}")
    for name, s in (("without", wo), ("with", w)):
        print(
            f"  {name:8} {s['loads']:>5} {s['median_ms']:>10.0f} {s['p90_ms']:>8.0f} "
            f"{s['min_ms']:>8.0f} {s['max_ms']:>8.0f}"
        )
    met = "met" if summary["met"] else "NOT MET"
    print(
        f"  ratio with/without: median {summary['ratio_median']:.3f}, p90 "
        f"{summary['ratio_p90']:.3f}; goal: median ratio <= {GOAL:.2f} (under 10% more): {met}"
    )
    print(f"  our plugins loaded in 'with': {', '.join(summary['plugins'])}; none in 'without'")
    print(f"  results: {servers.write_results('lab_load', summary)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=10, help="timed loads of each (default 10)")
    args = parser.parse_args()
    report(run(args.loads))


if __name__ == "__main__":
    main()
