"""One pod's Triton dynamic batcher and its model instances, as a discrete-event model.

Follows triton-inference-server/core `src/dynamic_batch_scheduler.cc` (BatcherThread waits for a free model
instance, then GetDynamicBatch decides) and `src/model_config_utils.cc` (NormalizeModelConfig: an empty
preferred_batch_size list becomes [max_batch_size]). One FIFO queue feeds `instance_count` instances; when an
instance is free and k requests have arrived, in GetDynamicBatch's order:
  1. k >= max_batch_size: dispatch max_batch_size;
  2. the oldest request has waited max_queue_delay_us (> 0): dispatch min(k, max_batch_size), ignoring the
     preferred sizes (Triton sends the whole pending batch once the delay is exceeded);
  3. some preferred size <= k: dispatch the largest such;
  4. max_queue_delay_us == 0: dispatch k;
  5. otherwise wait for the delay to expire or the queue to fill the next preferred size (or max_batch_size).
max_batch_size 0 (batching off) runs batches of 1 at once.
With a queue timeout (default_queue_policy, timeout_action REJECT), requests that waited longer than it when
the batcher looks at the queue (an instance free, at the start of the pending batch) are rejected without
running, as `src/scheduler_utils.cc` PriorityQueue::PolicyQueue::ApplyPolicy does; Triton answers them with
an error and counts them in nv_inference_request_failure.

Simplifications: requests have batch size 1, one queue timeout for all (no per-request override), no
priorities or shape constraints; a request that expires while the batcher waits for the delay is still run; a batch is formed
only when an instance is free (Triton's rate limiter may hold one payload ready ahead); a batch's duration is
`curve.ms(b) * (1 + c(b) * (n - 1)) * noise`, n the batches in flight once it starts (batches starting at
the same instant see each other), fixed at its start: later starts do not slow it down; c(b) is the curve's
measured contention at that batch size (ComputeCurve.contention: instances slow each other less at small batches)
unless one coefficient is given for every size.

Cost: Python works per batch, never per request; the queue is numpy arrays with a head index whose spare tail
is +inf, so `searchsorted(t)` counts the requests arrived by t.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from batchpilot.sim.profile import ComputeCurve
from batchpilot.sim.types import Batching, FloatArray

IntArray = npt.NDArray[np.int64]

NOISE_BLOCK = 4096
"""Lognormal draws per refill: drawing in blocks keeps the per-batch cost to a list index."""
MIN_CAPACITY = 4096
"""Smallest queue buffer, requests: an idle pod's buffer stays small, a loaded one doubles as it needs."""
NO_IDS: IntArray = np.zeros(0, np.int64)
NO_TIMES: FloatArray = np.zeros(0)
"""What advance() and take_rejected() return when nothing happened: shared, so read-only."""
NO_IDS.flags.writeable = NO_TIMES.flags.writeable = False


@dataclass
class BatchStats:
    """Triton's model statistics of one pod since its last (re)load, counted as each batch completes."""

    success: int = 0
    """Requests completed (nv_inference_request_success)."""
    failure: int = 0
    """Requests rejected by the queue timeout (nv_inference_request_failure, reason REJECTED)."""
    exec_count: int = 0
    """Batches executed (nv_inference_exec_count)."""
    queue_us: float = 0.0
    """Sum over requests of arrival to batch start, µs (nv_inference_queue_duration_us)."""
    compute_us: float = 0.0
    """Sum over requests of their batch's duration, µs (nv_inference_compute_infer_duration_us)."""
    per_batch: dict[int, tuple[int, float]] = field(default_factory=dict)
    """Batch size -> (executions, sum of their compute ms): Triton's batch_stats."""

    def copy(self) -> BatchStats:
        """An independent snapshot (the engine diffs two of them for rates)."""
        return BatchStats(self.success, self.failure, self.exec_count, self.queue_us, self.compute_us,
                          dict(self.per_batch))


class BatchRecord(NamedTuple):
    """One executed batch, kept only with `log_batches=True` (tests, debugging)."""

    start_s: float
    end_s: float
    ids: IntArray


class _Flight(NamedTuple):
    """A batch in flight; the heap orders by end, then by start order."""

    end: float
    seq: int
    start: float
    size: int
    epoch: int
    """`reloads` when it started: a batch of the previous load does not count in the new statistics."""
    ids: IntArray
    arrivals: FloatArray


@dataclass(frozen=True)
class _Rules:
    """One Batching turned into lookup tables, so a decision is a few integer comparisons."""

    max_batch: int
    """0: batching off."""
    delay_s: float
    timeout_s: float
    """Queue timeout, seconds; 0: none."""
    largest_preferred: tuple[int, ...]
    """k (0..max_batch-1) -> largest preferred size <= k, 0 if none."""
    next_target: tuple[int, ...]
    """k (0..max_batch-1) -> smallest of preferred sizes and max_batch above k: the fill that sends now."""

    def size_now(self, k: int, t: float, oldest: float) -> int:
        """Requests to dispatch at t with k arrived and the oldest arrived at `oldest`; 0: wait."""
        if k >= self.max_batch:
            return self.max_batch
        if self.delay_s > 0 and t >= oldest + self.delay_s:
            return k
        preferred = self.largest_preferred[k]
        if preferred:
            return preferred
        return k if self.delay_s == 0 else 0


def _rules(batching: Batching) -> _Rules:
    m = batching.max_batch_size
    if m < 0 or batching.max_queue_delay_us < 0 or batching.instance_count < 1 or batching.queue_timeout_us < 0:
        raise ValueError(f"invalid batching {batching}: need max_batch_size >= 0, delay >= 0, instances >= 1, "
                         "queue timeout >= 0")
    preferred = sorted(set(batching.preferred_batch_sizes)) if m else []
    if any(not 1 <= p <= m for p in preferred):
        raise ValueError(
            f"preferred_batch_sizes {preferred} must lie in 1..max_batch_size {m} (Triton refuses)"
        )
    # An empty list means [max_batch_size] (NormalizeModelConfig): rule 1 and next_target cover that already.
    largest = tuple(max((p for p in preferred if p <= k), default=0) for k in range(m))
    targets = tuple(min([p for p in preferred if p > k] + [m]) for k in range(m))
    return _Rules(m, batching.max_queue_delay_us / 1e6, batching.queue_timeout_us / 1e6, largest, targets)


class ReplicaBatcher:
    """One pod: a FIFO queue, Triton's dynamic batcher, `instance_count` model instances on one GPU."""

    def __init__(
        self,
        curve: ComputeCurve,
        batching: Batching,
        rng: np.random.Generator,
        *,
        noise_cv: float = 0.03,
        contention: float | None = 1.0,
        start_s: float = 0.0,
        log_batches: bool = False,
    ) -> None:
        """contention: one coefficient for every batch size; None: the curve's measured one per batch size (1
        where it has none)."""
        if noise_cv < 0 or (contention is not None and contention < 0):
            raise ValueError(f"noise_cv and contention must be >= 0, got {noise_cv}, {contention}")
        self.curve = curve
        self._rng = rng
        self._contention = contention
        sigma2 = math.log1p(noise_cv**2)  # lognormal with mean 1 and coefficient of variation noise_cv
        self._noise_sigma = math.sqrt(sigma2)
        self._noise_mu = -sigma2 / 2
        self._noise: list[float] = []
        self._noise_i = 0
        self._arr: FloatArray = np.full(MIN_CAPACITY, np.inf)
        self._ids: IntArray = np.zeros(MIN_CAPACITY, np.int64)
        self._head = 0
        self._tail = 0
        self._flight: list[_Flight] = []
        self._seq = 0
        self._executing = 0
        self._clock = start_s
        self._acct_t = start_s
        self._pause_until = -math.inf
        self._reloads_due: list[tuple[float, float, Batching]] = []
        self._done: list[_Flight] = []
        """Completed batches not yet added to `stats` (added in bulk, vectorized)."""
        self._rejected: list[tuple[IntArray, float]] = []
        """(ids, time) of requests rejected by the queue timeout, not yet taken by take_rejected()."""
        self._set_batching(batching)
        self.stats = BatchStats()
        self.busy_s = 0.0
        """Cumulative time at least one batch was in flight (GPU utilization is its derivative)."""
        self.batch_time_s = 0.0
        """Integral of batches in flight over time: the sum of batch durations once they end."""
        self.reloads = 0
        self.batch_log: list[BatchRecord] | None = [] if log_batches else None

    def _set_batching(self, batching: Batching) -> None:
        self._rules = _rules(batching)
        self.batching = batching
        sizes = range(max(batching.max_batch_size, 1) + 1)
        self._batch_s = [self.curve.ms(max(b, 1)) / 1000.0 for b in sizes]
        c = self._contention
        self._contention_b = [self.curve.contention_at(max(b, 1)) if c is None else c for b in sizes]

    @property
    def clock(self) -> float:
        """Simulated time reached by the last advance()."""
        return self._clock

    @property
    def queued(self) -> int:
        """Requests arrived by the clock and waiting (nv_inference_pending_request_count)."""
        # max: drain_queue may have taken requests that arrive after the clock
        return max(0, int(self._arr.searchsorted(self._clock, "right")) - self._head)

    @property
    def executing(self) -> int:
        return self._executing

    @property
    def batches_in_flight(self) -> int:
        return len(self._flight)

    def enqueue(self, arrivals: FloatArray, ids: IntArray) -> None:
        """Requests routed to this pod: sorted arrival times, none before an earlier enqueued one.

        Enqueue every arrival up to `until_s` before advance(until_s); one earlier than the clock is taken as
        waiting since its arrival (its queue time counts from there).
        """
        m = len(arrivals)
        if m == 0:
            return
        if len(ids) != m:
            raise ValueError(f"{m} arrivals but {len(ids)} ids")
        last = self._arr[self._tail - 1] if self._tail else -math.inf
        if arrivals[0] < last or (m > 1 and bool((arrivals[1:] < arrivals[:-1]).any())):
            raise ValueError("arrivals must be sorted and not before an arrival enqueued earlier")
        if self._tail + m > len(self._arr):
            self._rebuild(m)
        self._arr[self._tail : self._tail + m] = arrivals
        self._ids[self._tail : self._tail + m] = ids
        self._tail += m

    def _rebuild(self, extra: int) -> None:
        """New buffers holding the waiting requests plus room; views held by batches keep the old ones."""
        live = self._tail - self._head
        capacity = max(MIN_CAPACITY, 2 * (live + extra))
        arr = np.full(capacity, np.inf)
        ids = np.zeros(capacity, np.int64)
        arr[:live] = self._arr[self._head : self._tail]
        ids[:live] = self._ids[self._head : self._tail]
        self._arr, self._ids, self._head, self._tail = arr, ids, 0, live

    def drain_queue(self) -> IntArray:
        """Remove every request not yet in a batch (arrived or not) and return their ids (a pod going away).

        Later arrivals must still come no earlier than the last one enqueued, drained or not."""
        taken = self._ids[self._head : self._tail].copy()
        self._head = self._tail
        return taken

    def reconfigure(self, batching: Batching, at_s: float, pause_s: float) -> None:
        """A live model reload: no batch starts in [at_s, at_s + pause_s) (at_s no earlier than the clock),
        batches in flight finish, then the new batching applies and `stats` restart from zero."""
        _rules(batching)  # refuse an invalid config now, not when the reload comes due
        at = max(at_s, self._clock)
        if pause_s < 0 or (self._reloads_due and at < self._reloads_due[-1][0]):
            raise ValueError(f"reload at {at_s} s for {pause_s} s: pause must be >= 0, reloads in time order")
        self._reloads_due.append((at, pause_s, batching))

    def advance(self, until_s: float) -> tuple[IntArray, FloatArray]:
        """Run to until_s; (ids, completion times) of the requests whose batch ended in (clock, until_s]."""
        if until_s < self._clock:
            raise ValueError(f"cannot advance to {until_s} s: already at {self._clock} s")
        ended: list[_Flight] = []
        instances = self.batching.instance_count
        while True:
            t_end = self._flight[0].end if self._flight else math.inf
            t_reload = self._reloads_due[0][0] if self._reloads_due else math.inf
            plan = None
            if len(self._flight) < instances:
                plan = self._plan(max(self._clock, self._pause_until))
            t = min(t_end, t_reload, plan[0] if plan else math.inf)
            if t > until_s:
                break
            self._account(t)
            self._clock = t
            if t_end == t:  # completions first: the freed instance may start the next batch at once
                ended.append(self._complete())
            elif t_reload == t:
                self._reload(t)
                instances = self.batching.instance_count
            elif plan is not None:
                self._start(t, plan[1], instances)
        self._account(until_s)
        self._clock = until_s
        self._flush_stats()
        if not ended:
            return NO_IDS, NO_TIMES
        ids = np.concatenate([f.ids for f in ended])
        ends = np.repeat(np.array([f.end for f in ended]), [f.size for f in ended])
        return ids, ends

    def take_rejected(self) -> tuple[IntArray, FloatArray]:
        """(ids, rejection times) of the requests the queue timeout rejected since the last call."""
        if not self._rejected:
            return NO_IDS, NO_TIMES
        ids = np.concatenate([i for i, _ in self._rejected])
        times = np.repeat(np.array([t for _, t in self._rejected]), [len(i) for i, _ in self._rejected])
        self._rejected = []
        return ids, times

    def _expire(self, t: float) -> None:
        """Reject the requests at the head that have waited longer than the queue timeout at t."""
        cutoff = t - self._rules.timeout_s
        end = int(self._arr.searchsorted(cutoff, "left"))  # arrived before the cutoff: expired (now > t + timeout)
        if end > self._head:
            end = min(end, self._tail)
            self._rejected.append((self._ids[self._head:end].copy(), t))
            self.stats.failure += end - self._head
            self._head = end

    def _plan(self, t0: float) -> tuple[float, int] | None:
        """(time, size) of the next batch if an instance is free from t0 and nothing else is enqueued."""
        if self._rules.timeout_s > 0 and self._head < self._tail:
            self._expire(max(t0, float(self._arr[self._head])))
        head = self._head
        if head >= self._tail:
            return None
        arr, rules = self._arr, self._rules
        oldest = float(arr[head])
        t = t0 if t0 >= oldest else oldest
        if rules.max_batch == 0:
            return t, 1
        k = int(arr.searchsorted(t, "right")) - head
        size = rules.size_now(k, t, oldest)
        if size:
            return t, size
        # Waiting: the sooner of the queue filling the next target size and the oldest's delay expiring.
        deadline = oldest + rules.delay_s
        fill_i = head + rules.next_target[k] - 1
        filled = fill_i < self._tail and arr[fill_i] < deadline
        t = float(arr[fill_i]) if filled else deadline
        return t, rules.size_now(int(arr.searchsorted(t, "right")) - head, t, oldest)

    def _start(self, t: float, size: int, instances: int) -> None:
        """Start the batch planned at t, and any more that start at the same instant on free instances."""
        group = []
        while True:
            group.append((self._head, self._head + size))
            self._head += size
            if len(self._flight) + len(group) >= instances:
                break
            plan = self._plan(t)
            if plan is None or plan[0] != t:
                break
            size = plan[1]
        others = len(self._flight) + len(group) - 1
        for lo, hi in group:
            slowdown = 1.0 + self._contention_b[hi - lo] * others
            duration = self._batch_s[hi - lo] * slowdown * self._noise_factor()
            flight = _Flight(
                t + duration, self._seq, t, hi - lo, self.reloads, self._ids[lo:hi], self._arr[lo:hi]
            )
            heapq.heappush(self._flight, flight)
            self._seq += 1
            self._executing += hi - lo

    def _complete(self) -> _Flight:
        flight = heapq.heappop(self._flight)
        self._executing -= flight.size
        if flight.epoch == self.reloads:
            self._done.append(flight)
        if self.batch_log is not None:
            self.batch_log.append(BatchRecord(flight.start, flight.end, flight.ids))
        return flight

    def _reload(self, t: float) -> None:
        _, pause_s, batching = self._reloads_due.pop(0)
        self._flush_stats()
        self.stats = BatchStats()
        self.reloads += 1
        self._pause_until = t + pause_s
        self._set_batching(batching)

    def _noise_factor(self) -> float:
        if self._noise_sigma == 0.0:
            return 1.0
        if self._noise_i >= len(self._noise):
            self._noise = self._rng.lognormal(self._noise_mu, self._noise_sigma, NOISE_BLOCK).tolist()
            self._noise_i = 0
        self._noise_i += 1
        return self._noise[self._noise_i - 1]

    def _account(self, t: float) -> None:
        """Integrate busy time and batches in flight up to t (call before the set in flight changes)."""
        if self._flight and t > self._acct_t:
            self.busy_s += t - self._acct_t
            self.batch_time_s += len(self._flight) * (t - self._acct_t)
        self._acct_t = t

    def _flush_stats(self) -> None:
        """Add the completed batches to `stats`, vectorized over all of them."""
        if not self._done:
            return
        if len(self._done) == 1:
            self._flush_one(self._done.pop())
            return
        sizes = np.array([f.size for f in self._done])
        starts = np.array([f.start for f in self._done])
        durations = np.array([f.end - f.start for f in self._done])
        arrivals = np.concatenate([f.arrivals for f in self._done])
        self._done = []
        st = self.stats
        st.success += int(sizes.sum())
        st.exec_count += len(sizes)
        st.compute_us += float(sizes @ durations) * 1e6
        st.queue_us += float((np.repeat(starts, sizes) - arrivals).sum()) * 1e6
        counts = np.bincount(sizes)
        ms_sums = np.bincount(sizes, weights=durations) * 1000.0
        for b in np.flatnonzero(counts).tolist():
            executions, ms = st.per_batch.get(b, (0, 0.0))
            st.per_batch[b] = (executions + int(counts[b]), ms + float(ms_sums[b]))

    def _flush_one(self, f: _Flight) -> None:
        """_flush_stats for one batch (the usual case) without building arrays: the same sums, the same bits."""
        st = self.stats
        duration = f.end - f.start
        st.success += f.size
        st.exec_count += 1
        st.compute_us += f.size * duration * 1e6
        st.queue_us += float((f.start - f.arrivals).sum()) * 1e6
        executions, ms = st.per_batch.get(f.size, (0, 0.0))
        st.per_batch[f.size] = (executions + 1, ms + duration * 1000.0)
