"""Capacity model of one replica: compute time per batch size, and the latency it predicts for a candidate.

Pure. The curve is seeded by an offline profile when the spec gives one and learned online from what Triton
reports (average batch size, compute time per batch). Where nothing was measured the model is conservative:
past the largest batch size seen, compute time grows linearly with the batch (no batching gain assumed), so
an unknown curve over-provisions rather than breaking the SLO.

Model instances per pod (Triton's instance_group count) run batches side by side on the pod's one GPU, each
slowed by the others: a batch of b with n batches in flight takes compute_ms(b) * (1 + contention(b) * (n - 1)).
contention 1 is a saturated GPU (instances take turns: no gain), 0 kernels that never contend (k instances, k
times the throughput). It depends on the batch size (an H200 measured ResNet-50 at 0.24 for batches of 1 and
0.88 for batches of 32: small batches leave the GPU room, large ones fill it), so it is learned per batch size,
and it is measured, never assumed: until Triton's statistics were seen with more than one batch in flight it is
taken as 1, and past the largest batch size seen side by side it rises to 1 at twice that size, so an instance
count measured at a light load never looks like capacity at the batches a heavy one brings.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import NamedTuple

from batchpilot.control.batch_stats import BatchSizeCompute

LEARN_WEIGHT = 0.3
"""Weight of a new observation in a batch-size bucket's moving average."""
OVERHEAD_WEIGHT = 0.2
"""Weight of a new residual in the learned overhead."""
MIN_OVERLAP = 1.2
"""Contention is learned only from ticks with at least this many batches in flight per pod on average: below,
the slowdown the others cause is too small a part of the measurement to tell."""
STEADY_ROUNDS = 30
"""Rounds of the steady-state batch iteration (next batch = what arrived during the current one), from 1."""

STEADY_MEMO_SIZE = 20_000
"""Steady states one model keeps (~200 bytes each): a plan at 1000 replicas and 4 instances asks a few thousand."""

Curve = tuple[tuple[float, ...], tuple[float, ...]]
"""(batch sizes, compute ms) of a model's points, sorted by batch size."""


class _Steady(NamedTuple):
    """predict()'s terms at one rate per replica that do not depend on the queue delay (past capacity only
    utilization means anything)."""

    utilization: float
    """Rate per replica over its capacity."""
    batch: float
    """Steady-state batch size."""
    service_s: float
    """Compute time of that batch with the candidate's instances."""
    busy: float
    """Fraction of the time every instance is busy."""
    residual_s: float
    """Wait for the batch in progress to end."""
    queue_s: float
    """Queueing beyond the next batch."""


@dataclass(frozen=True)
class Candidate:
    """One way to run the service: replicas and the dynamic-batching settings of each."""

    replicas: int
    max_batch_size: int
    max_queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...] = ()
    """Triton dispatches as soon as one of these can be formed, without waiting out the delay."""
    instance_count: int = 1
    """Model instances per pod: batches that run at once on one replica."""


@dataclass(frozen=True)
class Prediction:
    latency_ms: float
    """At the SLO percentile; math.inf when the candidate cannot keep up."""
    utilization: float
    """Arrival rate per replica over its capacity at the largest batch."""
    batch_size: float
    """Steady-state batch size each replica forms."""


@dataclass(frozen=True)
class CapacityModel:
    """Compute ms per batch size (seeded and learned points) plus latency the curve does not explain."""

    seed: tuple[tuple[float, float], ...] = ()
    """(batch size, compute ms) from an offline profile; empty when none was given."""
    learned: tuple[tuple[float, float], ...] = ()
    """(batch size bucket, compute ms) learned online, sorted by batch size."""
    overhead_ms: float = 0.0
    """Latency the curve does not explain (HTTP, framework, scheduling), learned online; >= 0."""
    contention: tuple[tuple[float, float], ...] = ()
    """(batch size bucket, how much each other batch in flight slows a batch of that size on the same GPU, 0..1),
    learned, sorted by batch size; empty: not measured yet (taken as 1 everywhere). seed and learned are the curve
    of a batch running alone; contention_at() reads this."""

    @classmethod
    def from_profile(cls, points: Iterable[tuple[float, float]]) -> CapacityModel:
        return cls(seed=tuple(sorted((float(b), float(ms)) for b, ms in points)))

    @property
    def known(self) -> bool:
        return bool(self.seed or self.learned)

    def _points(self) -> list[tuple[float, float]]:
        """Learned points override seed points of the same bucket."""
        merged = {_bucket(b): ms for b, ms in self.seed}
        merged.update(dict(self.learned))
        return sorted(merged.items())

    @cached_property
    def _curve(self) -> Curve:
        """_points() as two sorted tuples, built once per model: a plan interpolates thousands of times.
        (cached_property writes the instance's __dict__, which a frozen dataclass without slots allows; the
        fields, hence equality, hashing and replace(), are untouched.)"""
        points = self._points()
        return tuple(b for b, _ in points), tuple(ms for _, ms in points)

    @cached_property
    def _contention_curve(self) -> Curve:
        """contention as a piecewise-linear curve: the learned points, then 1 from twice the largest on."""
        if not self.contention:
            return (), ()
        xs = tuple(b for b, _ in self.contention)
        ys = tuple(c for _, c in self.contention)
        return (*xs, 2.0 * xs[-1]), (*ys, 1.0)

    def contention_at(self, batch_size: float) -> float:
        """How much each other batch in flight slows a batch of batch_size: the learned points, linear between
        them, the first one's below it; past the largest batch size measured it rises linearly to 1 at twice that
        size (not measured: no gain assumed there); 1 while nothing was measured."""
        xs, ys = self._contention_curve
        if not xs:
            return 1.0
        if batch_size <= xs[0]:
            return ys[0]
        if batch_size >= xs[-1]:
            return 1.0
        i = bisect_left(xs, batch_size) - 1
        return ys[i] + (ys[i + 1] - ys[i]) * (batch_size - xs[i]) / (xs[i + 1] - xs[i])

    @property
    def measured_contention(self) -> bool:
        """Whether batches were ever seen side by side (the planner probes one instance more until they were)."""
        return bool(self.contention)

    @cached_property
    def _capacities(self) -> dict[tuple[int, int], float]:
        """capacity_per_replica() per (max batch size, instances): asked for every replica count of a plan."""
        return {}

    @cached_property
    def _ranges(self) -> dict[tuple[float, float, int], tuple[float, float]]:
        """compute_range_ms() over whole candidate ranges (from batch 1), per (low, high, instances)."""
        return {}

    @cached_property
    def _steady_memo(self) -> dict[tuple[float, int, int, int], _Steady]:
        """_steady() per (rate per replica, largest batch, instances, percentile): a plan asks the same count for
        every queue delay. At most STEADY_MEMO_SIZE entries (then emptied): a model can outlive many ticks."""
        return {}

    def compute_ms(self, batch_size: float, instances: int = 1) -> float:
        """Compute time of one batch while `instances` batches run on the pod: interpolated between points,
        conservative beyond them."""
        if instances <= 1:
            return _interpolate(self._curve, batch_size)
        return (1.0 + self.contention_at(batch_size) * (instances - 1)) * _interpolate(self._curve, batch_size)

    def capacity_per_replica(self, max_batch_size: int, instances: int = 1) -> float:
        """Requests/s one replica serves at best, over batch sizes 1..max_batch_size."""
        found = self._capacities.get((max_batch_size, instances))
        if found is None:
            largest = float(max(1, max_batch_size))
            # One instance: b / compute_ms(b) is monotone between points, so its best is at a point or at an end.
            # More: compute_ms is a product of two linear pieces between the points of either curve, and its
            # best b / compute_ms(b) may lie inside a piece (_stationary).
            sizes = {1.0, largest, *self._breaks(1.0, largest, instances)}
            if instances > 1:
                sizes.update(self._stationary(1.0, largest, instances, throughput=True))
            found = max(instances * b / self.compute_ms(b, instances) * 1000.0 for b in sizes)
            self._capacities[(max_batch_size, instances)] = found
        return found

    def compute_range_ms(self, low: float, high: float, instances: int = 1) -> tuple[float, float]:
        """The least and the most compute time of a batch of low..high (1 <= low <= high): the curve is linear
        between points, so both are at an end or at a point between (up to rounding)."""
        key = (low, high, instances)
        found = self._ranges.get(key)
        if found is None:
            between = self._breaks(low, high, instances)
            if instances > 1:
                between = (*between, *self._stationary(low, high, instances, throughput=False))
            times = [self.compute_ms(b, instances) for b in (low, high, *between)]
            found = (min(times), max(times))
            if low == 1.0:  # the whole range of a candidate, asked again and again; others seldom repeat
                self._ranges[key] = found
        return found

    def _breaks(self, low: float, high: float, instances: int) -> tuple[float, ...]:
        """The points strictly inside low..high where compute_ms(b, instances) changes slope: the curve's, and
        with more than one instance the contention curve's."""
        xs = self._curve[0]
        inside = xs[bisect_right(xs, low):bisect_left(xs, high)]
        if instances > 1:
            cs = self._contention_curve[0]
            inside = (*inside, *cs[bisect_right(cs, low):bisect_left(cs, high)])
        return inside

    def _stationary(self, low: float, high: float, instances: int, throughput: bool) -> list[float]:
        """Where, inside a piece of low..high on which the curve and the contention are both linear, compute_ms
        (a product of two linear functions: a parabola) or b / compute_ms (throughput) has its extreme."""
        edges = sorted({low, high, *self._breaks(low, high, instances)})
        found = []
        for u, v in zip(edges, edges[1:], strict=False):
            if v <= u:
                continue
            f_u, f_v = _interpolate(self._curve, u), _interpolate(self._curve, v)
            g_u = 1.0 + self.contention_at(u) * (instances - 1)
            g_v = 1.0 + self.contention_at(v) * (instances - 1)
            s1, s2 = (f_v - f_u) / (v - u), (g_v - g_u) / (v - u)
            a1, a2 = f_u - s1 * u, g_u - s2 * u
            if s1 * s2 == 0.0:
                continue
            if throughput:  # d/db b / ((a1 + s1 b)(a2 + s2 b)) = 0 where s1 s2 b^2 = a1 a2
                square = a1 * a2 / (s1 * s2)
                b = math.sqrt(square) if square > 0 else math.nan
            else:  # d/db (a1 + s1 b)(a2 + s2 b) = 0
                b = -(s1 * a2 + s2 * a1) / (2.0 * s1 * s2)
            if u < b < v:
                found.append(b)
        return found

    def utilization(self, arrival_rate: float, candidate: Candidate) -> float:
        """predict()'s utilization, bit for bit. Never higher for more replicas (a rate divided by a larger count,
        each division rounded monotonically), so the counts within a bound are all those from the first one."""
        largest = batch_limits(candidate)[1]
        rate = max(0.0, arrival_rate) / max(1, candidate.replicas)
        return rate / self.capacity_per_replica(largest, max(1, candidate.instance_count))

    def predict(self, arrival_rate: float, candidate: Candidate, percentile: int) -> Prediction:
        """Latency at the percentile of one replica of the candidate, under Poisson arrivals.

        A replica with k instances is k servers fed by one batcher: each forms batches of what arrived during
        its own batch in progress, and an arrival waits for the first of them to free up.
        """
        replicas = max(1, candidate.replicas)
        k = max(1, candidate.instance_count)
        rate = max(0.0, arrival_rate) / replicas
        target, largest = batch_limits(candidate)
        steady = self._steady(rate, largest, k, percentile)
        if steady.utilization >= 1.0:
            return Prediction(math.inf, steady.utilization, float(largest))
        # Triton holds a batch short of the largest (or of the smallest preferred size) until its oldest request
        # has waited the queue delay; what arrived during the batch in progress already counts toward filling it.
        fill_s = 0.0
        if target > 1 and rate > 0:
            fill_s = max(0.0, min(candidate.max_queue_delay_us / 1e6, (target - 1) / rate) -
                         steady.busy * steady.service_s / k)
        latency_ms = (fill_s + steady.residual_s + steady.service_s + steady.queue_s) * 1000.0 + self.overhead_ms
        return Prediction(latency_ms, steady.utilization, steady.batch)

    def _steady(self, rate: float, largest: int, k: int, percentile: int) -> _Steady:
        """What predict() finds at `rate` per replica before the queue delay enters: utilization, batches,
        service, and the waits they cause."""
        key = (rate, largest, k, percentile)
        found = self._steady_memo.get(key)
        if found is not None:
            return found
        utilization = rate / self.capacity_per_replica(largest, k)
        if utilization >= 1.0:
            found = _Steady(utilization, float(largest), math.inf, 1.0, math.inf, math.inf)
        else:
            batch = self._steady_batch(rate, largest, k)
            service_s = self.compute_ms(batch, k) / 1000.0
            q = percentile / 100.0
            busy = min(1.0, rate * service_s / batch / k)
            # An arrival finding every instance busy waits for the first batch in progress to end.
            residual_s = service_s * q / k if busy > 1.0 - q else service_s * busy / k
            # Queueing beyond the next batch: heavy-traffic bulk-service approximation, exponential tail.
            queue_s = -math.log(1.0 - q) * service_s / (2.0 * largest * k) * utilization / (1.0 - utilization)
            found = _Steady(utilization, batch, service_s, busy, residual_s, queue_s)
        if len(self._steady_memo) >= STEADY_MEMO_SIZE:
            self._steady_memo.clear()
        self._steady_memo[key] = found
        return found

    def _steady_batch(self, rate: float, largest: int, k: int) -> float:
        """The batch a replica settles at: the next batch holds what arrived during the current one, STEADY_ROUNDS
        rounds from 1. It stops early only where the rounds left change nothing: at a fixed point, or in a cycle
        of two values (the rounds left alternate between them)."""
        # compute_ms(b, k) inlined for one instance: the same product, without a call per round.
        curve, top = self._curve, float(largest)
        older, batch = math.nan, 1.0
        for done in range(1, STEADY_ROUNDS + 1):
            ms = _interpolate(curve, batch) if k == 1 else self.compute_ms(batch, k)
            new = min(top, max(1.0, rate * ms / 1000.0 / k))
            if new == batch:
                return new
            if new == older:
                return new if (STEADY_ROUNDS - done) % 2 == 0 else batch
            older, batch = batch, new
        return batch

    def learn(self, batch_size: float, compute_ms: float) -> CapacityModel:
        """The model with one more measurement of the compute time of a batch of about batch_size running alone."""
        if not (batch_size >= 1.0 and compute_ms > 0.0 and math.isfinite(compute_ms)):
            return self
        key = _bucket(batch_size)
        table = dict(self.learned)
        table[key] = _average(table.get(key), compute_ms)
        return replace(self, learned=tuple(sorted(table.items())))

    def learn_contention(self, measured: Iterable[BatchSizeCompute], in_flight: float) -> CapacityModel:
        """The model after batches measured while `in_flight` of them ran on each pod on average:
        (batch size, mean compute ms, executions). A batch of b took 1 + contention(b) * (in_flight - 1) times its
        time alone, which moves the contention of b's bucket; unchanged below MIN_OVERLAP or without a curve to
        compare with."""
        if in_flight < MIN_OVERLAP or not self.known:
            return self
        table = dict(self.contention)
        for m in measured:
            if m.executions > 0 and m.compute_ms > 0 and m.batch_size >= 1.0:
                slowdown = m.compute_ms / _interpolate(self._curve, m.batch_size)
                seen = min(1.0, max(0.0, (slowdown - 1.0) / (in_flight - 1.0)))
                key = _bucket(m.batch_size)
                table[key] = _average(table.get(key), seen)
        return replace(self, contention=tuple(sorted(table.items())))

    def calibrate(self, observed_ms: float, predicted_without_overhead_ms: float) -> CapacityModel:
        """Learn the overhead from a fresh observation the curve alone under-predicts (never below zero)."""
        residual = max(0.0, observed_ms - predicted_without_overhead_ms)
        overhead = (1 - OVERHEAD_WEIGHT) * self.overhead_ms + OVERHEAD_WEIGHT * residual
        return replace(self, overhead_ms=overhead)


def _average(old: float | None, new: float) -> float:
    return new if old is None else (1 - LEARN_WEIGHT) * old + LEARN_WEIGHT * new


def batch_limits(candidate: Candidate) -> tuple[int, int]:
    """(target, largest): the batch Triton waits for (up to the queue delay), the largest it forms.

    With preferred sizes Triton sends the largest preferred size it can form (batches stop growing there) and
    dispatches as soon as the smallest can be formed; without, it waits to fill max_batch_size.
    """
    preferred = [p for p in candidate.preferred_batch_sizes if 1 <= p <= max(1, candidate.max_batch_size)]
    largest = max(preferred, default=max(1, candidate.max_batch_size))
    return min(preferred, default=largest), largest


def _interpolate(curve: Curve, batch_size: float) -> float:
    xs, ys = curve
    if not xs:
        raise ValueError("capacity model has no points: observe some traffic or give a profile")
    if batch_size <= xs[0]:
        return ys[0]
    if batch_size >= xs[-1]:
        return ys[-1] * batch_size / xs[-1]  # past the largest measured batch: no batching gain assumed
    # The first segment holding the size (xs strictly increase): a size on a point takes the segment ending there.
    i = bisect_left(xs, batch_size) - 1
    return ys[i] + (ys[i + 1] - ys[i]) * (batch_size - xs[i]) / (xs[i + 1] - xs[i])


def _bucket(batch_size: float) -> float:
    """Buckets of a quarter batch below 4, whole batches above: fine where GPU curves bend most."""
    return round(batch_size * 4) / 4 if batch_size < 4 else float(round(batch_size))
