"""The compaction plan, on made-up rows and times: which rows merge into one."""

from __future__ import annotations

from jupyter_datastore.store.base import Retention
from jupyter_datastore.store.compaction import plan

HOUR = 3600.0
KEEP_A_DAY = Retention(history=24 * HOUR, step=60)


def rows(*times: float) -> list[tuple[int, float]]:
    return [(seq, time) for seq, time in enumerate(times, start=1)]


def test_rows_beyond_the_history_merge_into_one_and_within_it_one_per_step() -> None:
    now = 100 * HOUR
    old = [now - 48 * HOUR + i for i in range(5)]  # two days ago: beyond the history
    minute_a = [now - HOUR + i for i in range(3)]  # one minute, an hour ago
    minute_b = [now - HOUR + 60 + i for i in range(2)]  # the next minute
    lone = [now - 30 * 60]
    assert plan(rows(*old, *minute_a, *minute_b, *lone), set(), KEEP_A_DAY, now) == [
        (1, 5),
        (6, 8),
        (9, 10),
    ]


def test_the_step_under_way_is_left_alone() -> None:
    now = 100 * HOUR + 30  # half a minute into a step
    assert plan(rows(now - 20, now - 10, now - 1), set(), KEEP_A_DAY, now) == []
    assert plan(rows(now - 90, now - 80, now - 10, now - 5), set(), KEEP_A_DAY, now) == [(1, 2)]


def test_a_saved_boundary_is_never_merged_away() -> None:
    now = 100 * HOUR
    times = [now - 48 * HOUR + i for i in range(6)]
    assert plan(rows(*times), {3}, KEEP_A_DAY, now) == [(1, 3), (4, 6)]
    assert plan(rows(*times), {1, 6}, KEEP_A_DAY, now) == [(2, 6)]


def test_no_history_merges_everything_done() -> None:
    now = 100 * HOUR
    assert plan(rows(now - 5, now - 3, now - 1), set(), Retention(history=0), now) == [(1, 3)]
    assert plan(rows(now - 1), set(), Retention(history=0), now) == []


def test_a_clock_that_went_back_does_not_merge_future_rows() -> None:
    now = 100 * HOUR
    assert plan(rows(now + 100, now + 200), set(), KEEP_A_DAY, now) == []
