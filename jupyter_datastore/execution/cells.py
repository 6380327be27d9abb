"""Writing an execution into a notebook's Y document, as JupyterLab would show it.

Everything here runs inside `Room.document()`, synchronously, on Y types of the jupyter_ydoc
schema: a code cell is a Y.Map with `outputs` (a Y.Array of Y.Maps; a stream's `text` is a
Y.Text), `execution_count`, `execution_state` ("running" shows `[*]`) and `metadata`.

`CellOutputs` keeps a plain mirror of the outputs it wrote, so that a stream chunk becomes
one small edit of the stream's Y.Text (progress bars rewrite their line, nothing else) and
`update_display_data` finds its output without reading the document back. When someone else
changes the outputs meanwhile (a user clears them), the mirror is rebuilt from the document.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from pycrdt import Array, Doc, Map, Text

from ..documents.notebook import new_output
from .outputs import OutputBudget, StreamText, output_size

__all__ = [
    "EXECUTOR",
    "CellFinder",
    "CellOutputs",
    "find_cells",
    "mark_idle",
    "mark_running",
    "output_of",
    "widget_views_to_text",
]

EXECUTOR = "executor"
"""The origin of the changes executions make in documents."""

_OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error")
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


def find_cells(doc: Doc[Any], cell_ids: Collection[str]) -> dict[str, tuple[int, Map[Any]]]:
    """The cells with these ids and their positions, in one pass over the notebook."""
    wanted, found = set(cell_ids), {}
    for index, cell in enumerate(doc.get("cells", type=Array)):
        if isinstance(cell, Map):
            cell_id = cell.get("id")
            if cell_id in wanted:
                found[cell_id] = (index, cell)
    return found


class CellFinder:
    """Finds a cell by id, remembering where it was last time (cells rarely move)."""

    def __init__(self, cell_id: str, hint: int = 0) -> None:
        self.cell_id = cell_id
        self._index = hint

    def find(self, doc: Doc[Any]) -> Map[Any] | None:
        cells = doc.get("cells", type=Array)
        if self._index < len(cells):
            cell = cells[self._index]
            if isinstance(cell, Map) and cell.get("id") == self.cell_id:
                return cell
        for index, cell in enumerate(cells):
            if isinstance(cell, Map) and cell.get("id") == self.cell_id:
                self._index = index
                return cell
        return None


def mark_running(cell: Map[Any]) -> None:
    """What JupyterLab does when a cell is run: outputs and count cleared, the cell trusted,
    `[*]` shown."""
    outputs = cell.get("outputs")
    if isinstance(outputs, Array):
        if len(outputs):
            outputs.clear()
    else:
        cell["outputs"] = Array()
    if cell.get("execution_count") is not None:
        cell["execution_count"] = None
    metadata = cell.get("metadata")
    if not isinstance(metadata, Map):
        metadata = cell["metadata"] = Map()
    if "execution" in metadata:
        del metadata["execution"]
    if metadata.get("trusted") is not True:
        metadata["trusted"] = True  # its outputs are the run's (documents/trust.py)
    if "input_request" in cell:
        del cell["input_request"]
    cell["execution_state"] = "running"


def mark_idle(
    cell: Map[Any] | None, execution_count: int | None = None, timing: dict[str, str] | None = None
) -> None:
    """The end of a run: the count, the timing, `[*]` gone, in one transaction."""
    if cell is None:
        return
    if execution_count is not None:
        cell["execution_count"] = execution_count
    if timing:
        metadata = cell.get("metadata")
        if not isinstance(metadata, Map):
            metadata = cell["metadata"] = Map()
        metadata["execution"] = dict(timing)
    if "input_request" in cell:
        del cell["input_request"]
    if cell.get("execution_state") != "idle":
        cell["execution_state"] = "idle"


def widget_views_to_text(doc: Doc[Any], model_ids: Collection[str]) -> int:
    """Outputs that show one of these widget models (gone with their kernel) keep only
    their other forms (the text the kernel sent along): no window shows a widget that
    moves and reaches nothing, and none waits for a model that will never come. How many
    outputs changed."""
    changed = 0
    for ycell in doc.get("cells", type=Array):
        outputs = ycell.get("outputs") if isinstance(ycell, Map) else None
        if not isinstance(outputs, Array):
            continue
        for index, output in enumerate(list(outputs)):
            data = output.get("data") if isinstance(output, Map) else None
            view = data.get(WIDGET_VIEW_MIME) if isinstance(data, dict) else None
            if isinstance(view, dict) and view.get("model_id") in model_ids:
                plain = output.to_py()  # before it leaves the document, with all its keys
                rest = {k: v for k, v in plain["data"].items() if k != WIDGET_VIEW_MIME}
                del outputs[index]
                outputs.insert(index, new_output({**plain, "data": rest}))
                changed += 1
    return changed


def set_input_request(cell: Map[Any] | None, request: dict[str, Any] | None) -> None:
    """Show or withdraw a pending `input()` prompt (`prompt`, `password`, `execution_id`)."""
    if cell is None:
        return
    if request is None:
        if "input_request" in cell:
            del cell["input_request"]
    else:
        cell["input_request"] = request


def output_of(msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    """The nbformat 4 output of an iopub message (as `nbformat.v4.output_from_msg` makes
    it, without its NotebookNode overhead, which shows when a cell prints a lot)."""
    if msg_type == "stream":
        name, text = str(content.get("name", "stdout")), str(content.get("text", ""))
        return {"output_type": "stream", "name": name, "text": text}
    if msg_type == "error":
        return {
            "output_type": "error",
            "ename": str(content.get("ename", "")),
            "evalue": str(content.get("evalue", "")),
            "traceback": [str(line) for line in content.get("traceback", [])],
        }
    output: dict[str, Any] = {
        "output_type": msg_type,
        "data": dict(content.get("data", {})),
        "metadata": dict(content.get("metadata", {})),
    }
    if msg_type == "execute_result":
        output["execution_count"] = content.get("execution_count")
    return output


class CellOutputs:
    """The outputs of one run of one cell: the messages in, Y edits out, within a byte limit."""

    def __init__(self, limit: int) -> None:
        self.outputs: list[dict[str, Any]] = []
        self.display_ids: list[str | None] = []
        self.budget = OutputBudget(limit)
        self._stream: StreamText | None = None  # the last output, when it is a stream
        self._sizes: list[int] = []
        self._notice: int | None = None  # index of the truncation notice
        self._clear_pending = False

    def result(self) -> list[dict[str, Any]]:
        """The outputs as nbformat has them."""
        outputs = list(self.outputs)
        if self._stream is not None and outputs:
            outputs[-1] = {**outputs[-1], "text": self._stream.text}
        return outputs

    def keep_displays_only(self) -> None:
        """After the run: keep what a later display update needs, drop the rest's content."""
        self._seal_stream()
        self.outputs = [
            output if shown else {"output_type": output.get("output_type")}
            for output, shown in zip(self.outputs, self.display_ids, strict=True)
        ]

    # --- messages ---

    def handle(self, cell: Map[Any] | None, msg_type: str, content: dict[str, Any]) -> None:
        """Apply one iopub message of this run (`cell` None: the cell is gone, mirror only)."""
        youts = self._outputs_of(cell)
        if msg_type == "clear_output":
            if content.get("wait"):
                self._clear_pending = True
            else:
                self._clear(youts)
            return
        if msg_type not in _OUTPUT_TYPES:
            return
        if self._clear_pending:
            self._clear(youts)
        if msg_type == "stream":
            self._stream_text(youts, str(content.get("name", "stdout")), str(content["text"]))
            return
        output = output_of(msg_type, content)
        display_id = (content.get("transient") or {}).get("display_id")
        self._append(youts, output, display_id if isinstance(display_id, str) else None)

    def update_display(
        self, cell: Map[Any] | None, display_id: str, content: dict[str, Any]
    ) -> bool:
        """`update_display_data`: replace this run's outputs shown under `display_id`."""
        youts = self._outputs_of(cell)
        found = False
        for index, shown in enumerate(self.display_ids):
            if shown != display_id:
                continue
            found = True
            old = self.outputs[index]
            output = {
                **old,
                "data": content.get("data", {}),
                "metadata": content.get("metadata", {}),
            }
            self.outputs[index] = output
            size = output_size(output)
            self.budget.release(self._sizes[index])
            self.budget.admit(size)
            self._sizes[index] = size
            if youts is not None:
                youts[index] = new_output(output)
        return found

    # --- the writes ---

    def _seal_stream(self) -> None:
        """The last output stops being the open stream: its mirror gets its final text."""
        if self._stream is not None and self.outputs:
            self.outputs[-1] = {**self.outputs[-1], "text": self._stream.text}
        self._stream = None

    def _outputs_of(self, cell: Map[Any] | None) -> Array[Any] | None:
        if cell is None:
            return None
        youts = cell.get("outputs")
        if not isinstance(youts, Array):
            youts = cell["outputs"] = Array()
        if len(youts) != len(self.outputs):
            self._resync(youts)
        return youts

    def _resync(self, youts: Array[Any]) -> None:
        """Someone else changed the outputs: continue from what the document holds."""
        self.outputs = [o for o in json.loads(str(youts)) if isinstance(o, dict)]
        self.display_ids = [None] * len(self.outputs)
        self._sizes = [output_size(o) for o in self.outputs]
        self._notice = None
        self._stream = None
        last = self.outputs[-1] if self.outputs else None
        if last is not None and last.get("output_type") == "stream":
            self._stream = StreamText(str(last.get("text", "")))

    def _clear(self, youts: Array[Any] | None) -> None:
        self._clear_pending = False
        self.outputs, self.display_ids, self._sizes = [], [], []
        self._stream, self._notice = None, None
        self.budget.reset()
        if youts is not None and len(youts):
            youts.clear()

    def _append(
        self, youts: Array[Any] | None, output: dict[str, Any], display_id: str | None
    ) -> None:
        size = output_size(output)
        if not self.budget.admit(size):
            self._mark_truncated(youts)
            return
        self._add(youts, output, display_id, size)

    def _add(
        self,
        youts: Array[Any] | None,
        output: dict[str, Any],
        display_id: str | None = None,
        size: int = 0,
    ) -> None:
        """A new last output, in the mirror and in the document."""
        self._seal_stream()
        self.outputs.append(output)
        self.display_ids.append(display_id)
        self._sizes.append(size)
        if youts is not None:
            youts.append(new_output(output))

    def _stream_text(self, youts: Array[Any] | None, name: str, chunk: str) -> None:
        last = self.outputs[-1] if self.outputs else None
        if self._stream is None or last is None or last.get("name") != name:
            if self.budget.exceeded:
                self.budget.drop(len(chunk.encode()))
                self._mark_truncated(youts)
                return
            self._add(youts, {"output_type": "stream", "name": name, "text": ""})
            self._stream = StreamText()
        stream = self._stream
        room = self.budget.room()
        data = chunk.encode()
        if len(data) > room:
            self.budget.drop(len(data) - room)
            chunk = data[:room].decode(errors="ignore")
        before = stream.size
        edit = stream.feed(chunk) if chunk else None
        grown = stream.size - before
        if grown >= 0:
            self.budget.admit(grown)
        else:
            self.budget.release(-grown)
        self._sizes[-1] = stream.size
        if edit is not None and youts is not None:
            text = youts[len(self.outputs) - 1]["text"]
            if isinstance(text, Text):
                if edit.delete:
                    del text[edit.start : edit.start + edit.delete]
                if edit.insert:
                    text.insert(edit.start, edit.insert)
        if self.budget.exceeded:
            self._mark_truncated(youts)

    def _mark_truncated(self, youts: Array[Any] | None) -> None:
        """Show, as the last output, how much was cut and why (kept up to date)."""
        notice = {"output_type": "stream", "name": "stderr", "text": self.budget.notice() + "\n"}
        if self._notice is None:
            self._notice = len(self.outputs)
            self._add(youts, notice)
        elif self.outputs[self._notice] != notice:
            self.outputs[self._notice] = notice
            if youts is not None:
                youts[self._notice] = new_output(notice)
