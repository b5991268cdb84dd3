"""The steady-state part of the reconcile-at-scale bench: tick lateness from watch stamps (pure parts)."""

from __future__ import annotations

from bench.steady import lateness, nearest_rank


def test_lateness_is_the_gap_between_a_services_ticks_less_the_interval_inside_the_window() -> None:
    ticks = {"a": [0.0, 15.0, 31.0, 46.0], "b": [2.0, 20.0], "c": [100.0]}
    assert sorted(lateness(ticks, 1.0, 50.0, 15.0)) == [0.0, 1.0, 3.0]  # a: 15->31 +1, 31->46 0; b: 2->20 +3; c: one tick
    assert sorted(lateness(ticks, 0.0, 50.0, 15.0)) == [0.0, 0.0, 1.0, 3.0]


def test_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert (nearest_rank(values, 50), nearest_rank(values, 95), nearest_rank([], 95)) == (10.0, 19.0, None)
