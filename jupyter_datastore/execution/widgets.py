"""The state of a kernel's ipywidgets models, as the kernel's iopub messages tell it.

A pure tracker, no I/O: fed every `comm_open`, `comm_msg` and `comm_close` its kernel
publishes (`KernelRunner` does), it keeps each model of the `jupyter.widget` target by comm
id (the model id): its name, module, module version and state. `update` and `echo_update`
patches replace the top-level keys they name, as a front end applies them. Binary buffers
are kept as base64 strings at their paths in the state, and listed in `buffers` as the
widget-state schema (`application/vnd.jupyter.widget-state+json`, version 2.0) lists them;
a loader that puts buffers back (`put_buffers`) overwrites the strings with the bytes.

Bounded: at most `max_models` models and `max_bytes` of state (counted as JSON); beyond
either, the oldest models (by their `comm_open`) are dropped, with a warning logged once.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_WIDGETS",
    "MAX_WIDGET_BYTES",
    "WIDGET_STATE_MIME",
    "WIDGET_TARGET",
    "WidgetStates",
    "empty_snapshot",
]

log = logging.getLogger(__name__)

WIDGET_TARGET = "jupyter.widget"
OUTPUT_MODEL = "OutputModel"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
"""The key of the widget state in a notebook's `metadata.widgets`."""
MAX_WIDGETS = 10_000
MAX_WIDGET_BYTES = 64 * 1024 * 1024

Path = tuple[str | int, ...]


def empty_snapshot() -> dict[str, Any]:
    return {"version_major": 2, "version_minor": 0, "state": {}}


@dataclass
class _Model:
    name: str
    module: str
    module_version: str
    state: dict[str, Any]
    buffer_paths: set[Path] = field(default_factory=set)
    size: int = 0
    clear_waits: bool = False
    """An Output widget's `clear_output(wait=True)`: cleared when the next output comes."""

    def apply(self, patch: dict[str, Any], paths: list[Path], buffers: list[bytes]) -> None:
        self.buffer_paths = {p for p in self.buffer_paths if p[0] not in patch}
        self.state.update(patch)
        for path, buffer in zip(paths, buffers, strict=False):
            if _put(self.state, path, base64.b64encode(buffer).decode("ascii")):
                self.buffer_paths.add(path)
        self.name = str(self.state.get("_model_name", self.name))
        self.module = str(self.state.get("_model_module", self.module))
        self.module_version = str(self.state.get("_model_module_version", self.module_version))
        self.size = len(json.dumps(self.state, default=str))

    def entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "model_name": self.name,
            "model_module": self.module,
            "model_module_version": self.module_version,
            "state": copy.deepcopy(self.state),
        }
        if self.buffer_paths:
            entry["buffers"] = [
                {"path": list(path), "data": _get(self.state, path), "encoding": "base64"}
                for path in sorted(self.buffer_paths, key=str)
            ]
        return entry


class WidgetStates:
    def __init__(self, max_models: int = MAX_WIDGETS, max_bytes: int = MAX_WIDGET_BYTES) -> None:
        self.max_models = max_models
        self.max_bytes = max_bytes
        self._models: OrderedDict[str, _Model] = OrderedDict()
        self._output_models: dict[str, None] = {}
        """The Output widgets among them, oldest first."""
        self._bytes = 0
        self._warned = False

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models

    def feed(self, msg: dict[str, Any]) -> bool:
        """Take one iopub message; whether it changed a tracked model."""
        msg_type = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
        content = msg.get("content")
        if not isinstance(content, dict) or not isinstance(content.get("comm_id"), str):
            return False
        comm_id: str = content["comm_id"]
        if msg_type == "comm_close":
            return self._drop(comm_id)
        data = content.get("data")
        if not isinstance(data, dict):
            return False
        if msg_type == "comm_open":
            if content.get("target_name") != WIDGET_TARGET:
                return False
            return self._open(comm_id, data, msg.get("buffers") or [])
        if msg_type == "comm_msg" and data.get("method") in ("update", "echo_update"):
            model = self._models.get(comm_id)
            if model is None:
                return False
            self._patch(comm_id, model, data, msg.get("buffers") or [])
            return True
        return False

    # --- Output widgets: what a front end does when it runs the cell itself ---

    def capturing(self, msg_id: str) -> str | None:
        """The Output widget that captures the outputs of request `msg_id` (the kernel sets
        its `msg_id` inside `with out:`), or None."""
        for model_id in reversed(self._output_models):
            if self._models[model_id].state.get("msg_id") == msg_id:
                return model_id
        return None

    def capture(self, model_id: str, output: dict[str, Any] | None, wait: bool = False) -> None:
        """Add an output (nbformat's form) to an Output widget, a stream joined to the
        stream before it, as JupyterLab's output area does; `None`: clear its outputs
        (`wait`: when the next one comes)."""
        model = self._models.get(model_id)
        if model is None:
            return
        outputs = list(model.state.get("outputs") or [])
        if output is None:
            model.clear_waits = wait
            if not wait:
                outputs = []
        else:
            if model.clear_waits:
                outputs, model.clear_waits = [], False
            last = outputs[-1] if outputs else None
            if (
                output.get("output_type") == "stream"
                and isinstance(last, dict)
                and last.get("output_type") == "stream"
                and last.get("name") == output.get("name")
            ):
                outputs[-1] = {**last, "text": str(last.get("text", "")) + output["text"]}
            else:
                outputs.append(output)
        self._patch(model_id, model, {"state": {"outputs": outputs}}, [])

    def clear(self) -> set[str]:
        """Forget every model; the ids of those forgotten."""
        gone = set(self._models)
        self._models.clear()
        self._output_models.clear()
        self._bytes = 0
        return gone

    def model(self, model_id: str) -> dict[str, Any] | None:
        """One model as the snapshot shows it."""
        model = self._models.get(model_id)
        return None if model is None else model.entry()

    def snapshot(self) -> dict[str, Any]:
        """Every model, as `application/vnd.jupyter.widget-state+json` (version 2.0)."""
        state = {model_id: model.entry() for model_id, model in self._models.items()}
        return {**empty_snapshot(), "state": state}

    def _open(self, comm_id: str, data: dict[str, Any], buffers: list[Any]) -> bool:
        state = data.get("state")
        if not isinstance(state, dict):
            return False
        self._drop(comm_id)
        model = _Model(name="", module="", module_version="", state={})
        self._models[comm_id] = model
        self._patch(comm_id, model, data, buffers)
        return True

    def _patch(self, comm_id: str, model: _Model, data: dict[str, Any], buffers: list[Any]) -> None:
        patch = data.get("state")
        if not isinstance(patch, dict):
            return
        raw_paths = data.get("buffer_paths")
        paths = [tuple(p) for p in raw_paths if isinstance(p, list) and p] if raw_paths else []
        self._bytes -= model.size
        model.apply(copy.deepcopy(patch), paths, [bytes(b) for b in buffers])
        self._bytes += model.size
        if model.name == OUTPUT_MODEL:
            self._output_models[comm_id] = None
        self._bound()

    def _drop(self, comm_id: str) -> bool:
        model = self._models.pop(comm_id, None)
        self._output_models.pop(comm_id, None)
        if model is None:
            return False
        self._bytes -= model.size
        return True

    def _bound(self) -> None:
        while self._models and (
            len(self._models) > self.max_models or self._bytes > self.max_bytes
        ):
            comm_id, _ = next(iter(self._models.items()))
            self._drop(comm_id)
            if not self._warned:
                self._warned = True
                log.warning(
                    "widget states over their bounds (%d models, %d bytes): the oldest are"
                    " dropped (this is said once)",
                    self.max_models,
                    self.max_bytes,
                )


def _put(state: dict[str, Any], path: Path, value: str) -> bool:
    """Set `value` at `path` inside `state` (its containers exist, as ipywidgets leaves
    them when it takes the buffers out); False for a path that leads nowhere."""
    target: Any = state
    for key in path[:-1]:
        try:
            target = target[key]
        except (KeyError, IndexError, TypeError):
            return False
    last = path[-1]
    if isinstance(target, dict) and isinstance(last, str):
        target[last] = value
        return True
    if isinstance(target, list) and isinstance(last, int) and 0 <= last < len(target):
        target[last] = value
        return True
    return False


def _get(state: dict[str, Any], path: Path) -> Any:
    target: Any = state
    for key in path:
        target = target[key]
    return target
