"""Pure parts of bench/sim_validate.py: per-window aggregation of a run and the sandbox-vs-simulator errors.

No I/O, no clock: the sandbox side and the simulator side are both reduced to the same shape here, a replica
series sampled over time plus per-request (arrival, latency), and compared window by window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from batchpilot.sim.types import FloatArray

WINDOW_S = 5.0
"""Reporting window, seconds: the load generator's interval in the demo (batchpilot_sandbox/demo/run.py `_load`)."""


@dataclass(frozen=True)
class Series:
    """A replica series sampled over time (ServiceWatch every ~1 s, or the engine's timeline every second)."""

    t: tuple[float, ...]
    """Sample times, seconds since the load started, increasing."""
    desired: tuple[int, ...]
    """Desired replicas (the Deployment's spec.replicas) at each sample."""
    ready: tuple[int, ...]
    """Ready replicas at each sample."""

    def at(self, t: float) -> tuple[int, int]:
        """(desired, ready) of the last sample at or before t; the first sample before the series starts."""
        if not self.t:
            return 0, 0
        i = max(0, int(np.searchsorted(np.asarray(self.t), t + 1e-9, side="right")) - 1)
        return self.desired[i], self.ready[i]


@dataclass(frozen=True)
class Window:
    """One reporting window of one side."""

    end_s: float
    """Window end, seconds since the load started (the table's time column)."""
    offered_rate: float
    """Requests/s that arrived in the window."""
    p95_ms: float | None
    """p95 of the requests that completed in the window (None: none did), as the load generator reports it."""
    errors: int
    """Requests that failed (timed out) with a completion, or arrival if never served, in the window."""
    desired: int
    """Desired replicas at the window end."""
    ready: int
    """Ready replicas at the window end."""


def p95(values: Sequence[float] | FloatArray) -> float | None:
    """Linear-interpolated 95th percentile (numpy's default, as loadgen_stats.percentile); None when empty."""
    arr = np.asarray(values, dtype=np.float64)
    return float(np.percentile(arr, 95)) if arr.size else None


def request_windows(arrival: FloatArray, latency_ms: FloatArray, series: Series, duration_s: float,
                    window_s: float = WINDOW_S) -> list[Window]:
    """Per-window offered rate, client p95 and replicas of a run given per request (np.inf = failed).

    Latencies go to the window their request completed in, as the load generator's windows do (a response
    is appended to the open window when it arrives), so a backlog shows up when it is served, not when sent.
    """
    arrival = np.asarray(arrival, dtype=np.float64)
    latency_ms = np.asarray(latency_ms, dtype=np.float64)
    ok = np.isfinite(latency_ms)
    done = arrival + np.where(ok, latency_ms, 0.0) / 1000.0
    count = max(1, math.ceil(duration_s / window_s - 1e-9))
    out: list[Window] = []
    for k in range(count):
        lo, hi = k * window_s, min((k + 1) * window_s, duration_s)
        arrived = (arrival >= lo) & (arrival < hi)
        finished = (done >= lo) & (done < hi)
        desired, ready = series.at(hi)
        out.append(Window(end_s=hi, offered_rate=float(arrived.sum()) / (hi - lo),
                          p95_ms=p95(latency_ms[finished & ok]), errors=int((finished & ~ok).sum()),
                          desired=desired, ready=ready))
    return out


def cold_starts(series: Series) -> list[float]:
    """Seconds from each rise of desired replicas until ready reached the new count (rises never met: none).

    A rise while an earlier one is still starting restarts nothing: each target is timed from its own rise.
    """
    out: list[float] = []
    pending: list[tuple[int, float]] = []  # (target replicas, time desired reached it)
    prev = series.desired[0] if series.desired else 0
    for t, d, r in zip(series.t, series.desired, series.ready, strict=True):
        if d > prev:
            pending.extend((n, t) for n in range(prev + 1, d + 1))
        prev = d
        pending = [(n, since) for n, since in pending if n <= d]  # a scale-down cancels what it removed
        met = [(n, since) for n, since in pending if r >= n]
        out.extend(t - since for _, since in met)
        pending = [p for p in pending if p not in met]
    return out


def replica_seconds(series: Series, duration_s: float) -> float:
    """Integral of desired replicas over [0, duration_s], each sample holding until the next."""
    if not series.t:
        return 0.0
    total = 0.0
    edges = [max(0.0, t) for t in series.t[1:]] + [duration_s]
    start = 0.0
    for d, end in zip(series.desired, edges, strict=True):
        end = min(end, duration_s)
        if end > start:
            total += d * (end - start)
            start = end
    return total


def first_scale_up(series: Series) -> float | None:
    """Time of the first sample whose desired replicas exceed the first sample's (None: never)."""
    if not series.desired:
        return None
    return next((t for t, d in zip(series.t, series.desired, strict=True) if d > series.desired[0]), None)


@dataclass(frozen=True)
class Errors:
    """How far the simulator is from the sandbox on one run (sim minus sandbox where signed)."""

    windows: int
    replica_mae: float
    """Mean over windows of |sim desired - sandbox desired| at the window end."""
    ready_mae: float
    """Same for ready replicas."""
    sandbox_replica_s: float
    sim_replica_s: float
    replica_s_ratio: float | None
    """sim / sandbox replica-seconds (None: the sandbox's are 0)."""
    p95_windows: int
    """Windows where both sides have a p95."""
    p95_median_abs_ms: float | None
    p95_median_abs_pct: float | None
    """Median of |sim - sandbox| / sandbox, percent."""
    p95_median_signed_ms: float | None
    """Median of sim - sandbox: < 0, the simulator is optimistic."""
    sandbox_first_scale_up_s: float | None
    sim_first_scale_up_s: float | None
    sandbox_max_replicas: int
    sim_max_replicas: int


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def compare(sandbox: list[Window], sim: list[Window], sandbox_series: Series, sim_series: Series,
            duration_s: float) -> Errors:
    """Errors over the windows both sides have (paired by position: both start at the load's start)."""
    pairs = list(zip(sandbox, sim, strict=False))
    both = [(a.p95_ms, b.p95_ms) for a, b in pairs if a.p95_ms is not None and b.p95_ms is not None]
    abs_ms = [abs(b - a) for a, b in both]
    pct = [abs(b - a) / a * 100.0 for a, b in both if a > 0]
    sb_rs, sim_rs = replica_seconds(sandbox_series, duration_s), replica_seconds(sim_series, duration_s)
    n = max(1, len(pairs))
    return Errors(
        windows=len(pairs),
        replica_mae=sum(abs(b.desired - a.desired) for a, b in pairs) / n,
        ready_mae=sum(abs(b.ready - a.ready) for a, b in pairs) / n,
        sandbox_replica_s=sb_rs, sim_replica_s=sim_rs, replica_s_ratio=sim_rs / sb_rs if sb_rs > 0 else None,
        p95_windows=len(both), p95_median_abs_ms=_median(abs_ms), p95_median_abs_pct=_median(pct),
        p95_median_signed_ms=_median([b - a for a, b in both]),
        sandbox_first_scale_up_s=first_scale_up(sandbox_series), sim_first_scale_up_s=first_scale_up(sim_series),
        sandbox_max_replicas=max(sandbox_series.desired, default=0),
        sim_max_replicas=max(sim_series.desired, default=0),
    )
