"""Compute time per batch size since the last tick, from Triton's cumulative per-pod batch statistics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchpilot.control.batch_stats import aggregate, concurrency, executions_since, reloaded, since_last_tick

MS = 1_000_000  # ns


def test_the_difference_of_two_snapshots_is_what_ran_in_between() -> None:
    before = {1: (10, 10 * 47 * MS), 8: (4, 4 * 43 * MS)}
    after = {1: (16, 16 * 47 * MS), 8: (4, 4 * 43 * MS), 32: (3, 3 * 44 * MS)}
    assert executions_since(before, after) == {1: (6, 6 * 47 * MS), 32: (3, 3 * 44 * MS)}


def test_a_pod_seen_for_the_first_time_gives_nothing_yet() -> None:
    assert executions_since(None, {1: (500, 500 * 47 * MS)}) == {}


def test_no_traffic_gives_nothing() -> None:
    same = {1: (10, 470 * MS)}
    assert executions_since(same, same) == {}
    assert since_last_tick({"10.0.0.1": same}, {"10.0.0.1": same}) == ()
    assert since_last_tick({}, {}) == ()


@pytest.mark.parametrize(("before", "after"), [
    ({1: (100, 4700 * MS)}, {1: (7, 7 * 47 * MS)}),  # fewer executions than before
    ({1: (100, 4700 * MS), 8: (5, 215 * MS)}, {1: (120, 120 * 47 * MS)}),  # a batch size vanished
    ({1: (100, 4700 * MS)}, {1: (100, 4000 * MS)}),  # as many executions, less time
    ({1: (100, 4700 * MS)}, {}),  # reloaded, nothing ran since
])
def test_counters_that_went_back_mean_a_reload_and_count_from_zero(before: dict[int, tuple[int, int]],
                                                                   after: dict[int, tuple[int, int]]) -> None:
    assert reloaded(before, after)
    assert executions_since(before, after) == {b: d for b, d in after.items() if d[0] > 0}


def test_growing_counters_are_no_reload() -> None:
    assert not reloaded({1: (1, 47 * MS)}, {1: (2, 94 * MS), 4: (1, 41 * MS)})


def test_pods_are_weighted_by_their_executions() -> None:
    fast = {1: (30, 30 * 40 * MS)}
    slow = {1: (10, 10 * 80 * MS), 16: (5, 5 * 44 * MS)}
    (b1, ms1, n1), (b16, ms16, n16) = aggregate([fast, slow])
    assert (b1, n1, b16, n16) == (1, 40, 16, 5)
    assert ms1 == pytest.approx((30 * 40 + 10 * 80) / 40)
    assert ms16 == pytest.approx(44.0)


def test_a_service_tick_mixes_new_reloaded_and_idle_pods() -> None:
    previous = {"a": {1: (10, 10 * 47 * MS)}, "b": {2: (50, 50 * 41 * MS)}, "c": {4: (9, 9 * 41 * MS)}}
    current = {
        "a": {1: (20, 20 * 47 * MS)},  # 10 more at batch 1
        "b": {2: (5, 5 * 41 * MS)},  # reloaded: 5 since
        "c": {4: (9, 9 * 41 * MS)},  # idle
        "d": {8: (99, 99 * 43 * MS)},  # new: baseline only
    }
    assert since_last_tick(previous, current) == ((1, pytest.approx(47.0), 10), (2, pytest.approx(41.0), 5))


snapshots = st.dictionaries(st.integers(1, 64), st.tuples(st.integers(0, 10**6), st.integers(0, 10**12)),
                            max_size=6)


@given(snapshots, snapshots)
def test_since_never_reports_negative_or_empty_counts(before: dict[int, tuple[int, int]],
                                                      after: dict[int, tuple[int, int]]) -> None:
    for count, ns in executions_since(before, after).values():
        assert count > 0 and ns >= 0
    for _, ms, n in aggregate([executions_since(before, after)]):
        assert n > 0 and ms >= 0


def test_concurrency_is_compute_time_over_wall_time_per_pod() -> None:
    before = {"a": (100.0, {4: (10, 400_000_000)}), "b": (100.0, {4: (10, 400_000_000)})}
    after = {"a": (102.0, {4: (110, 4_400_000_000)}),  # 4 s of batches in 2 s: two in flight
             "b": (102.0, {4: (35, 1_400_000_000)}),   # 1 s in 2 s: one half of the time
             "c": (102.0, {4: (5, 200_000_000)})}      # new: no baseline, left out
    assert concurrency(before, after) == pytest.approx((2.0 + 0.5) / 2)
    assert concurrency({}, after) is None
    assert concurrency(after, after) is None  # no time passed
