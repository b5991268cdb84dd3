"""bench/sim_validate_stats.py: per-window aggregation and the sandbox-vs-simulator errors, on hand-made runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bench.sim_validate_stats import (
    Series,
    Window,
    cold_starts,
    compare,
    first_scale_up,
    p95,
    replica_seconds,
    request_windows,
)
from hypothesis import given, settings
from hypothesis import strategies as st

INF = math.inf


def series(desired: list[int], ready: list[int] | None = None) -> Series:
    """One sample a second from t=0."""
    return Series(tuple(float(i) for i in range(len(desired))), tuple(desired), tuple(ready or desired))


def window(end: float, p95_ms: float | None, desired: int, ready: int | None = None) -> Window:
    return Window(end_s=end, offered_rate=1.0, p95_ms=p95_ms, errors=0, desired=desired,
                  ready=desired if ready is None else ready)


def test_request_windows_bins_latency_by_completion_and_rate_by_arrival() -> None:
    # Two requests arrive in window 0; the second completes in window 1 (4.5 s + 1 s); one fails in window 1.
    arrival = np.array([1.0, 4.5, 6.0])
    latency = np.array([100.0, 1000.0, INF])
    out = request_windows(arrival, latency, series([1] * 7 + [2] * 3), duration_s=10.0, window_s=5.0)
    assert [w.offered_rate for w in out] == [pytest.approx(0.4), pytest.approx(0.2)]
    assert out[0].p95_ms == pytest.approx(100.0)
    assert out[1].p95_ms == pytest.approx(1000.0)
    assert [w.errors for w in out] == [0, 1]
    assert [(w.desired, w.ready) for w in out] == [(1, 1), (2, 2)]  # replicas at each window's end (5 s, 10 s)


def test_window_without_completions_has_no_p95() -> None:
    out = request_windows(np.array([0.5]), np.array([INF]), series([1]), duration_s=5.0)
    assert out[0].p95_ms is None and out[0].errors == 1


def test_p95_matches_numpy_linear() -> None:
    assert p95([]) is None
    assert p95(list(range(1, 101))) == pytest.approx(95.05)


@pytest.mark.parametrize(("desired", "ready", "expected"), [
    pytest.param([1, 2, 2, 2, 2], [1, 1, 1, 2, 2], [2.0], id="one-up"),
    pytest.param([1, 3, 3, 3, 3], [1, 1, 2, 2, 3], [1.0, 3.0], id="two-at-once-timed-each"),
    pytest.param([1, 2, 1, 1], [1, 1, 1, 1], [], id="cancelled-by-scale-down"),
    pytest.param([1, 2, 2], [1, 1, 1], [], id="never-ready"),
    pytest.param([2, 2, 1, 1], [2, 2, 1, 1], [], id="down-only"),
])
def test_cold_starts(desired: list[int], ready: list[int], expected: list[float]) -> None:
    assert cold_starts(series(desired, ready)) == expected


def test_replica_seconds_holds_each_sample_and_clips() -> None:
    assert replica_seconds(series([1, 1, 3, 3]), duration_s=4.0) == pytest.approx(1 + 1 + 3 + 3)
    assert replica_seconds(series([1, 1, 3, 3]), duration_s=2.5) == pytest.approx(1 + 1 + 1.5)
    before = Series((-2.0, -1.0, 0.5), (5, 2, 4), (5, 2, 4))  # a sample before the load start counts from 0
    assert replica_seconds(before, duration_s=1.0) == pytest.approx(2 * 0.5 + 4 * 0.5)


def test_first_scale_up() -> None:
    assert first_scale_up(series([1, 1, 2, 1])) == 2.0
    assert first_scale_up(series([2, 1, 2])) is None


def test_compare_errors() -> None:
    sb = [window(5, 100.0, 1), window(10, 200.0, 2), window(15, None, 2)]
    sim = [window(5, 110.0, 1), window(10, 100.0, 3), window(15, 90.0, 3, 2)]
    e = compare(sb, sim, series([1, 1, 2, 2]), series([1, 2, 2, 3]), duration_s=4.0)
    assert e.windows == 3 and e.p95_windows == 2
    assert e.replica_mae == pytest.approx(2 / 3)
    assert e.ready_mae == pytest.approx(1 / 3)
    assert e.p95_median_abs_ms == pytest.approx((10 + 100) / 2)
    assert e.p95_median_abs_pct == pytest.approx((10 + 50) / 2)
    assert e.p95_median_signed_ms == pytest.approx((10 - 100) / 2)
    assert (e.sandbox_replica_s, e.sim_replica_s) == (6.0, 8.0)
    assert e.replica_s_ratio == pytest.approx(8 / 6)
    assert (e.sandbox_first_scale_up_s, e.sim_first_scale_up_s) == (2.0, 1.0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=30))
def test_identical_sides_have_zero_error(desired: list[int]) -> None:
    s = series(desired)
    w = [window(5.0 * (i + 1), 50.0 + d, d) for i, d in enumerate(desired)]
    e = compare(w, w, s, s, duration_s=float(len(desired)))
    assert e.replica_mae == 0 and e.ready_mae == 0 and e.p95_median_abs_ms == 0
    assert e.replica_s_ratio == pytest.approx(1.0)
