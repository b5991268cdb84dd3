"""The simulated monitoring pipeline: Prometheus' rate()/deriv() on hand-made series, and the View a Monitor builds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpilot.sim.observe import Monitor, extrapolated_rate, linear_quantile, slope
from batchpilot.sim.types import Batching, View

BATCHING = Batching(max_batch_size=8, max_queue_delay_us=1000)
SCRAPES = [5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
"""Scrape times inside the window (0, 30] that ends at the evaluation time 30 s."""


@pytest.mark.parametrize(("values", "expected"), [
    # 10/s from 0: increase 250 over the 25 s sampled, extrapolated 5 s back (to the counter's zero): 10/s.
    pytest.param([50, 100, 150, 200, 250, 300], 10.0, id="steady 10/s"),
    # The counter restarted (a reload) between 15 s and 20 s: 150 lost from view, Prometheus adds back the
    # 150 before the drop: increase 120 - 50 + 150 = 220, extrapolated by 30/25 over 30 s = 8.8/s.
    pytest.param([50, 100, 150, 20, 70, 120], 8.8, id="reset"),
    pytest.param([0, 0, 0, 0, 0, 0], 0.0, id="idle"),
])
def test_rate_matches_prometheus_by_hand(values: list[float], expected: float) -> None:
    assert extrapolated_rate(SCRAPES, values, 0.0, 30.0) == pytest.approx(expected)


def test_rate_extrapolates_half_an_interval_where_a_series_starts_late() -> None:
    # A pod first scraped at 20 s: the 20 s gap to the window's start is over 1.1 sample intervals, so the
    # increase is extrapolated half an interval (2.5 s) back, not to the window's start.
    rate = extrapolated_rate([20.0, 25.0, 30.0], [30.0, 80.0, 130.0], 0.0, 30.0)
    assert rate == pytest.approx(100.0 * (10.0 + 2.5) / 10.0 / 30.0)


def test_rate_does_not_extrapolate_a_counter_below_zero() -> None:
    # 30 counted in the 3 s before the first sample at 5 s: extrapolating 5 s back would pass zero, so 3 s.
    rate = extrapolated_rate([5.0, 10.0, 15.0, 20.0, 25.0, 30.0], [30, 80, 130, 180, 230, 280], 0.0, 30.0)
    assert rate == pytest.approx(250.0 * (25.0 + 3.0) / 25.0 / 30.0)


def test_rate_needs_two_samples() -> None:
    assert extrapolated_rate([30.0], [10.0], 0.0, 30.0) is None


@given(st.floats(0.0, 1000.0), st.floats(-1000.0, 1000.0), st.integers(2, 10))
@settings(max_examples=50, deadline=None)
def test_slope_of_a_line_is_its_slope(start: float, per_s: float, n: int) -> None:
    times = [5.0 * i for i in range(n)]
    found = slope(times, [start + per_s * t for t in times])
    assert found == pytest.approx(per_s, abs=1e-6)


@pytest.mark.parametrize("q", [0.0, 0.05, 0.5, 0.9, 0.95, 0.99, 1.0])
def test_linear_quantile_is_numpys_bit_for_bit(q: float) -> None:
    """The summary quantile the monitor computes per pod and scrape: np.quantile's answer to the last bit (the
    simulator's results must not move when it is sped up), on sizes 1..600, ties and wide ranges."""
    rng = np.random.default_rng(11)
    for n in [*range(1, 41), *rng.integers(41, 600, 60).tolist()]:
        for values in (rng.lognormal(3.0, 1.5, n), np.round(rng.uniform(0.0, 20.0, n)), np.full(n, 7.25)):
            assert linear_quantile(values, q) == float(np.quantile(values, q)), (n, q)


@given(st.lists(st.floats(0.0, 50.0), min_size=2, max_size=8))
@settings(max_examples=50, deadline=None)
def test_rate_of_a_counter_is_never_negative(steps: list[float]) -> None:
    values = list(np.cumsum(steps))
    times = [5.0 * (i + 1) for i in range(len(values))]
    rate = extrapolated_rate(times, values, 0.0, times[-1])
    assert rate is not None and rate >= 0.0


# --- the Monitor, on fake pods whose counters grow at known rates ---------------------------------------------


@dataclass
class FakeStats:
    success: int = 0
    failure: int = 0
    exec_count: int = 0
    queue_us: float = 0.0
    compute_us: float = 0.0
    per_batch: dict[int, tuple[int, float]] = field(default_factory=dict)


@dataclass
class FakePod:
    """100 req/s in batches of 4 of 8 ms (busy 200 ms/s), each request queued 2 ms; 3 queued, 4 executing."""

    stats: FakeStats = field(default_factory=FakeStats)
    queued: int = 3
    executing: int = 4
    busy_s: float = 0.0
    batch_time_s: float = 0.0

    def run(self, seconds: float) -> None:
        requests, batches = int(100 * seconds), int(25 * seconds)
        s = self.stats
        s.success += requests
        s.exec_count += batches
        s.queue_us += requests * 2000.0
        s.compute_us += requests * 8000.0
        n, ms = s.per_batch.get(4, (0, 0.0))
        s.per_batch[4] = (n + batches, ms + batches * 8.0)
        self.busy_s += 0.2 * seconds
        self.batch_time_s += 0.2 * seconds


def monitor() -> Monitor:
    return Monitor(percentile=95, scrape_s=5.0, rate_window_s=30.0, summary_window_s=60.0, stale_after_s=60.0)


def run_pods(m: Monitor, pods: dict[int, FakePod], start: int, until: int, reset_at: int | None = None) -> None:
    """Seconds start+1..until: pods run, ongoing sampled every second, a scrape every 5 s; pod 0's counters
    restart from zero at reset_at (a reload)."""
    for t in range(start + 1, until + 1):
        for pod in pods.values():
            pod.run(1.0)
        if reset_at is not None and t == reset_at:
            pods[0].stats = FakeStats()
        m.sample(pods)
        if t % 5 == 0:
            m.scrape(float(t), pods)


def view(m: Monitor, now: float, pods: dict[int, FakePod]) -> View:
    return m.view(now, replicas=len(pods), ready_replicas=len(pods), pending_pods=0, batching=BATCHING, pods=pods)


def test_view_reads_rates_means_and_gauges() -> None:
    m, pods = monitor(), {0: FakePod(), 1: FakePod()}
    m.record(0, np.linspace(31.0, 60.0, 100), np.linspace(1.0, 100.0, 100))
    run_pods(m, pods, 0, 60)
    v = view(m, 60.0, pods)
    assert v.arrival_rate == pytest.approx(200.0)
    assert v.queue_ms == pytest.approx(2.0)
    assert v.compute_ms == pytest.approx(8.0)
    assert v.avg_batch_size == pytest.approx(4.0)
    assert v.queue_compute_ratio == pytest.approx(0.25)
    assert v.gpu_utilization == pytest.approx(0.2)
    assert v.pending_requests == 6.0
    assert v.ongoing_per_replica == pytest.approx(7.0)
    assert v.latency_ms == pytest.approx(float(np.quantile(np.linspace(1.0, 100.0, 100), 0.95)))
    assert v.window_s == 30.0


def test_a_counter_reset_does_not_read_as_negative_load() -> None:
    m, pods = monitor(), {0: FakePod(), 1: FakePod()}
    run_pods(m, pods, 0, 60, reset_at=48)
    v = view(m, 60.0, pods)
    assert v.arrival_rate is not None and 150.0 < v.arrival_rate <= 200.0 + 1e-9


def test_data_lags_to_the_last_scrape() -> None:
    m, pods = monitor(), {0: FakePod()}
    run_pods(m, pods, 0, 30)
    pods[0].queued = 50  # after the last scrape: not seen until the next one
    assert view(m, 34.0, pods).pending_requests == 3.0


def test_no_pods_or_stale_scrapes_are_no_data() -> None:
    m = monitor()
    assert view(m, 10.0, {}).arrival_rate is None
    pods = {0: FakePod()}
    run_pods(m, pods, 0, 30)
    assert view(m, 30.0, pods).arrival_rate is not None
    stale = view(m, 30.0 + 61.0, pods)
    assert stale.arrival_rate is None and stale.latency_ms is None and stale.queue_ms is None


def test_latency_covers_the_summary_window_only() -> None:
    m, pods = monitor(), {0: FakePod()}
    m.record(0, np.array([1.0, 2.0]), np.array([500.0, 600.0]))
    run_pods(m, pods, 0, 60)
    assert view(m, 60.0, pods).latency_ms == pytest.approx(600.0 - 0.05 * 100.0)
    run_pods(m, pods, 60, 65)  # the completions at 1-2 s are now older than a minute
    assert view(m, 65.0, pods).latency_ms is None


def test_batch_statistics_since_the_previous_view() -> None:
    m, pods = monitor(), {0: FakePod()}
    run_pods(m, pods, 0, 15)
    first = view(m, 15.0, pods)
    assert first.batch_compute == () and first.concurrency is None  # no previous read of the pod
    for _ in range(15):
        pods[0].run(1.0)
    second = view(m, 30.0, pods)
    assert second.batch_compute == ((4, pytest.approx(8.0), 375),)
    assert second.concurrency == pytest.approx(0.2)


@dataclass
class OverloadedPod(FakePod):
    """FakePod whose queue grows by 50 requests/s: it answers 100 req/s of 150 arriving."""

    def run(self, seconds: float) -> None:
        super().run(seconds)
        self.queued += int(50 * seconds)


def test_answered_rate_is_the_success_counter_and_arrivals_add_the_queue_growth() -> None:
    m, pods = monitor(), {0: OverloadedPod(), 1: OverloadedPod()}
    run_pods(m, pods, 0, 60)
    v = view(m, 60.0, pods)
    assert v.answered_rate == pytest.approx(200.0)  # what a KEDA trigger on Triton's request counters reads
    assert v.arrival_rate == pytest.approx(300.0)  # what the operator reads: answered plus pending growth


class RejectingPod(FakePod):
    """FakePod whose queue timeout rejects 40 requests/s beside the 100 it answers."""

    def run(self, seconds: float) -> None:
        super().run(seconds)
        self.stats.failure += int(40 * seconds)


def test_rejected_requests_count_as_arrivals_and_answers() -> None:
    m, pods = monitor(), {0: RejectingPod(), 1: RejectingPod()}
    run_pods(m, pods, 0, 60)
    v = view(m, 60.0, pods)
    assert v.arrival_rate == pytest.approx(280.0)  # nv_inference_request_success + _failure, as the operator
    assert v.answered_rate == pytest.approx(280.0)  # a KEDA trigger on both counters
    assert v.queue_ms == pytest.approx(2.0)  # per successful request, as adapters/promql.py divides


def test_one_scrape_is_no_rate_not_zero_load() -> None:
    m, pods = monitor(), {0: FakePod(), 1: FakePod()}
    m.scrape(0.0, pods)
    v = view(m, 2.0, pods)
    assert v.arrival_rate is None, "rate() over a single sample returns no series: no data, not 0 req/s"
    assert v.answered_rate is None and v.queue_ms is None and v.queue_compute_ratio is None
