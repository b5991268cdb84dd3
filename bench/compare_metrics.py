"""Pure parts of `bench.compare_real`: one sandbox run reduced to the simulator's RunRecord, so the report and
its metrics are the simulator's own (sim/metrics.py `run_metrics`, bench/sim_compare.py `minute_timeline`).

A request meets the SLO when the load generator got its answer within slo_ms; a failed request (timeout,
connection error, dropped, no ready pod, cancelled at the end) is a miss, latency inf, as in the simulator.
Replica-seconds integrate the Deployment's desired replicas (spec.replicas, sampled each second) over the load;
they stand in the report's GPU-h column (one GPU per replica).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from batchpilot.sim.types import RunRecord
from bench.sim_validate_stats import Series, replica_seconds


@dataclass(frozen=True)
class RealRun:
    """What one sandbox run observed, times in seconds since the load started."""

    policy: str
    setting: str
    shape: str
    seed: int
    slo_ms: float
    duration_s: float
    requests: tuple[tuple[float, float | None], ...]
    """(scheduled send offset, latency s or None when it failed) of every request the load generator offered."""
    series: Series
    """Desired and ready replicas of the Deployment, sampled about once a second."""
    retunes: int = 0
    """Batching changes applied to the pods ("Retuned" Events of the InferenceService)."""


def latencies_ms(requests: Sequence[tuple[float, float | None]]) -> tuple[np.ndarray, np.ndarray]:
    """(send offsets, latency ms with inf for failures), ordered by send offset."""
    ordered = sorted(requests, key=lambda r: r[0])
    offsets = np.array([o for o, _ in ordered], dtype=np.float64)
    latency = np.array([math.inf if v is None else v * 1000.0 for _, v in ordered], dtype=np.float64)
    return offsets, latency


def attainment(latency_ms: np.ndarray, slo_ms: float) -> float:
    """Share of requests answered within slo_ms (failures, inf, miss); 1.0 without requests.

    e.g. latencies [50, 150, 250, inf] at 200 ms: 2 of 4, 0.5."""
    return float(np.count_nonzero(latency_ms <= slo_ms)) / latency_ms.size if latency_ms.size else 1.0


def scale_events(desired: Sequence[int]) -> int:
    """Changes of the desired replica count, e.g. [1, 1, 2, 3, 3, 2] -> 3."""
    return sum(1 for a, b in zip(desired, desired[1:], strict=False) if a != b)


def pods_started(desired: Sequence[int]) -> int:
    """Pods added by scale-ups (each a cold start), e.g. [1, 3, 2, 4] -> 2 + 2 = 4."""
    return sum(max(0, b - a) for a, b in zip(desired, desired[1:], strict=False))


def clip_series(series: Series, duration_s: float) -> Series:
    """The samples up to the load's end (the last one before 0 kept: it holds at the start)."""
    t = np.asarray(series.t)
    if not t.size:
        return series
    first = max(0, int(np.searchsorted(t, 0.0, side="right")) - 1)
    keep = [i for i in range(first, t.size) if t[i] <= duration_s]
    return Series(tuple(max(0.0, series.t[i]) for i in keep), tuple(series.desired[i] for i in keep),
                  tuple(series.ready[i] for i in keep))


def record(run: RealRun) -> RunRecord:
    """The run as the simulator records one (gpu_seconds: desired replica-seconds)."""
    offsets, latency = latencies_ms(run.requests)
    series = clip_series(run.series, run.duration_s)
    return RunRecord(
        policy=run.policy, setting=run.setting, trace=run.shape, seed=run.seed, slo_ms=run.slo_ms, percentile=95,
        duration_s=run.duration_s, arrival=offsets, latency_ms=latency, timeline_t=list(series.t),
        timeline_replicas=list(series.desired), timeline_ready=list(series.ready),
        gpu_seconds=replica_seconds(series, run.duration_s), scale_events=scale_events(series.desired),
        cold_starts=pods_started(series.desired), reloads=run.retunes,
    )


def load_start(echo_times: Sequence[float], window_ends: Sequence[float], fallback: float) -> float:
    """Unix time the load generator's clock started: the median of (when each window was reported - its end
    offset), as bench/sim_validate.py reads it; fallback without windows."""
    pairs = [at - end for at, end in zip(echo_times, window_ends, strict=False)]
    return float(np.median(pairs)) if pairs else fallback
