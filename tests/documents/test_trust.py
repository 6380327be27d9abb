"""Trust in a notebook's Y document, with pycrdt documents alone (documents/trust.py)."""

from __future__ import annotations

from typing import Any

from pycrdt import Array, Doc, Map, Text

from jupyter_datastore.documents import notebook
from jupyter_datastore.documents.trust import Notary, TrustScreen, all_trusted, marked, unsafe

HTML = {"output_type": "display_data", "data": {"text/html": "<b>x</b>"}, "metadata": {}}
STREAM = {"output_type": "stream", "name": "stdout", "text": "hi\n"}


def cell(cell_id: str, outputs: list[dict[str, Any]], **metadata: Any) -> dict[str, Any]:
    return {
        "id": cell_id,
        "cell_type": "code",
        "source": "x",
        "metadata": dict(metadata),
        "outputs": outputs,
        "execution_count": None,
    }


def content(*cells: dict[str, Any]) -> dict[str, Any]:
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def ydoc(nb: dict[str, Any]) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    notebook.apply(doc, nb)
    return doc


def trusted_flags(doc: Doc[Any]) -> list[Any]:
    return [ycell["metadata"].get("trusted") for ycell in doc.get("cells", type=Array)]


def test_only_displays_and_results_with_data_need_trust() -> None:
    assert unsafe(cell("a", [HTML]))
    assert not unsafe(cell("a", [STREAM]))
    assert not unsafe(cell("a", []))
    assert not unsafe(cell("a", [{"output_type": "display_data", "metadata": {}}]))


def test_loading_marks_cells_by_signature_or_safety_and_leaves_the_content_alone() -> None:
    loaded = content(cell("html", [HTML]), cell("text", [STREAM]))
    unsigned = marked(loaded, signed=False)
    assert [c["metadata"]["trusted"] for c in unsigned["cells"]] == [False, True]
    signed = marked(loaded, signed=True)
    assert [c["metadata"]["trusted"] for c in signed["cells"]] == [True, True]
    assert loaded["cells"][0]["metadata"] == {}  # the file's content is not changed


def test_a_notebook_is_signed_only_when_every_active_output_is_trusted() -> None:
    def signable(nb: dict[str, Any]) -> bool:
        doc = ydoc(nb)
        return all_trusted(doc, notebook.read(doc))

    assert not signable(content(cell("a", [STREAM])))  # nothing to sign
    assert signable(content(cell("a", [HTML], trusted=True), cell("b", [STREAM])))
    assert not signable(content(cell("a", [HTML], trusted=True), cell("b", [HTML])))


def test_a_notary_checks_and_signs(tmp_path) -> None:
    from nbformat.sign import NotebookNotary

    with NotebookNotary(data_dir=str(tmp_path)) as notary:
        holder = type("Manager", (), {"notary": notary})()
        signer = Notary(holder)
        nb = content(cell("a", [HTML]))
        assert not signer.signed(nb)
        signer.sign(nb)
        assert signer.signed(nb)
        assert not signer.signed(content(cell("a", [HTML, HTML])))
    assert not Notary(object()).signed(nb)  # a contents manager with no notary


def screened_change(doc: Doc[Any], change: Any) -> None:
    """`change` made by someone the screen looks at (as a room applies a peer's update)."""
    peer: Doc[Any] = Doc()
    peer.apply_update(doc.get_update())
    before = peer.get_state()
    change(peer)
    with TrustScreen(lambda user: False).watching(doc):
        doc.apply_update(peer.get_update(before))


def test_a_screened_change_cannot_trust_a_cell_or_slip_outputs_into_a_trusted_one() -> None:
    doc = ydoc(content(cell("a", [], trusted=False), cell("b", [HTML], trusted=True)))

    def trust_a(peer: Doc[Any]) -> None:
        peer.get("cells", type=Array)[0]["metadata"]["trusted"] = True

    screened_change(doc, trust_a)
    assert trusted_flags(doc) == [False, True]

    def edit_source_of_b(peer: Doc[Any]) -> None:
        source = peer.get("cells", type=Array)[1]["source"]
        source += " + 1"

    screened_change(doc, edit_source_of_b)
    assert trusted_flags(doc) == [False, True]  # editing code keeps the outputs' trust

    def output_into_b(peer: Doc[Any]) -> None:
        peer.get("cells", type=Array)[1]["outputs"].append(Map(HTML))

    screened_change(doc, output_into_b)
    assert trusted_flags(doc) == [False, False]

    def insert_trusted(peer: Doc[Any]) -> None:
        inserted = {**cell("c", [HTML]), "source": Text("x"), "metadata": Map({"trusted": True})}
        peer.get("cells", type=Array).append(Map({**inserted, "outputs": Array([Map(HTML)])}))

    screened_change(doc, insert_trusted)
    assert trusted_flags(doc) == [False, False, False]
