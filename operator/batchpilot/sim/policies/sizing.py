"""How every peer's batching and thresholds are set: measured the way Triton Model Analyzer users measure.

A user who deploys Triton behind the HPA, KEDA, Knative or Ray Serve first sizes one pod offline: run a load
generator at increasing Poisson rates against one replica with a candidate `dynamic_batching` config, keep the
largest rate whose latency percentile stays within the SLO (Model Analyzer's "max throughput under a latency
budget" search), and pick the config with the highest such rate. Every peer gets that static batching and
that per-pod capacity, so the comparison is about replica policy, not about a badly chosen config.pbtxt.

Each probe here is a short simulation of one `ReplicaBatcher` (sim/batcher.py) on seeded Poisson arrivals.
Probes reuse one seed (common random numbers): a higher rate is the same arrival pattern compressed in time,
so the bisection sees a nearly monotone answer instead of noise. Results are cached: every run needs them.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from batchpilot.sim.batcher import ReplicaBatcher
from batchpilot.sim.profile import ComputeCurve
from batchpilot.sim.types import Batching

QUEUE_DELAYS_US: tuple[int, ...] = (0, 100, 250, 500, 1000, 2000, 5000, 10000)
"""Queue delays a Model Analyzer-style search tries (us): Triton's default 0 up to 10 ms, log-spaced."""
PROBE_S = 60.0
"""Seconds of arrivals per probe: long enough for a p99 over thousands of requests at modest rates."""
MIN_PROBE_S = 10.0
"""Shortest probe (s): at thousands of requests/s a probe is cut to PROBE_REQUESTS, never below this."""
PROBE_REQUESTS = 30_000
"""Arrivals a probe aims at (a p99 over 30k samples is stable to about 1%), bounding the cost at high rates."""
WARMUP_FRACTION = 0.1
"""Share of a probe's start left out of the percentile: the batcher starts empty, which flatters latency."""
REL_TOLERANCE = 0.01
"""Bisection stops when the bracket is this fraction of the rate (1%: below the probes' own noise)."""


class Settings(NamedTuple):
    """A peer's threshold: the documented default and the grid a sweep tries (default included)."""

    default: float
    """The upstream default (or, where it is workload-specific, what its docs tell a user to set)."""
    sweep: tuple[float, ...]
    """Values tried when the threshold is swept to its best per trace, ascending."""


def replicas_for(rate: float, capacity: float, target_fraction: float = 1.0) -> int:
    """Pods needed to serve `rate` req/s at `capacity` req/s each, run at `target_fraction` of it (>= 1).

    e.g. 1000 req/s on pods of 300 req/s at 0.8: ceil(1000 / 240) = 5.
    """
    if not capacity > 0 or not target_fraction > 0:
        raise ValueError(f"capacity ({capacity}) and target_fraction ({target_fraction}) must be > 0")
    needed = max(rate, 0.0) / (capacity * target_fraction)
    return max(1, math.ceil(needed - 1e-9))  # 1e-9: 3.0000000001 pods of float noise is 3 pods


def throughput_bound(curve: ComputeCurve, batching: Batching) -> float:
    """Req/s one pod cannot exceed: its instances running their best batch size back to back."""
    best = max(curve.throughput(b) for b in range(1, batching.max_batch_size + 1))
    return best * batching.instance_count


def probe_latencies_ms(curve: ComputeCurve, batching: Batching, rate: float, seed: int) -> np.ndarray:
    """Latency (ms) of each request after the warm-up of one probe at `rate`; np.inf if it never finished."""
    duration = min(PROBE_S, max(MIN_PROBE_S, PROBE_REQUESTS / rate))
    gaps = np.random.default_rng(seed).exponential(1.0, size=int(duration * rate * 1.2) + 16) / rate
    arrivals = np.cumsum(gaps)
    arrivals = arrivals[arrivals < duration]
    ids = np.arange(arrivals.size, dtype=np.int64)
    batcher = ReplicaBatcher(curve, batching, np.random.default_rng(seed + 1))
    batcher.enqueue(arrivals, ids)
    done_ids, done_at = batcher.advance(duration * 2.0)  # an overloaded pod leaves requests unfinished
    finished = np.full(arrivals.size, np.inf)
    finished[np.asarray(done_ids, dtype=np.int64)] = np.asarray(done_at, dtype=np.float64)
    keep = arrivals >= duration * WARMUP_FRACTION
    return (finished[keep] - arrivals[keep]) * 1000.0


def meets_slo(curve: ComputeCurve, batching: Batching, rate: float, slo_ms: float, percentile: int,
              seed: int) -> bool:
    """Whether one pod at `rate` Poisson req/s keeps its `percentile`-th latency within slo_ms."""
    latencies = probe_latencies_ms(curve, batching, rate, seed)
    if latencies.size == 0:
        return True
    # "higher" takes an observed latency (no interpolation with an unfinished request's inf)
    return bool(np.percentile(latencies, percentile, method="higher") <= slo_ms)


@lru_cache(maxsize=256)
def measure_capacity(curve: ComputeCurve, batching: Batching, slo_ms: float, percentile: int,
                     seed: int = 0) -> float:
    """The largest Poisson rate (req/s) one pod serves with its percentile latency <= slo_ms; 0 if none.

    Bisection between 0 and the pod's throughput bound, to REL_TOLERANCE of the rate.
    """
    hi = throughput_bound(curve, batching)
    lo = hi * REL_TOLERANCE
    if not meets_slo(curve, batching, lo, slo_ms, percentile, seed):
        return 0.0  # even a trickle misses the SLO: the batch delay or one batch's compute exceeds it
    while hi - lo > REL_TOLERANCE * lo:
        mid = (lo + hi) / 2.0
        if meets_slo(curve, batching, mid, slo_ms, percentile, seed):
            lo = mid
        else:
            hi = mid
    return lo


@lru_cache(maxsize=64)
def best_static_batching(curve: ComputeCurve, max_batch_size: int, slo_ms: float, percentile: int) -> Batching:
    """The queue delay of QUEUE_DELAYS_US with the highest measured capacity (the shorter one on a tie)."""
    candidates = [Batching(max_batch_size=max_batch_size, max_queue_delay_us=d) for d in QUEUE_DELAYS_US]
    capacities = [measure_capacity(curve, b, slo_ms, percentile) for b in candidates]
    best = max(range(len(candidates)), key=lambda i: (capacities[i], -i))
    return candidates[best]
