"""Kernel messages into a Y notebook cell, without a kernel: what a reader's document shows."""

from __future__ import annotations

import json
from typing import Any

from pycrdt import Array, Doc, Map

from jupyter_datastore.documents.notebook import apply, read
from jupyter_datastore.execution.cells import CellFinder, CellOutputs, mark_idle, mark_running


def notebook_doc(*sources: str) -> Doc:
    doc: Doc = Doc()
    content = {
        "cells": [
            {
                "cell_type": "code",
                "id": f"c{i}",
                "source": source,
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
            for i, source in enumerate(sources)
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    apply(doc, content)
    return doc


def cell(doc: Doc, cell_id: str = "c0") -> Map:
    found = CellFinder(cell_id).find(doc)
    assert found is not None
    return found


def outputs(doc: Doc, cell_id: str = "c0") -> list[dict[str, Any]]:
    return list(json.loads(str(cell(doc, cell_id)["outputs"])))


def feed(doc: Doc, writer: CellOutputs, msg_type: str, content: dict[str, Any]) -> None:
    with doc.transaction():
        writer.handle(cell(doc), msg_type, content)


def stream(text: str, name: str = "stdout") -> dict[str, Any]:
    return {"name": name, "text": text}


def test_streams_merge_and_progress_bars_rewrite_their_line() -> None:
    doc, writer = notebook_doc("x"), CellOutputs(0)
    for chunk in ["start\n", "\r 10%", "\r 50%", "\r100%\n", "end\n"]:
        feed(doc, writer, "stream", stream(chunk))
    feed(doc, writer, "stream", stream("oops\n", "stderr"))
    assert outputs(doc) == [
        {"output_type": "stream", "name": "stdout", "text": "start\n100%\nend\n"},
        {"output_type": "stream", "name": "stderr", "text": "oops\n"},
    ]
    assert writer.result() == outputs(doc)


def test_clear_output_wait_clears_when_the_next_output_comes() -> None:
    doc, writer = notebook_doc("x"), CellOutputs(0)
    feed(doc, writer, "stream", stream("frame 1\n"))
    feed(doc, writer, "clear_output", {"wait": True})
    assert outputs(doc)[0]["text"] == "frame 1\n"  # still shown: no flicker
    feed(doc, writer, "stream", stream("frame 2\n"))
    assert [o["text"] for o in outputs(doc)] == ["frame 2\n"]
    feed(doc, writer, "clear_output", {"wait": False})
    assert outputs(doc) == []


def test_update_display_replaces_the_output_with_that_display_id() -> None:
    doc, writer = notebook_doc("x"), CellOutputs(0)
    shown = {"data": {"text/plain": "'a'"}, "metadata": {}, "transient": {"display_id": "d"}}
    feed(doc, writer, "display_data", shown)
    feed(doc, writer, "stream", stream("between\n"))
    with doc.transaction():
        update = {"data": {"text/plain": "'b'"}, "metadata": {}, "transient": {"display_id": "d"}}
        assert writer.update_display(cell(doc), "d", update)
        assert not writer.update_display(cell(doc), "other", update)
    assert outputs(doc)[0] == {
        "output_type": "display_data",
        "data": {"text/plain": "'b'"},
        "metadata": {},
    }
    assert outputs(doc)[1]["text"] == "between\n"


def test_a_user_clearing_outputs_mid_run_is_respected() -> None:
    doc, writer = notebook_doc("x"), CellOutputs(0)
    feed(doc, writer, "stream", stream("one\n"))
    cell(doc)["outputs"].clear()  # someone pressed "clear outputs"
    feed(doc, writer, "stream", stream("two\n"))
    assert outputs(doc) == [{"output_type": "stream", "name": "stdout", "text": "two\n"}]


def test_output_over_the_limit_is_cut_with_a_notice() -> None:
    doc, writer = notebook_doc("x"), CellOutputs(100)
    for i in range(50):
        feed(doc, writer, "stream", stream(f"line {i}\n"))
    image = {"data": {"image/png": "A" * 500}, "metadata": {}}
    feed(doc, writer, "display_data", image)
    shown = outputs(doc)
    assert shown[0]["text"].startswith("line 0\nline 1\n")
    assert len(shown[0]["text"].encode()) <= 100
    assert shown[-1]["name"] == "stderr"
    notice = shown[-1]["text"]
    assert "output truncated" in notice and "1 more output" in notice
    assert sum(1 for o in shown if o["name"] == "stderr") == 1  # one notice, kept up to date


def test_writing_to_a_deleted_cell_keeps_the_outputs_for_the_record() -> None:
    writer = CellOutputs(0)
    writer.handle(None, "stream", stream("still counted\n"))
    assert writer.result() == [
        {"output_type": "stream", "name": "stdout", "text": "still counted\n"}
    ]


def test_run_state_round_trip_never_reaches_the_file() -> None:
    doc = notebook_doc("x")
    with doc.transaction():
        mark_running(cell(doc))
        cell(doc)["input_request"] = {"prompt": "?", "password": False}
    assert cell(doc)["execution_state"] == "running"
    saved = read(doc)["cells"][0]
    assert "execution_state" not in saved and "input_request" not in saved
    with doc.transaction():
        mark_idle(cell(doc), 7, {"shell.execute_reply": "2026-01-01T00:00:00Z"})
    assert cell(doc)["execution_state"] == "idle"
    assert "input_request" not in cell(doc)
    saved = read(doc)["cells"][0]
    assert saved["execution_count"] == 7
    assert saved["metadata"]["execution"] == {"shell.execute_reply": "2026-01-01T00:00:00Z"}


def test_finder_follows_a_moved_cell() -> None:
    doc = notebook_doc("a", "b", "c")
    finder = CellFinder("c2")
    assert finder.find(doc) is not None
    cells = doc.get("cells", type=Array)
    with doc.transaction():
        moved = json.loads(str(cells[2]))
        del cells[2]
    apply(doc, {**read(doc), "cells": [moved, *read(doc)["cells"]]})
    found = finder.find(doc)
    assert found is not None and found.get("id") == "c2"


def test_outputs_are_the_ones_nbformat_makes() -> None:
    from nbformat.v4 import output_from_msg

    from jupyter_datastore.execution.cells import output_of

    messages = {
        "execute_result": {"data": {"text/plain": "2"}, "metadata": {}, "execution_count": 3},
        "display_data": {"data": {"image/png": "iVBOR"}, "metadata": {"image/png": {"width": 2}}},
        "error": {"ename": "E", "evalue": "v", "traceback": ["line 1", "line 2"]},
    }
    for msg_type, content in messages.items():
        expected = output_from_msg({"header": {"msg_type": msg_type}, "content": content})
        assert output_of(msg_type, content) == expected
