"""ipywidgets in JupyterLab with server-side execution: sync latency and time to render.

    .venv/bin/python benchmarks/run.py --only widgets [--quick]
    .venv/bin/python benchmarks/widgets.py [--changes 50] [--renders 20]

Stock JupyterLab with our extension in headless Chromium on our server; the notebook is not
signed (the server trusts the cells it runs, JupyterLab those it runs itself).

(a) Slider sync, server-side execution on: a cell displaying an IntSlider is run from window
one; two windows (two browser contexts, two people) show it. Window one then sets the value
through its widget manager, as the slider's view does when dragged (`model.set('value', n);
model.save_changes()`), `changes` times, one at a time; a MutationObserver in window two
notes when its slider's readout shows the value. Both times are the pages' wall clock
(`performance.timeOrigin + performance.now()`, one machine). ipywidgets sends one change at
a time, the next once the kernel is idle after it; each change is set once the previous
is through, so that it is timed alone. Goal: p99 <= 200 ms.

(b) Run to render: from Shift+Enter (a keydown listener in the page) to a new slider view in
the cell's output (a MutationObserver), re-running the same cell `renders` times, on two
servers of ours started alike but for `--DatastoreApp.server_side_execution` (True: our
server runs it; False: JupyterLab runs it itself), alternating one run on each; one
unmeasured warm-up run each. Also timed: to the cell's new output element (JupyterLab shows
"Loading widget..." in it until the widget manager has the model; which text it showed
first goes into the JSON). Goal: server-side no slower (ratio of the medians <= 1.0).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from typing import Any

import nbformat

import panel

from servers import TOKEN, Server, ours, write_results

SYNC_GOAL_MS = 200.0
RATIO_GOAL = 1.0
LOAD_TIMEOUT = 120_000  # ms
NOTEBOOK = "widgets.ipynb"
SLIDER = "import ipywidgets as w\ns = w.IntSlider(value=3, description='S')\ns"
PAGE_CONFIG = {
    **panel.PAGE_CONFIG,
    "exposeAppInBrowser": True,  # window.jupyterapp: reach the widget model
}
CHROMIUM_ARGS = panel.CHROMIUM_ARGS
EDITOR = ".jp-Notebook .jp-Cell .jp-InputArea-editor .cm-content"
IDLE = ".jp-Notebook-ExecutionIndicator[data-status='idle']"
SLIDERS = ".jp-Notebook .jp-Cell .jp-Cell-outputArea .widget-slider"

# Window two: note the first time the slider's readout shows each value.
WATCH = """() => {
  const seen = (window.__seen = {});
  const now = () => performance.timeOrigin + performance.now();
  const check = () => {
    const readout = document.querySelector('.jp-Cell-outputArea .widget-slider .widget-readout');
    if (readout && !(readout.textContent in seen)) seen[readout.textContent] = now();
  };
  new MutationObserver(check).observe(document.querySelector('.jp-Notebook'), {
    subtree: true, childList: true, characterData: true,
  });
}"""
# Window one: set the slider's value through the widget manager, as its view does.
SET_VALUE = """async (value) => {
  const cell = window.jupyterapp.shell.currentWidget.content.widgets[0];
  if (!window.__model) {
    const output = cell.model.outputs.get(0).data['application/vnd.jupyter.widget-view+json'];
    const child = cell.outputArea.widgets[0];
    const renderer = child.widgets.find(w => w._manager);
    const manager = await renderer._manager.promise;
    window.__model = await manager.get_model(output.model_id);
  }
  // ipywidgets sends one change at a time (more wait until the kernel is idle after it):
  // the clock starts once the previous change is through, so that each is timed alone.
  while (window.__model._pending_msgs > 0) await new Promise(r => setTimeout(r, 1));
  const started = performance.timeOrigin + performance.now();
  window.__model.set('value', value);
  window.__model.save_changes();
  return started;
}"""
# From the Shift+Enter keydown: to an output element, and to a slider view, not there then.
RENDER_PROBE = """() => {
  const area = '.jp-Notebook .jp-Cell .jp-Cell-outputArea';
  const find = (what) => document.querySelector(`${area} ${what}`);
  const slider = () => find('.widget-slider');
  const output = () => find('.jp-OutputArea-output');
  window.__render = {};
  window.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && event.shiftKey) {
      window.__render = {start: performance.now(), old: slider(), oldOutput: output()};
    }
  }, true);
  new MutationObserver(() => {
    const r = window.__render;
    if (r.start === undefined || r.end !== undefined) return;
    const out = output();
    if (r.output === undefined && out && out !== r.oldOutput) {
      r.output = performance.now();
      r.first = `${out.dataset.mimeType || out.className}: ${out.textContent.slice(0, 60)}`;
    }
    const view = slider();
    if (view && view !== r.old && view.isConnected) r.end = performance.now();
  }).observe(document.body, {subtree: true, childList: true});
  // The slider's comm_open: when its frame came over the window's kernel socket, and when
  // JupyterLab emits it (ipywidgets has made the model).
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const isOpen = (msg) => msg.header.msg_type === 'comm_open';
  kernel.anyMessage.connect((_, {msg, direction}) => {
    const r = window.__render;
    if (direction === 'recv' && isOpen(msg) && r.commIn === undefined) r.commIn = performance.now();
  });
  kernel.iopubMessage.connect((_, msg) => {
    const r = window.__render;
    if (isOpen(msg) && r.commMade === undefined) r.commMade = performance.now();
  });
}"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def start_server(execution: bool) -> Server:
    server = ours(f"--DatastoreApp.server_side_execution={execution}")
    settings = server.home / "lab-settings"
    settings.mkdir()
    (settings / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    server.command.append(f"--LabApp.app_settings_dir={settings}")
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": kernelspec})
    notebook.cells = [nbformat.v4.new_code_cell(SLIDER, id="c1")]
    nbformat.write(notebook, server.root / NOTEBOOK)
    server.start()
    # The notebook's kernel session exists before the pages open; JupyterLab joins it.
    body = {"path": NOTEBOOK, "type": "notebook", "name": NOTEBOOK, "kernel": {"name": "python3"}}
    _post(server, "/api/sessions", body)
    return server


def _post(server: Server, path: str, body: Any) -> Any:
    import urllib.request

    request = urllib.request.Request(
        f"{server.endpoint.url}{path}",
        method="POST",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def open_window(browser: Any, server: Server) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.goto(f"{server.endpoint.url}/lab/tree/{NOTEBOOK}?token={TOKEN}", wait_until="commit")
    page.locator(EDITOR).first.wait_for(timeout=LOAD_TIMEOUT)
    page.locator(".jp-Toolbar-kernelName", has_text="Python 3").first.wait_for(timeout=LOAD_TIMEOUT)
    page.locator(IDLE).wait_for(timeout=LOAD_TIMEOUT)
    return page


def run_cell(page: Any) -> None:
    page.locator(EDITOR).first.click()
    page.keyboard.press("Shift+Enter")


def measure_sync(browser: Any, server: Server, changes: int) -> dict[str, Any]:
    one, two = open_window(browser, server), open_window(browser, server)
    run_cell(one)
    for page in (one, two):
        page.locator(SLIDERS).first.wait_for(timeout=LOAD_TIMEOUT)
    two.evaluate(WATCH)
    if changes > 90:
        raise ValueError("at most 90 changes (distinct values of the slider, 10 to 99)")
    times: list[float] = []
    for n in range(changes):
        value = 10 + n
        started = one.evaluate(SET_VALUE, value)
        two.wait_for_function(f"() => '{value}' in window.__seen", timeout=10_000, polling=5)
        times.append(two.evaluate(f"() => window.__seen['{value}']") - started)
    for page in (one, two):
        page.context.close()
    return {
        "changes": changes,
        "p50_ms": percentile(times, 0.5),
        "p99_ms": percentile(times, 0.99),
        "max_ms": max(times),
        "times_ms": times,
    }


def render_once(
    page: Any, firsts: dict[str, int], comms: list[tuple[float, float]]
) -> tuple[float, float]:
    """One re-run: the times (ms) from Shift+Enter to the cell's new output element, and to
    its slider view; to the slider's comm_open received and its model made, into `comms`."""
    count = page.evaluate("() => document.querySelectorAll('.jp-InputArea-prompt')[0].textContent")
    run_cell(page)
    page.wait_for_function(
        "() => window.__render && window.__render.end !== undefined", timeout=60_000, polling=5
    )
    r = page.evaluate("() => window.__render")
    elapsed = (float(r["output"] - r["start"]), float(r["end"] - r["start"]))
    comms.append((float(r["commIn"] - r["start"]), float(r["commMade"] - r["start"])))
    firsts.setdefault(r["first"], 0)
    firsts[r["first"]] += 1
    # The run is over (a new execution count) before the next begins.
    page.wait_for_function(
        "(before) => { const p = document.querySelectorAll('.jp-InputArea-prompt')[0];"
        " return p.textContent !== before && /\\[\\d+\\]/.test(p.textContent); }",
        arg=count,
        timeout=60_000,
    )
    page.locator(IDLE).wait_for(timeout=60_000)
    return elapsed


def measure_render(browser: Any, servers: dict[str, Server], renders: int) -> dict[str, Any]:
    pages = {kind: open_window(browser, server) for kind, server in servers.items()}
    for page in pages.values():
        page.evaluate(RENDER_PROBE)
        render_once(page, {}, [])  # warm-up: imports ipywidgets in the kernel, loads the views
    times: dict[str, list[float]] = {kind: [] for kind in servers}
    outputs: dict[str, list[float]] = {kind: [] for kind in servers}
    firsts: dict[str, dict[str, int]] = {kind: {} for kind in servers}
    comms: dict[str, list[tuple[float, float]]] = {kind: [] for kind in servers}
    order = list(servers)
    for _ in range(renders):
        for kind in order:
            output, rendered = render_once(pages[kind], firsts[kind], comms[kind])
            outputs[kind].append(output)
            times[kind].append(rendered)
        order.reverse()
    for page in pages.values():
        page.context.close()
    summary: dict[str, Any] = {}
    for kind, values in times.items():
        summary[kind] = {
            "runs": len(values),
            "p50_ms": statistics.median(values),
            "p90_ms": percentile(values, 0.9),
            "min_ms": min(values),
            "max_ms": max(values),
            "times_ms": values,
            "output_p50_ms": statistics.median(outputs[kind]),
            "output_times_ms": outputs[kind],
            "first_output_shown": firsts[kind],
            "comm_open_received_p50_ms": statistics.median(c[0] for c in comms[kind]),
            "model_made_p50_ms": statistics.median(c[1] for c in comms[kind]),
        }
    summary["ratio_p50"] = summary["server"]["p50_ms"] / summary["lab"]["p50_ms"]
    summary["ratio_p90"] = summary["server"]["p90_ms"] / summary["lab"]["p90_ms"]
    return summary


def run(changes: int = 50, renders: int = 20) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("chromium is not on PATH (e.g. Debian's /usr/bin/chromium)")
    started: dict[str, Server] = {}
    try:
        started["server"] = start_server(execution=True)
        started["lab"] = start_server(execution=False)
        for kind, server in started.items():
            print(f"widgets: {kind} runs cells; our server pid {server.pid}", flush=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                render = measure_render(browser, started, renders)
                sync = measure_sync(browser, started["server"], changes)
            finally:
                browser.close()
    finally:
        for server in started.values():
            server.cleanup()
    return {"sync": sync, "render": render}


def report(results: dict[str, Any]) -> None:
    sync, render = results["sync"], results["render"]
    print()
    print("ipywidgets slider, server-side execution: window one sets the value (model.set +")
    print("save_changes), window two's readout shows it (page wall clocks, ms):")
    met = "met" if sync["p99_ms"] <= SYNC_GOAL_MS else "NOT MET"
    print(
        f"  {sync['changes']} changes: p50 {sync['p50_ms']:.1f}, p99 {sync['p99_ms']:.1f}, "
        f"max {sync['max_ms']:.1f}; goal p99 <= {SYNC_GOAL_MS:.0f} ms: {met}"
    )
    print("Shift+Enter to the slider rendered, re-running the cell (ms):")
    print(
        f"  {'runs cells':12} {'runs':>4} {'p50':>7} {'p90':>7} {'min':>7} {'max':>7}"
        f"  {'output element p50':>18} {'comm_open p50':>13} {'model p50':>9}"
    )
    for kind, label in (("lab", "JupyterLab"), ("server", "our server")):
        r = render[kind]
        print(
            f"  {label:12} {r['runs']:>4} {r['p50_ms']:>7.1f} {r['p90_ms']:>7.1f} "
            f"{r['min_ms']:>7.1f} {r['max_ms']:>7.1f}  {r['output_p50_ms']:>18.1f} "
            f"{r['comm_open_received_p50_ms']:>13.1f} {r['model_made_p50_ms']:>9.1f}"
        )
    met = "met" if render["ratio_p50"] <= RATIO_GOAL else "NOT MET"
    print(
        f"  ratio server/JupyterLab: p50 {render['ratio_p50']:.3f}, p90 "
        f"{render['ratio_p90']:.3f}; goal p50 ratio <= {RATIO_GOAL:.1f} (no slower): {met}"
    )
    print(f"  results: {write_results('widgets', results)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=50, help="slider changes timed (50)")
    parser.add_argument("--renders", type=int, default=20, help="runs timed of each (20)")
    args = parser.parse_args()
    report(run(args.changes, args.renders))


if __name__ == "__main__":
    main()
