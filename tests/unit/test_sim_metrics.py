"""What a simulated run is judged by (batchpilot.sim.metrics): hand-made records with exact answers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpilot.sim.metrics import FLOAT_FIELDS, RunMetrics, run_metrics, summarize, t_975
from batchpilot.sim.types import RunRecord

INF = math.inf
SLO_MS = 100.0


def record(latency: list[float], arrival: list[float] | None = None, percentile: int = 95,
           gpu_seconds: float = 7200.0, replicas: list[int] | None = None) -> RunRecord:
    """A run of len(latency) requests, one a second unless arrivals are given, SLO 100 ms."""
    times = [float(i) for i in range(len(latency))] if arrival is None else arrival
    return RunRecord(policy="p", setting="s", trace="t", seed=0, slo_ms=SLO_MS, percentile=percentile,
                     duration_s=max(times, default=0.0) + 1.0, arrival=np.array(times, dtype=np.float64),
                     latency_ms=np.array(latency, dtype=np.float64), timeline_replicas=replicas or [],
                     gpu_seconds=gpu_seconds, scale_events=3, cold_starts=2, reloads=1)


TEN = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 100.0, 150.0, 300.0, INF]
"""10 requests: 7 within the SLO (100 ms itself counts), 2 late, 1 failed."""


def test_ten_requests_two_late_one_failed() -> None:
    metrics = run_metrics(record(TEN, replicas=[1, 2, 3]))
    assert metrics == RunMetrics(
        attainment=0.7, window_attainment=0.0, p_latency_ms=INF, gpu_hours=2.0, goodput_per_gpu_hour=3.5,
        failed=1, scale_events=3, cold_starts=2, reloads=1, mean_replicas=2.0)


@pytest.mark.parametrize(("percentile", "latency"), [
    pytest.param(50, 50.0, id="p50-is-the-5th-of-10"),
    pytest.param(80, 150.0, id="p80-is-the-8th"),
    pytest.param(90, 300.0, id="p90-is-the-9th"),
    pytest.param(95, INF, id="p95-is-the-10th-a-failure"),
])
def test_percentile_is_nearest_rank(percentile: int, latency: float) -> None:
    assert run_metrics(record(TEN, percentile=percentile)).p_latency_ms == latency


# two 1-minute windows of 20 requests each; the first all fast, the second with some bad ones
@pytest.mark.parametrize(("bad", "window_attainment"), [
    pytest.param([], 1.0, id="both-meet"),
    pytest.param([150.0], 1.0, id="one-late-of-20-is-p95-ok"),
    pytest.param([INF], 1.0, id="one-failed-of-20-is-p95-ok"),
    pytest.param([150.0, 150.0], 0.5, id="two-late-of-20-miss-p95"),
    pytest.param([150.0, INF], 0.5, id="late-and-failed-miss-p95"),
])
def test_window_attainment_on_two_windows(bad: list[float], window_attainment: float) -> None:
    arrival = [i * 3.0 for i in range(40)]  # 0..57 s then 60..117 s
    latency = [10.0] * (40 - len(bad)) + bad
    metrics = run_metrics(record(latency, arrival=arrival))
    assert metrics.window_attainment == window_attainment
    assert metrics.attainment == pytest.approx((40 - len(bad)) / 40)


def test_windows_without_arrivals_are_left_out() -> None:
    arrival = [1.0, 2.0, 200.0, 201.0]  # minutes 0 and 3 only
    assert run_metrics(record([10.0, 10.0, 10.0, 500.0], arrival=arrival)).window_attainment == 0.5


def test_nan_latency_counts_as_a_failure() -> None:
    metrics = run_metrics(record([10.0, math.nan]))
    assert (metrics.failed, metrics.attainment, metrics.p_latency_ms) == (1, 0.5, INF)


@pytest.mark.parametrize(("rec", "expected"), [
    pytest.param(record([]), {"attainment": 1.0, "window_attainment": 1.0, "p_latency_ms": 0.0,
                              "mean_replicas": 0.0}, id="no-requests"),
    pytest.param(record([10.0], gpu_seconds=0.0), {"gpu_hours": 0.0, "goodput_per_gpu_hour": 0.0},
                 id="no-gpu-time"),
])
def test_degenerate_runs(rec: RunRecord, expected: dict[str, float]) -> None:
    metrics = dataclasses.asdict(run_metrics(rec))
    assert {name: metrics[name] for name in expected} == expected


def test_latencies_must_match_arrivals() -> None:
    rec = record([10.0, 20.0])
    rec.arrival = np.array([0.0])
    with pytest.raises(ValueError, match="1 arrivals but 2 latencies"):
        run_metrics(rec)


@settings(max_examples=60, deadline=None)
@given(latency=st.lists(st.one_of(st.floats(0.0, 300.0), st.just(INF)), min_size=1, max_size=60),
       percentile=st.sampled_from([50, 90, 95, 99]))
def test_percentile_meets_the_slo_exactly_when_enough_do(latency: list[float], percentile: int) -> None:
    # all arrivals in one window, so the window and the whole run agree too
    metrics = run_metrics(record(latency, arrival=[0.0] * len(latency), percentile=percentile))
    meets = metrics.attainment >= percentile / 100 - 1e-12
    assert (metrics.p_latency_ms <= SLO_MS) == meets
    assert metrics.window_attainment == (1.0 if meets else 0.0)
    assert 0.0 <= metrics.attainment <= 1.0
    assert metrics.goodput_per_gpu_hour == pytest.approx(metrics.attainment * len(latency) / 2.0)
    assert metrics.failed == latency.count(INF)


# --- over seeds ---------------------------------------------------------------------------------------------

def metrics_with(attainment: float) -> RunMetrics:
    return dataclasses.replace(run_metrics(record(TEN, replicas=[2])), attainment=attainment)


def test_summary_uses_student_t_with_n_minus_one_dof() -> None:
    summary = summarize([metrics_with(a) for a in (0.7, 0.8, 0.9)])  # mean 0.8, sd 0.1
    assert summary["attainment"].mean == pytest.approx(0.8)
    assert summary["attainment"].half_width == pytest.approx(4.302652730 * 0.1 / math.sqrt(3))
    assert summary["gpu_hours"] == (2.0, 0.0)  # a NamedTuple: unpacks as (mean, half-width)


def test_summary_covers_the_float_metrics_only() -> None:
    summary = summarize([metrics_with(0.5), metrics_with(0.6)])
    floats = {"attainment", "window_attainment", "p_latency_ms", "gpu_hours", "goodput_per_gpu_hour",
              "mean_replicas"}
    assert set(summary) == set(FLOAT_FIELDS) == floats


def test_one_seed_has_no_interval_and_none_is_an_error() -> None:
    summary = summarize([metrics_with(0.5)])
    assert summary["attainment"].mean == 0.5 and math.isnan(summary["attainment"].half_width)
    with pytest.raises(ValueError, match="at least one run"):
        summarize([])


@pytest.mark.parametrize(("dof", "t"), [
    pytest.param(1, 12.706204736, id="1"),
    pytest.param(4, 2.776445105, id="4"),
    pytest.param(9, 2.262157163, id="9"),
    pytest.param(29, 2.045229642, id="29"),
    pytest.param(30, 2.042272456, id="30"),
    pytest.param(40, 2.021075390, id="40-expansion"),
    pytest.param(120, 1.979930405, id="120-expansion"),
])
def test_t_quantiles(dof: int, t: float) -> None:
    assert t_975(dof) == pytest.approx(t, abs=1e-6)


def test_t_quantiles_fall_towards_the_normal() -> None:
    values = [t_975(dof) for dof in range(1, 200)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] > 1.959963984540054
    with pytest.raises(ValueError, match=">= 1"):
        t_975(0)


def test_negative_infinite_latency_counts_as_a_failure() -> None:
    metrics = run_metrics(record([10.0, -INF]))
    assert (metrics.failed, metrics.attainment, metrics.p_latency_ms) == (1, 0.5, INF)
