"""The monitoring pipeline of one service: Triton's metrics, scraped by Prometheus, read as a View.

What it models, and from where:
- Every `scrape_s` Prometheus stores each Ready pod's cumulative Triton counters (our PodMonitor's interval).
  A reload restarts them from zero (FACTS.md: Triton statistics after a live retune); `rate()` treats a drop
  as a counter reset and extrapolates to the window's ends (prometheus `promql/functions.go`,
  extrapolatedRate); `deriv()` is the least-squares slope of a gauge (same file, linearRegression).
- Triton's latency summary (`nv_inference_request_summary_us`, `--metrics-config summary_latencies=true`)
  gives each pod's quantile over about the last minute (SUMMARY_WINDOW_S in control/planner.py); it is kept
  across a reload here (clients saw the pause).
- The operator's queries (adapters/promql.py, adapters/prometheus.py): arrival rate = answered rate (successes
  and failures) plus the growth of pending requests; latency = max over pods of the quantile; means = rate over rate.
- batch_compute and concurrency come, as in control_loop.py, from Triton's per-pod statistics read directly at
  the decision (no scrape lag), differenced against the previous decision's read.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from batchpilot.control.batch_stats import BatchCompute, Snapshot, since_last_tick
from batchpilot.sim.types import Batching, FloatArray, View

EXTRAPOLATION_SLACK = 1.1
"""Prometheus extrapolates a rate to a window's end only if the gap is under 1.1 average sample intervals."""


class Stats(Protocol):
    """Triton's cumulative statistics of one pod since its last (re)load."""

    @property
    def success(self) -> int: ...
    @property
    def failure(self) -> int: ...
    @property
    def exec_count(self) -> int: ...
    @property
    def queue_us(self) -> float: ...
    @property
    def compute_us(self) -> float: ...
    @property
    def per_batch(self) -> Mapping[int, tuple[int, float]]: ...


class Served(Protocol):
    """What the monitor reads from a pod's batcher (ReplicaBatcher is one)."""

    @property
    def stats(self) -> Stats: ...
    @property
    def queued(self) -> int: ...
    @property
    def executing(self) -> int: ...
    @property
    def busy_s(self) -> float: ...
    @property
    def batch_time_s(self) -> float: ...


@dataclass(frozen=True)
class PodSample:
    """One pod's series at one scrape, as Prometheus stores them."""

    success: float
    """nv_inference_request_success (a counter; inference count is the same: one inference per request)."""
    failure: float
    """nv_inference_request_failure (counter): requests the queue timeout rejected."""
    queue_us: float
    """nv_inference_queue_duration_us (counter)."""
    compute_us: float
    """nv_inference_compute_infer_duration_us (counter)."""
    exec_count: float
    """nv_inference_exec_count (counter)."""
    pending: float
    """nv_inference_pending_request_count (gauge): queued, not yet executing."""
    busy_s: float
    """Cumulative seconds the pod's GPU was busy (behind DCGM_FI_DEV_GPU_UTIL)."""
    latency_ms: float | None
    """The summary's quantile over the last summary window; None without completions (Triton reports NaN)."""


@dataclass(frozen=True)
class Scrape:
    """One scrape of every Ready pod."""

    at: float
    """When, seconds."""
    pods: Mapping[int, PodSample]
    """By pod index: the Ready pods at that time."""


def extrapolated_rate(times: Sequence[float], values: Sequence[float], start: float, end: float) -> float | None:
    """Prometheus' rate() of one counter series over the window (start, end]; None under two samples."""
    if len(times) < 2:
        return None
    increase = values[-1] - values[0]
    for before, after in zip(values, values[1:], strict=False):
        if after < before:
            increase += before  # a reset: the counter restarted from zero, so all of `after` is new
    sampled = times[-1] - times[0]
    if sampled <= 0:
        return None
    average = sampled / (len(times) - 1)
    to_start, to_end = times[0] - start, end - times[-1]
    if to_start >= average * EXTRAPOLATION_SLACK:
        to_start = average / 2
    if increase > 0 and values[0] >= 0:
        to_start = min(to_start, sampled * values[0] / increase)  # a counter does not extrapolate below zero
    if to_end >= average * EXTRAPOLATION_SLACK:
        to_end = average / 2
    return increase * (sampled + to_start + to_end) / sampled / (end - start)


def slope(times: Sequence[float], values: Sequence[float]) -> float | None:
    """Prometheus' deriv(): least-squares slope per second; None under two samples."""
    if len(times) < 2:
        return None
    t = np.asarray(times) - times[0]
    v = np.asarray(values)
    spread = float(((t - t.mean()) ** 2).sum())
    return None if spread == 0 else float(((t - t.mean()) * (v - v.mean())).sum() / spread)


def linear_quantile(values: FloatArray, q: float) -> float:
    """np.quantile(values, q) of a non-empty array without NaN, bit for bit (its default "linear" method:
    numpy `lib/function_base.py` _quantile, _get_indexes and _lerp), without its per-call overhead.

    e.g. q 0.95 of 101 values: index 95.0 exactly, the 96th smallest; of 100 values: 94.05 -> 0.05 of the way
    from the 95th smallest to the 96th.
    """
    n = values.size
    virtual = (n - 1) * q
    if virtual >= n - 1:
        return float(values.max())
    lo = math.floor(virtual)
    a, b = (float(v) for v in np.partition(values, (lo, lo + 1))[lo:lo + 2])
    t, diff = virtual - lo, b - a
    return a + diff * t if t < 0.5 else b - diff * (1 - t)


def _ratio(num: float | None, den: float | None, scale: float = 1.0) -> float | None:
    return None if num is None or not den else num / den * scale


class Monitor:
    """Prometheus and Triton for one run: scrapes, per-second ongoing samples, and the View at a decision."""

    def __init__(self, percentile: int, scrape_s: float, rate_window_s: float, summary_window_s: float,
                 stale_after_s: float) -> None:
        self.quantile = percentile / 100
        self.scrape_s, self.rate_window_s = scrape_s, rate_window_s
        self.summary_window_s, self.stale_after_s = summary_window_s, stale_after_s
        self._scrapes: deque[Scrape] = deque()
        self._done: dict[int, deque[tuple[FloatArray, FloatArray]]] = {}
        """Per pod: (completion times, server-side latency ms) chunks within the summary window."""
        self._ongoing_sum, self._ongoing_n = 0.0, 0
        self._stats: dict[int, tuple[float, Snapshot, float]] = {}
        """Per pod at the previous view: (when, per-batch statistics, batch_time_s)."""

    def record(self, pod: int, done: FloatArray, latency_ms: FloatArray) -> None:
        """Completions of one pod (server-side latency), in time order across calls."""
        if len(done):
            self._done.setdefault(pod, deque()).append((done, latency_ms))

    def sample(self, pods: Mapping[int, Served]) -> None:
        """One per-second sample of requests queued or executing per Ready pod."""
        if pods:
            self._ongoing_sum += sum(b.queued + b.executing for b in pods.values()) / len(pods)
            self._ongoing_n += 1

    def scrape(self, now: float, pods: Mapping[int, Served]) -> None:
        self._scrapes.append(Scrape(now, {i: self._sample(i, b, now) for i, b in pods.items()}))
        keep_after = now - max(self.rate_window_s, self.stale_after_s) - 2 * self.scrape_s
        while self._scrapes and self._scrapes[0].at < keep_after:
            self._scrapes.popleft()
        for pod in [p for p in self._done if p not in pods]:
            del self._done[pod]  # gone from the endpoints: its summary series goes with it

    def _sample(self, pod: int, b: Served, now: float) -> PodSample:
        s = b.stats
        return PodSample(float(s.success), float(s.failure), float(s.queue_us), float(s.compute_us),
                         float(s.exec_count), float(b.queued), float(b.busy_s), self._quantile(pod, now))

    def _quantile(self, pod: int, now: float) -> float | None:
        chunks = self._done.get(pod)
        if not chunks:
            return None
        start = now - self.summary_window_s
        while chunks and chunks[0][0][-1] <= start:
            chunks.popleft()  # bounded: nothing older than the summary window is kept
        if not chunks:
            return None
        done = np.concatenate([c[0] for c in chunks])
        latency = np.concatenate([c[1] for c in chunks])
        recent = latency[(done > start) & (done <= now)]
        return linear_quantile(recent, self.quantile) if len(recent) else None

    def view(self, now: float, replicas: int, ready_replicas: int, pending_pods: int, batching: Batching,
             pods: Mapping[int, Served]) -> View:
        """The View at `now`: Kubernetes state as given, metrics from the scrapes at or before now."""
        ongoing = self._ongoing_sum / self._ongoing_n if self._ongoing_n else None
        self._ongoing_sum, self._ongoing_n = 0.0, 0
        batch_compute, concurrency = self._batch_statistics(now, pods)
        base = View(at=now, replicas=replicas, ready_replicas=ready_replicas, pending_pods=pending_pods,
                    batching=batching, arrival_rate=None, latency_ms=None, queue_ms=None, compute_ms=None,
                    avg_batch_size=None, pending_requests=None, ongoing_per_replica=ongoing, gpu_utilization=None,
                    queue_compute_ratio=None, batch_compute=batch_compute, concurrency=concurrency,
                    window_s=self.rate_window_s)
        scrapes = [s for s in self._scrapes if s.at <= now]
        if not scrapes or not scrapes[-1].pods or now - scrapes[-1].at > self.stale_after_s:
            return base  # no series, or stale: the operator's reader raises MetricsUnavailable
        return self._metrics(base, now, scrapes)

    def _metrics(self, base: View, now: float, scrapes: list[Scrape]) -> View:
        last = scrapes[-1]
        window = [s for s in scrapes if s.at > now - self.rate_window_s]

        def total_rate(field: str) -> float | None:
            rates = [r for r in (extrapolated_rate(*_series(window, pod, field), now - self.rate_window_s, now)
                                 for pod in _pods(window)) if r is not None]
            return sum(rates) if rates else None  # no pod with two samples yet: rate() returns no series

        answered, failed = total_rate("success"), total_rate("failure")
        growth = [slope(*_series(window, pod, "pending")) for pod in _pods(window)]
        queue_us, compute_us, execs = total_rate("queue_us"), total_rate("compute_us"), total_rate("exec_count")
        latencies = [p.latency_ms for p in last.pods.values() if p.latency_ms is not None]
        answered_all = None if answered is None else answered + (failed or 0.0)
        arrival = None if answered_all is None else answered_all + max(0.0, sum(g for g in growth if g is not None))
        return View(
            at=base.at, replicas=base.replicas, ready_replicas=base.ready_replicas, pending_pods=base.pending_pods,
            batching=base.batching,
            arrival_rate=arrival,
            latency_ms=max(latencies) if latencies else None,
            queue_ms=_ratio(queue_us, answered, 1e-3), compute_ms=_ratio(compute_us, answered, 1e-3),
            avg_batch_size=_ratio(answered, execs),
            pending_requests=sum(p.pending for p in last.pods.values()),
            ongoing_per_replica=base.ongoing_per_replica,
            gpu_utilization=self._utilization(scrapes),
            queue_compute_ratio=_ratio(queue_us, compute_us),
            batch_compute=base.batch_compute, concurrency=base.concurrency, window_s=base.window_s,
            answered_rate=answered_all, failure_rate=failed)

    def _utilization(self, scrapes: list[Scrape]) -> float | None:
        """Busy fraction of each Ready pod's GPU over the last scrape interval, mean over pods."""
        if len(scrapes) < 2:
            return None
        last, before = scrapes[-1], scrapes[-2]
        span = last.at - before.at
        busy = [(s.busy_s - before.pods[i].busy_s) / span for i, s in last.pods.items() if i in before.pods]
        return float(np.clip(np.mean(busy), 0.0, 1.0)) if busy and span > 0 else None

    def _batch_statistics(self, now: float, pods: Mapping[int, Served]
                          ) -> tuple[BatchCompute, float | None]:
        """Compute time per batch size since the previous view, and batches in flight per pod."""
        current = {i: (now, _snapshot(b.stats.per_batch), b.batch_time_s) for i, b in pods.items()}
        measured = since_last_tick({str(i): s for i, (_, s, _) in self._stats.items()},
                                   {str(i): s for i, (_, s, _) in current.items()})
        loads = []
        for i, (at, _, busy) in current.items():
            if i in self._stats and at > self._stats[i][0]:
                then, _, before = self._stats[i]
                loads.append((busy - before if busy >= before else busy) / (at - then))
        self._stats = current
        return measured, (sum(loads) / len(loads) if loads else None)


def _snapshot(per_batch: Mapping[int, tuple[int, float]]) -> Snapshot:
    """Triton's per-batch-size statistics as the operator reads them: (executions, compute ns)."""
    return {b: (int(n), int(round(ms * 1e6))) for b, (n, ms) in per_batch.items()}


def _pods(scrapes: Sequence[Scrape]) -> list[int]:
    return sorted({i for s in scrapes for i in s.pods})


def _series(scrapes: Sequence[Scrape], pod: int, field: str) -> tuple[list[float], list[float]]:
    points = [(s.at, getattr(s.pods[pod], field)) for s in scrapes if pod in s.pods]
    return [t for t, _ in points], [v for _, v in points]

