"""Granular text edits (UTF-8 offsets), for merges and text documents."""

from __future__ import annotations

import pytest
from pycrdt import Doc, Text

from jupyter_datastore.documents.kinds import KINDS
from jupyter_datastore.documents.text import apply_text


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("", "hello"),
        ("hello", ""),
        ("a\nb\nc\n", "a\nB\nc\nd\n"),
        ("héllo wörld 😀\n", "héllo wörld 😀😀 ünïcode\n"),
        ("x" * 3000 + "\n", "y" * 3000 + "\n"),
        ("no newline", "no newline at the end"),
    ],
)
def test_apply_text_reaches_the_new_text(old: str, new: str) -> None:
    doc: Doc = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, old)
    with doc.transaction():
        apply_text(text, old, new)
    assert str(text) == new


def test_edits_are_granular_so_concurrent_edits_survive() -> None:
    base: Doc = Doc()
    base.get("t", type=Text).insert(0, "alpha beta gamma\n")
    ours: Doc = Doc()
    ours.apply_update(base.get_update())
    theirs: Doc = Doc()
    theirs.apply_update(base.get_update())
    text = ours.get("t", type=Text)
    text.insert(len(b"alpha"), " ALPHA")
    other = theirs.get("t", type=Text)
    with theirs.transaction():
        apply_text(other, str(other), "alpha beta GAMMA\n")
    ours.apply_update(theirs.get_update(ours.get_state()))
    assert str(text) == "alpha ALPHA beta GAMMA\n"


def test_text_and_blob_kinds_round_trip() -> None:
    text_kind, blob_kind = KINDS[("text", "file")], KINDS[("base64", "file")]
    doc: Doc = Doc()
    doc.apply_update(text_kind.build("one\ntwo\n", "t.txt").update)
    assert text_kind.read(doc) == "one\ntwo\n"
    text_kind.apply(doc, "one\n2\ntwo\n")
    assert text_kind.read(doc) == "one\n2\ntwo\n"
    assert text_kind.build("x", "t") == text_kind.build("x", "t")
    blob: Doc = Doc()
    blob.apply_update(blob_kind.build(b"\x00\xff", "b.bin").update)
    assert blob_kind.read(blob) == b"\x00\xff"
    assert blob_kind.parse("AP8=") == b"\x00\xff"
