"""The widget states a kernel's iopub messages tell, from crafted messages."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from jupyter_datastore.execution.widgets import WidgetStates

SLIDER = {
    "_model_name": "IntSliderModel",
    "_model_module": "@jupyter-widgets/controls",
    "_model_module_version": "2.0.0",
    "value": 3,
    "description": "S",
}


def comm_open(
    comm_id: str,
    state: dict[str, Any],
    target: str = "jupyter.widget",
    buffer_paths: list[list[Any]] | None = None,
    buffers: list[bytes] | None = None,
) -> dict[str, Any]:
    return {
        "msg_type": "comm_open",
        "content": {
            "comm_id": comm_id,
            "target_name": target,
            "data": {"state": state, "buffer_paths": buffer_paths or []},
        },
        "metadata": {"version": "2.1.0"},
        "buffers": [memoryview(b) for b in buffers or []],
    }


def comm_msg(
    comm_id: str,
    state: dict[str, Any],
    method: str = "update",
    buffer_paths: list[list[Any]] | None = None,
    buffers: list[bytes] | None = None,
) -> dict[str, Any]:
    data = {"method": method, "state": state, "buffer_paths": buffer_paths or []}
    return {
        "msg_type": "comm_msg",
        "content": {"comm_id": comm_id, "data": data},
        "buffers": buffers or [],
    }


def comm_close(comm_id: str) -> dict[str, Any]:
    return {"msg_type": "comm_close", "content": {"comm_id": comm_id, "data": {}}}


def test_a_model_is_opened_updated_echoed_and_closed() -> None:
    widgets = WidgetStates()
    assert widgets.snapshot() == {"version_major": 2, "version_minor": 0, "state": {}}
    assert widgets.feed(comm_open("s1", dict(SLIDER)))
    assert widgets.snapshot()["state"] == {
        "s1": {
            "model_name": "IntSliderModel",
            "model_module": "@jupyter-widgets/controls",
            "model_module_version": "2.0.0",
            "state": SLIDER,
        }
    }
    assert widgets.feed(comm_msg("s1", {"value": 5}))
    assert widgets.feed(comm_msg("s1", {"value": 7}, method="echo_update"))
    model = widgets.model("s1")
    assert model is not None
    assert model["state"] == {**SLIDER, "value": 7}
    assert widgets.feed(comm_close("s1"))
    assert "s1" not in widgets
    assert widgets.snapshot()["state"] == {}


def test_what_is_not_a_widget_model_is_ignored() -> None:
    widgets = WidgetStates()
    assert not widgets.feed(comm_open("c1", {}, target="jupyter.widget.control"))
    assert not widgets.feed(comm_open("x", {"a": 1}, target="other.target"))
    assert not widgets.feed(comm_msg("unknown", {"value": 1}))
    assert not widgets.feed(comm_close("unknown"))
    assert not widgets.feed({"msg_type": "stream", "content": {"name": "stdout", "text": "x"}})
    widgets.feed(comm_open("s1", dict(SLIDER)))
    assert not widgets.feed(comm_msg("s1", {"value": 1}, method="custom"))
    bad_open = comm_open("s2", dict(SLIDER))
    bad_open["content"]["data"]["state"] = "not a dict"
    assert not widgets.feed(bad_open)
    assert not widgets.feed({"msg_type": "comm_msg", "content": {"comm_id": "s1", "data": 5}})
    assert len(widgets) == 1
    assert widgets.model("s1")["state"]["value"] == 3  # type: ignore[index]


def test_a_snapshot_is_a_copy() -> None:
    widgets = WidgetStates()
    widgets.feed(comm_open("s1", {**SLIDER, "nested": {"a": [1]}}))
    snapshot = widgets.snapshot()
    snapshot["state"]["s1"]["state"]["nested"]["a"].append(2)
    assert widgets.model("s1")["state"]["nested"] == {"a": [1]}  # type: ignore[index]


def test_buffers_are_base64_at_their_paths_and_listed() -> None:
    widgets = WidgetStates()
    image = {**SLIDER, "_model_name": "ImageModel", "format": "png", "layers": [None, {}]}
    widgets.feed(
        comm_open(
            "img",
            image,
            buffer_paths=[["value"], ["layers", 0], ["layers", 1, "data"]],
            buffers=[b"\x89PNG", b"\x00\x01", b"xyz"],
        )
    )
    model = widgets.model("img")
    assert model is not None
    encoded = {
        k: base64.b64encode(v).decode() for k, v in {"a": b"\x89PNG", "b": b"\x00\x01"}.items()
    }
    assert model["state"]["value"] == encoded["a"]
    assert model["state"]["layers"] == [encoded["b"], {"data": base64.b64encode(b"xyz").decode()}]
    assert model["model_name"] == "ImageModel"
    assert {tuple(b["path"]) for b in model["buffers"]} == {
        ("value",),
        ("layers", 0),
        ("layers", 1, "data"),
    }
    assert all(b["encoding"] == "base64" for b in model["buffers"])
    # An update of a key drops the buffers under it; a new buffer is listed.
    widgets.feed(comm_msg("img", {"layers": []}))
    widgets.feed(comm_msg("img", {}, buffer_paths=[["value"]], buffers=[b"GIF8"]))
    model = widgets.model("img")
    assert model is not None
    assert model["buffers"] == [
        {"path": ["value"], "data": base64.b64encode(b"GIF8").decode(), "encoding": "base64"}
    ]
    # A path that leads nowhere is left out.
    widgets.feed(comm_msg("img", {}, buffer_paths=[["nope", 3]], buffers=[b"x"]))
    assert len(widgets.model("img")["buffers"]) == 1  # type: ignore[index]


def test_reopening_a_model_replaces_it_and_clear_empties() -> None:
    widgets = WidgetStates()
    widgets.feed(comm_open("s1", dict(SLIDER)))
    widgets.feed(comm_open("s1", {**SLIDER, "value": 9}))
    assert widgets.model("s1")["state"]["value"] == 9  # type: ignore[index]
    widgets.feed(comm_open("s2", dict(SLIDER)))
    widgets.clear()
    assert len(widgets) == 0
    assert widgets.snapshot()["state"] == {}


def test_the_oldest_go_beyond_the_bounds_said_once(caplog: pytest.LogCaptureFixture) -> None:
    widgets = WidgetStates(max_models=3, max_bytes=10_000)
    with caplog.at_level(logging.WARNING, logger="jupyter_datastore.execution.widgets"):
        for n in range(5):
            widgets.feed(comm_open(f"m{n}", dict(SLIDER)))
    assert list(widgets.snapshot()["state"]) == ["m2", "m3", "m4"]
    assert len([r for r in caplog.records if "bounds" in r.getMessage()]) == 1
    # By size: a big update pushes the oldest out, the total stays under the cap.
    widgets.feed(comm_msg("m4", {"description": "x" * 9_750}))
    assert "m4" in widgets
    assert "m2" not in widgets
    total = sum(len(json.dumps(m["state"])) for m in widgets.snapshot()["state"].values())
    assert total <= 10_000
    assert len([r for r in caplog.records if "bounds" in r.getMessage()]) == 1
