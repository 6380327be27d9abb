"""ipywidgets in stock JupyterLab with server-side execution (issue 18).

Two browser contexts are two people on one notebook; cells run from JupyterLab run on our
server (`--DatastoreApp.server_side_execution=True`), and the widgets they display must be
live widgets in every window: in the one that ran the cell, in one already open, in one that
opens later or reloads; a value changed in one window shows in the other and in the kernel.

JupyterLab renders a widget only in a trusted cell (else the text repr, "IntSlider(...)"):
the notebooks here are not signed, the server trusts the cells it runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import pytest
from notebooks import read_notebook
from playwright.sync_api import Browser, Locator, expect
from test_jupyterlab import (
    LOAD_TIMEOUT,
    SYNC_TIMEOUT,
    Tab,
    browser_tabs,
    lab_server,
    settle,
    wait_until,
)

pytestmark = pytest.mark.browser

RUN_TIMEOUT = 30_000  # ms: a cell run on the server to its output in a window (cold kernel)
NOTEBOOK = "widgets.ipynb"
SLIDER = "import ipywidgets as w\ns = w.IntSlider(value=3, description='S')\ns"
SLIDER_TEXT = "IntSlider(value=3, description='S')"
# What JupyterLab shows instead of a live widget: the text repr of an untrusted cell, a
# model the page's widget manager does not have, a view still waiting for its model.
FALLBACK = re.compile(r"IntSlider\(|VBox\(|HBox\(|Output\(|model not found|Loading widget")


def write_widgets_notebook(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        }
    )
    nb.cells = [nbformat.v4.new_code_cell(s, id=f"c{n}") for n, s in enumerate(sources, 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def start(make_server: Any, tmp_path: Path, *sources: str, execution: bool = True) -> Any:
    """A server over a notebook of these cells, its kernel session started (JupyterLab joins
    it)."""
    root = tmp_path / "root"
    write_widgets_notebook(root / NOTEBOOK, *sources)
    server = lab_server(
        make_server, tmp_path, root, f"--DatastoreApp.server_side_execution={execution}"
    )
    body = {"path": NOTEBOOK, "type": "notebook", "name": NOTEBOOK, "kernel": {"name": "python3"}}
    server.kernel_id = server.request("POST", "/api/sessions", body)["kernel"]["id"]
    return server


def lab_url(server: Any) -> str:
    return f"{server.url}/lab/tree/{NOTEBOOK}?token={server.token}"


class WidgetTab(Tab):
    """A person's JupyterLab window on the notebook."""

    def open(self, server: Any) -> WidgetTab:
        self.page.goto(lab_url(server), wait_until="commit")
        self.wait_loaded()
        return self

    def wait_loaded(self) -> None:
        expect(self.cells.first.locator(".cm-content")).not_to_be_empty(timeout=LOAD_TIMEOUT)
        # The page joined the notebook's kernel session (its widget manager's comms).
        expect(self.page.locator(".jp-Toolbar-kernelName").first).to_contain_text(
            "Python 3", timeout=LOAD_TIMEOUT
        )
        expect(self.idle).to_have_count(1, timeout=LOAD_TIMEOUT)

    @property
    def idle(self) -> Locator:
        """The notebook's kernel status, when idle."""
        return self.page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")

    def status(self) -> str | None:
        """The kernel status JupyterLab shows for the notebook."""
        indicator = self.page.locator(".jp-Notebook-ExecutionIndicator")
        return indicator.get_attribute("data-status")

    def reload(self) -> None:
        self.page.reload(wait_until="commit")
        self.wait_loaded()

    def cell(self, index: int) -> Locator:
        return self.cells.nth(index)

    def output(self, index: int) -> Locator:
        """The cell's own outputs (not those inside an Output widget)."""
        return self.cell(index).locator(
            ".jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output"
        )

    def output_area(self, index: int) -> Locator:
        return self.cell(index).locator(".jp-Cell-outputArea")

    def run(self, index: int) -> None:
        """Run cell `index` as a person does: click into it, Shift+Enter."""
        self.cell(index).locator(".cm-content").click()
        self.page.keyboard.press("Shift+Enter")

    def prompt(self, index: int) -> Locator:
        return self.cell(index).locator(".jp-InputArea-prompt")

    def sliders(self, index: int) -> Locator:
        return self.output(index).locator(".widget-slider")

    def readout(self, index: int, nth: int = 0) -> Locator:
        return self.sliders(index).nth(nth).locator(".widget-readout")

    def expect_live_widgets(self, index: int, sliders: int, timeout: float = RUN_TIMEOUT) -> None:
        """Cell `index` shows `sliders` live sliders, and nothing JupyterLab shows instead."""
        widgets = self.output(index).locator(".jupyter-widgets").first
        expect(widgets, f"{self.name}: cell {index} shows a widget").to_be_visible(timeout=timeout)
        expect(self.sliders(index), f"{self.name}: sliders in cell {index}").to_have_count(
            sliders, timeout=timeout
        )
        expect(
            self.output_area(index), f"{self.name}: a fallback instead of widgets"
        ).not_to_have_text(FALLBACK, timeout=timeout)
        for n in range(sliders):
            expect(self.sliders(index).nth(n)).to_be_visible()

    def expect_captured(self, index: int, widget: str, text: str, timeout: float) -> None:
        """An Output widget in cell `index` (`widget`: its selector) shows `text`, and the
        cell's outputs are the widget alone (nothing captured went to the cell)."""
        captured = self.output(index).locator(widget)
        expect(captured, f"{self.name}: what the widget captured").to_have_text(
            text, timeout=timeout
        )
        expect(
            self.output(index), f"{self.name}: the cell's outputs: the widget alone"
        ).to_have_count(1)

    def nudge(self, index: int, presses: int, nth: int = 0) -> None:
        """Move a slider as a person does with the keyboard: focus its handle, arrow right."""
        handle = self.sliders(index).nth(nth).locator(".noUi-handle")
        handle.focus()
        for _ in range(presses):
            handle.press("ArrowRight")


@contextmanager
def windows(server: Any, *names: str) -> Iterator[tuple[Browser, list[WidgetTab]]]:
    """A browser with one window (a context of its own) per name, each open on the notebook
    (all loading at once)."""
    with browser_tabs(server) as (browser, tabs):
        opened = [WidgetTab(browser, name) for name in names]
        tabs += opened
        for tab in opened:
            tab.page.goto(lab_url(server), wait_until="commit")
        for tab in opened:
            tab.wait_loaded()
        yield browser, opened
        for tab in tabs:
            assert not tab.errors, f"{tab.name}'s page raised: {tab.errors}"
        settle(tabs)


def add_window(browser: Browser, server: Any, tabs: list[WidgetTab], name: str) -> WidgetTab:
    tab = WidgetTab(browser, name)
    tabs.append(tab)
    return tab.open(server)


def test_a_slider_run_on_the_server_is_live_in_both_windows(make_server, tmp_path) -> None:
    server = start(make_server, tmp_path, SLIDER, "print(s.value)")
    with windows(server, "one", "two") as (_, (one, two)):
        one.run(0)
        for tab in (one, two):
            tab.expect_live_widgets(0, sliders=1)
            expect(tab.readout(0)).to_have_text("3")
        one.nudge(0, 2)
        expect(one.readout(0)).to_have_text("5", timeout=SYNC_TIMEOUT)
        expect(two.readout(0), "window two shows the new value").to_have_text(
            "5", timeout=SYNC_TIMEOUT
        )
        one.run(1)
        for tab in (one, two):
            expect(tab.output(1), "the kernel has the new value").to_have_text(
                "5", timeout=RUN_TIMEOUT
            )
        # And back: window two moves it, window one follows.
        two.nudge(0, 1)
        expect(one.readout(0)).to_have_text("6", timeout=SYNC_TIMEOUT)


def kernel_has(server: Any, value: int) -> None:
    """Wait until the kernel has echoed the slider's value (the server's widget state follows
    the kernel's echoes). A window shows a value at once, and ipywidgets sends the kernel one
    change at a time: a run started before the last one reached the kernel would see the one
    before, in JupyterLab's own runs too."""

    def echoed() -> bool:
        state = server.get(f"/api/datastore/widgets?path={NOTEBOOK}")["state"]
        return any(m["state"].get("value") == value for m in state.values())

    wait_until(echoed, SYNC_TIMEOUT / 1000, f"the kernel to have the value {value}")


def test_a_late_window_and_a_reloaded_one_show_the_live_slider(make_server, tmp_path) -> None:
    server = start(make_server, tmp_path, SLIDER, "print(s.value)")
    with windows(server, "one") as (browser, tabs):
        (one,) = tabs
        one.run(0)
        one.expect_live_widgets(0, sliders=1)
        one.nudge(0, 4)
        expect(one.readout(0)).to_have_text("7", timeout=SYNC_TIMEOUT)
        kernel_has(server, 7)
        one.run(1)  # the kernel has 7 before the late window opens
        expect(one.output(1)).to_have_text("7", timeout=RUN_TIMEOUT)

        late = add_window(browser, server, tabs, "late")
        late.expect_live_widgets(0, sliders=1)
        expect(late.readout(0), "the late window shows the current value").to_have_text("7")
        settle(tabs)  # see settle: a page leaving mid-write makes jupyter_server log a traceback
        one.reload()
        one.expect_live_widgets(0, sliders=1)
        expect(one.readout(0), "the reloaded window shows the current value").to_have_text("7")
        # Both are live: the reloaded window moves it, the late one follows.
        one.nudge(0, 1)
        expect(late.readout(0)).to_have_text("8", timeout=SYNC_TIMEOUT)


NESTED = (
    "import ipywidgets as w\n"
    "w.VBox([w.HBox([w.IntSlider(value=i) for i in range(4)]) for _ in range(5)])"
)


def test_nested_boxes_rerun_render_every_slider_each_time(make_server, tmp_path) -> None:
    server = start(make_server, tmp_path, NESTED)
    with windows(server, "one", "two") as (_, (one, two)):
        for run in range(1, 6):
            one.run(0)
            for tab in (one, two):
                expect(tab.prompt(0), f"{tab.name}: run {run} done").to_have_text(
                    f"[{run}]:", timeout=RUN_TIMEOUT
                )
                tab.expect_live_widgets(0, sliders=20)
                expect(tab.output(0).locator(".widget-hbox")).to_have_count(5)
                expect(tab.readout(0, 7)).to_have_text("3")  # the 4th of the 2nd row


INTERACT = "from ipywidgets import interact\n@interact(x=(0, 10))\ndef f(x=5):\n    print(x * 2)"
OUTPUT = 'import ipywidgets as w\nout = w.Output()\ndisplay(out)\nwith out:\n    print("inside")'


def test_interact_and_output_widgets(make_server, tmp_path) -> None:
    """What an Output widget captures (interact prints into one) shows inside the widget,
    as when JupyterLab runs the cell itself, and not as the cell's own output."""
    server = start(make_server, tmp_path, INTERACT, OUTPUT)
    with windows(server, "one", "two") as (_, (one, two)):
        one.run(0)
        for tab in (one, two):
            tab.expect_live_widgets(0, sliders=1)
            expect(tab.readout(0)).to_have_text("5")
            tab.expect_captured(0, ".widget-interact .widget-output", "10", SYNC_TIMEOUT)
        one.nudge(0, 1)
        for tab in (one, two):
            captured = tab.output(0).locator(".widget-interact .widget-output")
            expect(captured, f"{tab.name}: f(6)").to_have_text("12", timeout=SYNC_TIMEOUT)
        one.run(1)
        for tab in (one, two):
            tab.expect_captured(1, ".widget-output", "inside", RUN_TIMEOUT)
            expect(tab.output_area(1)).not_to_have_text(FALLBACK)


TQDM = (
    "from tqdm.notebook import tqdm\nimport time\nfor i in tqdm(range(20)):\n    time.sleep(0.25)"
)


def test_a_tqdm_bar_advances_and_survives_a_reload(make_server, tmp_path) -> None:
    server = start(make_server, tmp_path, TQDM)
    with windows(server, "one") as (_, (one,)):
        one.run(0)
        area = one.output_area(0)
        expect(area.locator(".widget-hprogress"), "a progress bar").to_be_visible(
            timeout=RUN_TIMEOUT
        )
        # It advances (the label counts "n/20").
        expect(area).to_contain_text(re.compile(r"\b([3-9]|1\d)/20\b"), timeout=SYNC_TIMEOUT)
        one.reload()  # mid-run
        area = one.output_area(0)
        expect(area.locator(".widget-hprogress"), "the bar after the reload").to_be_visible(
            timeout=RUN_TIMEOUT
        )
        expect(area, "the bar reaches the end").to_contain_text("20/20", timeout=RUN_TIMEOUT)
        expect(area).not_to_have_text(FALLBACK)
        bar = area.locator(".widget-hprogress .progress-bar")
        expect(bar).to_have_attribute("style", re.compile(r"width: 100%"))


def test_after_a_kernel_restart_no_window_has_a_working_stale_slider(make_server, tmp_path) -> None:
    """After a restart the kernel has no widget: no window may show a slider one can move
    (it would change nothing); each shows the widget's text in its place. Window one restarts
    the kernel from JupyterLab's Kernel menu. Screenshots of both windows go to tmp_path."""
    server = start(make_server, tmp_path, SLIDER)
    with windows(server, "one", "two") as (_, (one, two)):
        one.run(0)
        for tab in (one, two):
            tab.expect_live_widgets(0, sliders=1)
        one.page.get_by_role("menuitem", name="Kernel", exact=True).click()
        one.page.get_by_role("menuitem", name=re.compile(r"^Restart Kernel…")).first.click()
        one.page.locator(".jp-Dialog .jp-mod-accept").click()
        expect(one.page.locator(".jp-Dialog")).to_have_count(0)
        expect(one.idle, "one: the kernel idle again").to_have_count(1, timeout=RUN_TIMEOUT)
        stale: list[str] = []
        for tab in (one, two):
            # Gone, or there but disabled: not a slider that moves and goes nowhere.
            live = tab.output(0).locator(".widget-slider:not(.mod-disabled) .noUi-handle")
            try:
                expect(live).to_have_count(0, timeout=SYNC_TIMEOUT)
            except AssertionError:
                stale.append(tab.name)
            tab.page.screenshot(path=str(tmp_path / f"after-restart-{tab.name}.png"))
        if stale:
            one.nudge(0, 2)  # what a person then gets: it moves, in this window alone?
            moved = one.readout(0).inner_text(), two.readout(0).inner_text()
            status = [tab.status() for tab in (one, two)]
            raise AssertionError(
                f"after the restart, windows {stale} still show a working slider (nudged in "
                f"one: one shows {moved[0]}, two shows {moved[1]}; kernel status one, two: "
                f"{status}); screenshots: {tmp_path}"
            )
        # In its place, the widget's text (what the server writes in place of the widgets
        # of a restarted kernel), as a notebook shows a widget it cannot render.
        for tab in (one, two):
            try:
                expect(tab.output(0)).to_have_text(SLIDER_TEXT, timeout=SYNC_TIMEOUT)
            except AssertionError as error:
                saved = read_notebook(tmp_path / "root" / NOTEBOOK)["cells"][0]["outputs"]
                raise AssertionError(
                    f"{tab.name} does not show the slider's text in its place; the file's "
                    f"outputs: {saved}; screenshots: {tmp_path}"
                ) from error


def test_a_window_open_on_an_untrusted_cell_renders_its_run_live(make_server, tmp_path) -> None:
    """A notebook saved with a widget output and not signed opens untrusted: the text repr.
    Run on the server, the cell becomes trusted, and a window that already had it open
    renders the new slider live, with no reload (JupyterLab reads trust once per cell; our
    extension follows it)."""
    root = tmp_path / "root"
    write_widgets_notebook(root / NOTEBOOK, SLIDER)
    nb = nbformat.read(root / NOTEBOOK, as_version=4)
    view = {"version_major": 2, "version_minor": 0, "model_id": "0" * 32}
    nb.cells[0].outputs = [
        nbformat.v4.new_output(
            "execute_result",
            data={"application/vnd.jupyter.widget-view+json": view, "text/plain": SLIDER_TEXT},
            execution_count=1,
        )
    ]
    nbformat.write(nb, root / NOTEBOOK)
    server = lab_server(make_server, tmp_path, root, "--DatastoreApp.server_side_execution=True")
    body = {"path": NOTEBOOK, "type": "notebook", "name": NOTEBOOK, "kernel": {"name": "python3"}}
    server.request("POST", "/api/sessions", body)
    with windows(server, "one", "two") as (_, (one, two)):
        for tab in (one, two):
            expect(tab.output(0), "untrusted: the text repr").to_have_text(SLIDER_TEXT)
        one.run(0)
        for tab in (one, two):
            tab.expect_live_widgets(0, sliders=1)
