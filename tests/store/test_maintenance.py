"""The store's own maintenance (stats, compaction, row checks) on both backends, in process:
what `jupyter-datastore store stats|compact|verify` reports (tests/test_store_cli.py runs the
command itself)."""

from __future__ import annotations

from jupyter_datastore.store import maintenance
from jupyter_datastore.store.base import Retention

from .conftest import Clock, MakeStore
from .test_store import append_all, started, updates

DAY = 24 * 3600.0


async def test_stats_compaction_and_checks_of_a_store(make_store: MakeStore, clock: Clock) -> None:
    store = await started(make_store)
    await append_all(store, "json:notebook:a", updates(30, width=20))
    await append_all(store, "text:file:b", updates(3))
    await store.mark_saving("text:file:b", 2)
    stats = await maintenance.stats(store, top=1)
    assert stats["documents"] == 2 and stats["rows"] == 33
    assert [d["name"] for d in stats["largest"]] == ["json:notebook:a"]
    assert stats["session_id"] == store.session_id

    clock.now += 30 * DAY
    steps: list[tuple[str, str]] = []
    done = await maintenance.compact_all(
        store, Retention(history=DAY), lambda n, s: steps.append((n, s))
    )
    # One row each, but b keeps the boundary its save refers to (after row 2): three.
    assert done.rows_before == 33 and done.rows_after == 3 and not done.failed
    assert {name for name, _ in steps} == {"json:notebook:a", "text:file:b"}

    problems = await maintenance.verify(store, lambda n, s: None)
    assert problems == []
    seen: list[str] = []
    found = await maintenance.verify(
        store, lambda n, s: None, lambda name, doc: seen.append(name) or ["looks odd"]
    )
    assert sorted(seen) == ["json:notebook:a", "text:file:b"]
    assert {str(p) for p in found} == {"json:notebook:a: looks odd", "text:file:b: looks odd"}


async def test_rows_that_are_not_yjs_are_reported(make_store: MakeStore) -> None:
    store = await started(make_store)
    await append_all(store, "json:notebook:bad", [updates(1)[0], b"\xff\xff not yjs"])
    problems = await maintenance.verify(store, lambda n, s: None)
    assert len(problems) == 1 and "not a valid Yjs update" in str(problems[0])
