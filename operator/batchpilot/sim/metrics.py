"""What a simulated run is judged by, and the mean with its 95% confidence interval over seeds.

Pure functions of a `RunRecord`. A request meets the SLO when its latency is at most slo_ms; a failed request
(timeout, no pod: latency inf) always misses. Percentiles use the nearest-rank rule (numpy's
"inverted_cdf"), the smallest latency that at least p% of requests are at or under, so "p95 <= SLO" holds
exactly when at least 95% of requests meet the SLO, and failures (inf) never turn into NaN by interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

from batchpilot.sim.types import BoolArray, FloatArray, RunRecord

WINDOW_S = 60.0
"""Window of `window_attainment`: a minute, the span an SLO dashboard or Triton's summary quantile covers."""

T_975 = (12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252,
         2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830, 2.160368656, 2.144786688,
         2.131449546, 2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447, 2.079613845,
         2.073873068, 2.068657610, 2.063898562, 2.059538553, 2.055529439, 2.051830516, 2.048407142,
         2.045229642, 2.042272456)
"""Student's t 0.975 quantile for 1..30 degrees of freedom (two-sided 95%), the standard table values."""
Z_975 = 1.959963984540054
"""The normal 0.975 quantile, the limit of T_975."""


@dataclass(frozen=True)
class RunMetrics:
    """One run's outcome."""

    attainment: float
    """Share of requests answered within slo_ms (failures miss); 1.0 for a run without requests."""
    window_attainment: float
    """Share of 1-minute windows (by arrival time, windows without arrivals left out) whose latency at the SLO
    percentile, over all requests arriving in the window with failures as inf, meets slo_ms; 1.0 if none."""
    p_latency_ms: float
    """Whole-run latency at the SLO percentile (inf when more than 100 - p % failed); 0.0 without requests."""
    gpu_hours: float
    """GPU time billed, hours: cold starts and draining included."""
    goodput_per_gpu_hour: float
    """Requests answered within the SLO per GPU-hour; 0.0 when no GPU time was billed."""
    failed: int
    """Requests that got no answer (latency inf)."""
    scale_events: int
    """Changes of the desired replica count."""
    cold_starts: int
    """Pods started (each billed from scheduling to release)."""
    reloads: int
    """Pod model reloads for retunes."""
    mean_replicas: float
    """Desired replicas averaged over the timeline's samples (one a second); 0.0 without a timeline."""


class Summary(NamedTuple):
    """One metric over seeds: (mean, half-width of the 95% confidence interval); the half-width is NaN for a
    single seed, and both are what numpy makes of inf values (inf, NaN)."""

    mean: float
    half_width: float


def _percentile(latency: FloatArray, percentile: float) -> float:
    return float(np.percentile(latency, percentile, method="inverted_cdf"))


def _window_attainment(arrival: FloatArray, within: BoolArray, percentile: float) -> float:
    """Share of the windows with arrivals whose nearest-rank percentile meets the SLO (`within`: per request).

    Nearest-rank percentile <= SLO is equivalent to "at least p% of the window's requests within the SLO",
    so it is computed from counts, for all windows at once: one count per window from the first arrival's to
    the last's, the windows without arrivals then left out (no sort of the requests, which costs seconds for
    the ~13 million of a simulated hour).
    """
    if not arrival.size:
        return 1.0
    window = np.floor(arrival / WINDOW_S).astype(np.int64)
    window -= window.min()
    total = np.bincount(window)
    good = np.bincount(window, weights=within)
    had = total > 0
    total, good = total[had], good[had]
    # nearest rank: the p-percentile of n values is the ceil(p n / 100)-th smallest
    rank = np.maximum(np.ceil(total * percentile / 100.0 - 1e-9), 1)
    return float(np.mean(good >= rank))


def run_metrics(record: RunRecord) -> RunMetrics:
    """The metrics of one run (see `RunMetrics` for each definition)."""
    latency = record.latency_ms
    if latency.shape != record.arrival.shape:
        raise ValueError(f"run {record.policy}/{record.trace}/{record.seed}: {record.arrival.size} arrivals "
                         f"but {latency.size} latencies; the engine records one latency per arrival")
    unanswered = ~np.isfinite(latency)
    failed = int(np.count_nonzero(unanswered))
    if failed and np.any(latency[unanswered] != np.inf):
        latency = np.where(unanswered, np.inf, latency)  # NaN (and -inf) count as failures
    meets = latency <= record.slo_ms
    within = int(np.count_nonzero(meets))
    gpu_hours = record.gpu_seconds / 3600.0
    return RunMetrics(
        attainment=within / latency.size if latency.size else 1.0,
        window_attainment=_window_attainment(record.arrival, meets, record.percentile),
        p_latency_ms=_percentile(latency, record.percentile) if latency.size else 0.0,
        gpu_hours=gpu_hours,
        goodput_per_gpu_hour=within / gpu_hours if gpu_hours > 0 else 0.0,
        failed=failed,
        scale_events=record.scale_events,
        cold_starts=record.cold_starts,
        reloads=record.reloads,
        mean_replicas=float(np.mean(record.timeline_replicas)) if record.timeline_replicas else 0.0,
    )


def t_975(dof: int) -> float:
    """Student's t 0.975 quantile: the table up to 30 degrees of freedom, then the Cornish-Fisher expansion
    in 1/dof beyond (error under 1e-7)."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    if dof <= len(T_975):
        return T_975[dof - 1]
    z = Z_975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / dof + g2 / dof**2 + g3 / dof**3 + g4 / dof**4


FLOAT_FIELDS = tuple(f.name for f in fields(RunMetrics) if f.type in (float, "float"))
"""The RunMetrics fields `summarize` reports."""


def summarize(metrics: Sequence[RunMetrics]) -> dict[str, Summary]:
    """Mean and 95% confidence half-width (Student t, n - 1 degrees of freedom) of each float metric over
    runs that differ only in their seed, e.g. attainment 0.97 +- 0.01 over 5 seeds."""
    if not metrics:
        raise ValueError("summarize needs at least one run")
    out: dict[str, Summary] = {}
    n = len(metrics)
    for name in FLOAT_FIELDS:
        values = np.array([getattr(m, name) for m in metrics], dtype=np.float64)
        mean = float(np.mean(values))
        if n == 1:
            out[name] = Summary(mean, math.nan)
            continue
        with np.errstate(invalid="ignore"):  # inf values give a NaN spread, which is the honest answer
            sd = float(np.std(values, ddof=1))
        out[name] = Summary(mean, t_975(n - 1) * sd / math.sqrt(n))
    return out
