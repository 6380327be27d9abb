"""A row lost in the middle of a document's rows: its successors still apply (Yjs keeps
them pending, raising nothing), so `check_rows` compares what the rows hold with what the
document integrated. Bytes alone: real pycrdt updates, no store."""

from __future__ import annotations

import time

from pycrdt import Array, Doc, Map, Text

from jupyter_datastore.store.base import StoredDocument
from jupyter_datastore.store.maintenance import check_rows


def recorded(doc: Doc, rows: list[bytes] | None = None) -> list[bytes]:
    """Every update `doc` makes from now on, appended to `rows` (one a row, as a server
    stores them)."""
    rows = [] if rows is None else rows
    doc.observe(lambda event: rows.append(event.update))
    return rows


def typed(count: int) -> tuple[Doc, list[bytes]]:
    doc: Doc = Doc()
    rows = recorded(doc)
    text = doc.get("t", type=Text)
    for i in range(count):
        text.insert(len(str(text)), f"{i},")
    return doc, rows


def numbered(rows: list[bytes]) -> StoredDocument:
    return StoredDocument(updates=list(enumerate(rows, start=1)))


def test_rows_that_all_apply_report_nothing() -> None:
    doc, rows = typed(10)
    other: Doc = Doc()  # a second client, editing after the first's changes
    other.apply_update(doc.get_update())
    recorded(other, rows)
    with other.transaction():
        other.get("t", type=Text).insert(0, "x")
        del other.get("t", type=Text)[2:5]
    wrong, made = check_rows(numbered(rows))
    assert wrong == []
    assert made is not None and str(made.get("t", type=Text)) == str(other.get("t", type=Text))
    assert check_rows(numbered([]))[0] == []


def test_a_lost_row_whose_successors_still_apply_is_reported() -> None:
    doc, rows = typed(6)  # clocks: "0," 0..1, "1," 2..3, "2," 4..5, ...
    client = doc.client_id
    lost = rows[:2] + rows[3:]  # seq 3 (clock 4..5) is gone; seq 3.. now hold "3,".."5,"
    wrong, made = check_rows(numbered(lost))
    assert made is not None and str(made.get("t", type=Text)) == "0,1,"  # silently short
    assert wrong == [
        f"6 changes of client {client} (clock 6..11) are waiting for clock 4..5 of the same "
        "client, which no row holds: a row before seq 3 (the first that did not apply in "
        "full) is lost or was overwritten"
    ]


def test_a_row_overwritten_by_an_older_one_and_two_gaps() -> None:
    doc, rows = typed(8)
    client = doc.client_id
    damaged = list(rows)
    damaged[2] = rows[1]  # seq 3 holds seq 2's update again
    del damaged[5]  # and seq 6's update (clock 10..11) is gone
    [problem] = check_rows(numbered(damaged))[0]
    assert f"8 changes of client {client} (clock 6..9, 12..15)" in problem
    assert "waiting for clock 4..5, 10..11 of the same client" in problem
    assert "a row before seq 4 " in problem


def test_changes_waiting_for_another_clients_lost_row() -> None:
    a: Doc = Doc()
    cells = a.get("cells", type=Array)
    cells.append(Map({"source": "a"}))
    first = a.get_update()  # seq 1
    b: Doc = Doc()
    b.apply_update(first)
    before = b.get_state()
    b.get("cells", type=Array).append(Map({"source": "b"}))
    lost = b.get_update(before)  # seq 2
    a.apply_update(lost)
    before = a.get_state()
    cells.append(Map({"source": "after b"}))  # its origin is b's cell
    rows = [first, a.get_update(before)]  # seq 3, now 2
    [problem] = check_rows(numbered(rows))[0]
    assert f"changes of client {a.client_id} " in problem
    assert "waiting for changes of other clients that no row holds" in problem
    assert "a row before seq 2 " in problem
    assert check_rows(numbered([first, lost, rows[1]]))[0] == []


def test_a_deletion_of_items_no_row_holds() -> None:
    # The last insert of a client is lost, and another client's later row deletes it: no
    # change waits, but the deletion stays pending (pycrdt does not expose pending deletes).
    a, rows = typed(3)
    b: Doc = Doc()
    b.apply_update(a.get_update())
    recorded(b, rows)
    del b.get("t", type=Text)[4:6]  # "2,": clock 4..5 of a
    del rows[2]
    [problem] = check_rows(numbered(rows))[0]
    assert problem == (
        f"deletions of 2 items of client {a.client_id} (clock 4..5) that no row holds, "
        "first in seq 3: a row before it is lost or was overwritten"
    )


def test_a_large_sound_document_is_checked_quickly() -> None:
    doc: Doc = Doc()
    rows = recorded(doc)
    cells = doc.get("cells", type=Array)
    for i in range(5000):
        cells.append(Map({"id": f"c{i}", "source": Text(f"print({i})"), "outputs": Array()}))
    start = time.perf_counter()
    wrong, _ = check_rows(numbered(rows))
    assert wrong == [] and time.perf_counter() - start < 5
    del rows[2500]
    start = time.perf_counter()
    [problem] = check_rows(numbered(rows))[0]
    assert "a row before seq 2501 " in problem and time.perf_counter() - start < 10
