"""Notebook content: parsing files, building Y documents, writing .ipynb, granular merges."""

from __future__ import annotations

import copy
import json
from typing import Any

import nbformat
import pytest
from jupyter_ydoc import YNotebook
from notebooks import code_cell, markdown_cell, notebook
from pycrdt import Array, Doc

from jupyter_datastore.documents import notebook as nb
from jupyter_datastore.documents.kinds import KINDS
from jupyter_datastore.errors import DocumentError

KIND = KINDS[("json", "notebook")]


def rich_notebook() -> dict[str, Any]:
    stream = {"output_type": "stream", "name": "stdout", "text": ["line 1\n", "line 2\n"]}
    result = {
        "output_type": "execute_result",
        "execution_count": 3,
        "metadata": {},
        "data": {"text/plain": ["a\n", "b"], "application/json": {"k": [1, 2.5, None]}},
    }
    image = {
        "output_type": "display_data",
        "metadata": {"w": 2},
        "data": {"image/svg+xml": "<svg>\n</svg>"},
    }
    error = {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["t1", "t2"]}
    cells = [
        code_cell("import os\nprint('é 😀')", "c1", [stream, result, image, error]),
        markdown_cell("# Title\n\nText", "m1"),
        {
            "cell_type": "raw",
            "id": "r1",
            "metadata": {"format": "text/x"},
            "source": ["raw\n", "two"],
        },
        {
            "cell_type": "markdown",
            "id": "m2",
            "metadata": {},
            "source": "![a](attachment:a.png)",
            "attachments": {"a.png": {"image/png": "iVBORw0KGgo="}},
        },
    ]
    cells[0]["execution_count"] = 3
    cells[0]["metadata"] = {"tags": ["t"], "collapsed": False, "scrolled": 1.5}
    return notebook(*cells)


def built(content: dict[str, Any]) -> Doc:
    doc: Doc = Doc()
    update, state_vector = KIND.build(content, "nb.ipynb")
    doc.apply_update(update)
    assert doc.get_state() == state_vector  # the one the room takes on trust
    return doc


def test_building_gives_jupyter_ydocs_schema_and_reads_back_the_same() -> None:
    content = KIND.parse(rich_notebook())
    doc = built(content)
    assert KIND.read(doc) == content
    # jupyter_ydoc reads it as the same notebook (the schema JupyterLab's front end uses).
    assert YNotebook(doc).get() == json.loads(json.dumps(content))
    cell = doc.get("cells", type=Array)[0]
    assert cell["execution_state"] == "idle"
    assert str(cell["outputs"][0]["text"]) == "line 1\nline 2\n"


def test_building_is_deterministic() -> None:
    content = KIND.parse(rich_notebook())
    assert KIND.build(content, "a") == KIND.build(copy.deepcopy(content), "a")


def test_dumps_writes_exactly_what_nbformat_writes() -> None:
    for source in (rich_notebook(), notebook(code_cell("", "only"))):
        content = KIND.parse(source)
        expected = nbformat.writes(nbformat.from_dict(copy.deepcopy(content)))
        assert nb.dumps(content) == expected + "\n"


def test_cell_ids_are_dropped_on_save_before_nbformat_4_5() -> None:
    old = notebook(code_cell("x", "c1"))
    old["nbformat_minor"] = 4
    del old["cells"][0]["id"]
    content = KIND.parse(old)
    assert content["cells"][0]["id"]  # an id while in the room...
    assert "id" not in json.loads(nb.dumps(content))["cells"][0]  # ...but not in the file


def test_parse_drops_trusted_and_fixes_missing_and_duplicate_ids_deterministically() -> None:
    source = notebook(code_cell("a", "same"), code_cell("b", "same"), code_cell("c", "x"))
    source["cells"][0]["metadata"]["trusted"] = True
    del source["cells"][2]["id"]
    first, second = KIND.parse(source), KIND.parse(copy.deepcopy(source))
    ids = [c["id"] for c in first["cells"]]
    assert ids == [c["id"] for c in second["cells"]]
    assert len(set(ids)) == 3 and ids[0] == "same"
    assert "trusted" not in first["cells"][0]["metadata"]


def test_old_nbformat_is_upgraded() -> None:
    v3 = nbformat.v3.new_notebook(
        worksheets=[nbformat.v3.new_worksheet(cells=[nbformat.v3.new_code_cell(input="1+1")])]
    )
    content = KIND.parse(json.loads(nbformat.writes(v3, version=3)))
    assert content["nbformat"] == 4 and content["cells"][0]["source"] == "1+1"


@pytest.mark.parametrize(
    "bad", ["[1, 2]", '{"cells": 3}', '{"cells": [{"cell_type": "nope"}]}', "{no"]
)
def test_broken_notebooks_are_a_document_error(bad: str) -> None:
    with pytest.raises(DocumentError):
        KIND.parse(bad)


def merged(base: dict[str, Any], room_edit: Any, disk: dict[str, Any]) -> dict[str, Any]:
    """The three-way merge a session does: disk's change applied on top of the room's edit."""
    base_update = KIND.build(KIND.parse(base), "nb.ipynb").update
    room: Doc = Doc()
    room.apply_update(base_update)
    room_edit(room)
    fork: Doc = Doc()
    fork.apply_update(base_update)
    before = fork.get_state()
    KIND.apply(fork, KIND.parse(disk))
    room.apply_update(fork.get_update(before))
    return dict(KIND.read(room))


def append(doc: Doc, index: int, text: str) -> None:
    source = doc.get("cells", type=Array)[index]["source"]
    source.insert(len(str(source).encode()), text)


def test_merge_keeps_both_sides_changes_to_different_cells() -> None:
    base = notebook(code_cell("one", "c1"), code_cell("two", "c2"))
    disk = copy.deepcopy(base)
    disk["cells"][1]["source"] = "two, changed on disk"
    disk["cells"].insert(0, markdown_cell("new first cell", "m0"))
    result = merged(base, lambda room: append(room, 0, " and more"), disk)
    assert [c["source"] for c in result["cells"]] == [
        "new first cell",
        "one and more",
        "two, changed on disk",
    ]
    assert [c["id"] for c in result["cells"]] == ["m0", "c1", "c2"]


def test_merge_keeps_both_sides_changes_to_one_cell() -> None:
    base = notebook(code_cell("line 1\nline 2\nline 3\n", "c1"))
    disk = copy.deepcopy(base)
    disk["cells"][0]["source"] = "line 1\nline 2 (disk)\nline 3\n"
    result = merged(base, lambda room: append(room, 0, "line 4 (room)\n"), disk)
    assert result["cells"][0]["source"] == "line 1\nline 2 (disk)\nline 3\nline 4 (room)\n"


def test_merge_of_a_deleted_cell_and_outputs_and_metadata() -> None:
    base = notebook(code_cell("keep", "c1"), code_cell("drop", "c2"))
    disk = copy.deepcopy(base)
    del disk["cells"][1]
    disk["cells"][0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "out\n"}]
    disk["cells"][0]["metadata"] = {"tags": ["new"]}
    disk["metadata"]["language_info"] = {"name": "python"}
    result = merged(base, lambda room: None, disk)
    assert result == KIND.parse(disk)
