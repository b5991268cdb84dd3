"""A lower bound of the latency the capacity model predicts over a range of replica counts.

Pure. The planner looks for the fewest replicas that meet a latency (and, when batching-bound, for the count
with the lowest latency) among up to 1000 counts, for every queue delay and instance count. A bound that holds
for a whole range of counts lets it pass over the range without predicting each count and still pick exactly
the count that predicting every one would: no count passed over could have been picked.

The bound follows CapacityModel.predict() term by term. Over counts fewest..most the rate per replica r lies in
[r_lo, r_hi] = [R / most, R / fewest], and for every r there:
- the steady batch lies in [lo, hi]: predict()'s rounds map a batch b to r * compute(b) / k (clamped to
  1..largest), so an interval holding round j's batch maps to one holding round j + 1's, [r_lo * least / k,
  r_hi * most / k] with least, most the compute times over the interval (batch_range);
- the service time s lies in [s_lo, s_hi], the compute time over [lo, hi];
- busy lies in [r_lo * s_lo / hi / k, r_hi * s_hi / lo / k] (capped at 1);
- the residual is at least s_lo * min(q, busy_lo) / k, the queueing at least its value at r_lo and s_lo;
- the fill is at least max(0, A - busy_hi * s_hi / k) with A = min(delay, (target - 1) / r_hi), and fill plus
  residual at least A - (1 - q) * busy_hi * s_hi / k (the residual is at least q * busy * s / k).
E.g. a 300 ms delay, batches of 4 and at most 20 req/s per replica: A = 150 ms, whatever the count in the range.
The bound is as tight as the range is narrow: the planner widens the ranges it tries while they pass.
"""

from __future__ import annotations

import math

from batchpilot.control.capacity import STEADY_ROUNDS, Candidate, CapacityModel, batch_limits

NARROWING = 0.01
"""Narrowing 1..largest stops at a round that narrows the batch interval by less than this fraction."""
LOOSE = 2.0
"""A batch interval wider than this times the spread of the rates (r_hi / r_lo) is followed from batch 1 too: a
batch grows about in proportion to the rate, so the narrowing got stuck (on a curve with a spike, say)."""
ROUND_SLACK = 1e-12
"""Relative widening of the batch interval per round: interpolated compute times may leave the range of the
points by an ulp (~1e-16), which must not shrink the interval past a batch predict() computes."""
FLOOR_SLACK = 1e-9
"""Relative slack of the bound: predict()'s float sums differ from the exact arithmetic this is derived in by a
few ulps (~1e-16 relative) of the terms they add up."""


def latency_floor_ms(model: CapacityModel, arrival_rate: float, fewest: Candidate, most: int,
                     percentile: int) -> float:
    """At most the latency predict() gives `fewest` with any replica count in fewest.replicas..most (all else
    the same); -inf where it cannot tell (a count in the range is at or past capacity)."""
    k = max(1, fewest.instance_count)
    total = max(0.0, arrival_rate)
    r_hi, r_lo = total / max(1, fewest.replicas), total / max(1, most)
    target, largest = batch_limits(fewest)
    capacity = model.capacity_per_replica(largest, k)
    u_hi, u_lo = r_hi / capacity, r_lo / capacity
    if not u_hi < 1.0:
        return -math.inf
    lo, hi = batch_range(model, r_lo, r_hi, float(largest), k)
    s_lo, s_hi = (ms / 1000.0 for ms in model.compute_range_ms(lo, hi, k))
    q = percentile / 100.0
    busy_lo, busy_hi = min(1.0, r_lo * s_lo / hi / k), min(1.0, r_hi * s_hi / lo / k)
    residual_s = s_lo * min(q, busy_lo) / k
    queue_s = -math.log(1.0 - q) * s_lo / (2.0 * largest * k) * u_lo / (1.0 - u_lo)
    delay_s = fewest.max_queue_delay_us / 1e6
    # predict() waits for a fill only at a rate above 0: r_lo > 0 makes every rate in the range so.
    wait_s = min(delay_s, (target - 1) / r_hi) if target > 1 and r_lo > 0 else 0.0
    overlap_s = busy_hi * s_hi / k  # what arrived during the batch in progress: no longer waits for the fill
    fill_and_residual_s = max(max(0.0, wait_s - overlap_s) + residual_s, wait_s - (1.0 - q) * overlap_s)
    floor_ms = (fill_and_residual_s + s_lo + queue_s) * 1000.0 + model.overhead_ms
    scale = abs(floor_ms) + (delay_s + s_hi) * 1000.0 + abs(model.overhead_ms)
    return floor_ms - FLOOR_SLACK * scale


def batch_range(model: CapacityModel, r_lo: float, r_hi: float, largest: float, k: int) -> tuple[float, float]:
    """An interval holding the steady batch predict() finds at every rate per replica in [r_lo, r_hi]: the
    narrowing of 1..largest, and where that stays much wider than the rates' spread (a curve whose range over
    1..largest covers everything: rounds cannot narrow it), the intersection with predict()'s rounds followed."""
    lo, hi = _narrowed(model, r_lo, r_hi, largest, k)
    if hi * r_lo <= lo * LOOSE * r_hi:
        return lo, hi
    low, high = _followed(model, r_lo, r_hi, largest, k)
    return max(lo, low), min(hi, high)


def _narrowed(model: CapacityModel, r_lo: float, r_hi: float, largest: float, k: int) -> tuple[float, float]:
    """1..largest holds every round's batch; each round maps an interval holding round j's batches to one holding
    round j + 1's (and later ones'), narrower. Stops when a round narrows it by less than NARROWING."""
    lo, hi = 1.0, largest
    for _ in range(STEADY_ROUNDS):
        least, most = model.compute_range_ms(lo, hi, k)
        new_lo = max(lo, min(largest, max(1.0, r_lo * least / 1000.0 / k)) * (1.0 - ROUND_SLACK))
        new_hi = min(hi, min(largest, max(1.0, r_hi * most / 1000.0 / k)) * (1.0 + ROUND_SLACK))
        narrowed = (hi - lo) - (new_hi - new_lo)
        lo, hi = new_lo, new_hi
        if not lo < hi or narrowed <= NARROWING * (hi - lo):
            break
    return min(lo, hi), max(lo, hi)


def _followed(model: CapacityModel, r_lo: float, r_hi: float, largest: float, k: int) -> tuple[float, float]:
    """predict()'s rounds from batch 1, followed with an interval: round j's holds round j's batch at every rate
    in the range. Mapping a narrower interval gives a narrower one, so once an interval lies in the one before,
    every later one lies in it too: it holds the last round's batch, and the rounds stop."""
    lo = hi = 1.0
    for _ in range(STEADY_ROUNDS):
        least, most = model.compute_range_ms(lo, hi, k)
        new_lo = max(1.0, min(largest, max(1.0, r_lo * least / 1000.0 / k)) * (1.0 - ROUND_SLACK))
        new_hi = min(largest, max(1.0, r_hi * most / 1000.0 / k) * (1.0 + ROUND_SLACK))
        if lo <= new_lo and new_hi <= hi:
            return new_lo, new_hi
        lo, hi = new_lo, new_hi
    return lo, hi
