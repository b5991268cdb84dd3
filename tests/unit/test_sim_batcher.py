"""One pod's dynamic batcher: hand-computed schedules, statistics, reloads, and invariants under random load.

The test curve costs 10 ms at batch 1 plus 2 ms per extra request (ms(b) = 10 + 2 (b - 1)), with no noise
unless a test says so, so every completion time below is worked out by hand.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpilot.sim.batcher import ReplicaBatcher
from batchpilot.sim.profile import ComputeCurve
from batchpilot.sim.types import Batching

CURVE = ComputeCurve("test", ((1, 10.0), (16, 40.0)))


def batcher(
    batching: Batching, *, contention: float = 1.0, noise_cv: float = 0.0, seed: int = 0
) -> ReplicaBatcher:
    return ReplicaBatcher(
        CURVE,
        batching,
        np.random.default_rng(seed),
        noise_cv=noise_cv,
        contention=contention,
        log_batches=True,
    )


def feed(b: ReplicaBatcher, arrivals: list[float], first_id: int = 0) -> None:
    b.enqueue(
        np.array(arrivals, dtype=np.float64), np.arange(first_id, first_id + len(arrivals), dtype=np.int64)
    )


def completions(b: ReplicaBatcher, until: float) -> list[float]:
    """Completion time of each id, in id order, after advancing to until."""
    ids, times = b.advance(until)
    return times[np.argsort(ids)].tolist()


@pytest.mark.parametrize(
    ("batching", "contention", "arrivals", "want"),
    [
        # waits 5 ms for the oldest, then sends the 3 that arrived: starts 0.005, 14 ms
        pytest.param(
            Batching(8, 5000), 1.0, [0, 0.001, 0.002], [0.019] * 3, id="delay-waits-then-dispatches"
        ),
        # the 4th arrival fills max 4 at 0.003 (16 ms); the 5th waits for its own 100 ms delay, alone
        pytest.param(
            Batching(4, 100_000),
            1.0,
            [0, 0.001, 0.002, 0.003, 0.004],
            [0.019] * 4 + [0.114],
            id="max-batch-at-once",
        ),
        # 2 is preferred at 0.001 (12 ms); at 0.013 five wait: the largest preferred <= 5 is 4 (16 ms);
        # the last one waits out its delay: 0.006 + 0.1, then 10 ms
        pytest.param(
            Batching(8, 100_000, (2, 4)),
            1.0,
            [0, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006],
            [0.013] * 2 + [0.029] * 4 + [0.116],
            id="largest-preferred-at-once",
        ),
        # once the oldest waited past the delay, Triton sends all it has, not the preferred size
        pytest.param(
            Batching(8, 2000, (2,)),
            1.0,
            [0, 0.001, 0.002, 0.003, 0.004],
            [0.013] * 2 + [0.027] * 3,
            id="expired-delay-sends-all-not-preferred",
        ),
        pytest.param(Batching(8, 0), 1.0, [0, 0.001, 0.002, 0.003], [0.010] + [0.024] * 3, id="delay-zero"),
        # with no delay a preferred size still comes first (GetDynamicBatch): 1, then 2 of 3, then 1
        pytest.param(
            Batching(8, 0, (2,)),
            1.0,
            [0, 0.001, 0.002, 0.003],
            [0.010, 0.022, 0.022, 0.032],
            id="delay-zero-preferred",
        ),
        pytest.param(Batching(0, 0), 1.0, [0, 0, 0], [0.010, 0.020, 0.030], id="batching-off"),
        pytest.param(Batching(0, 0, (), 2), 0.0, [0, 0], [0.010, 0.010], id="two-instances-no-contention"),
        pytest.param(
            Batching(0, 0, (), 2), 1.0, [0, 0], [0.020, 0.020], id="two-instances-contention-doubles"
        ),
        # the first runs alone (10 ms); the second starts beside it and takes 20 ms, fixed at its start
        pytest.param(Batching(1, 0, (), 2), 1.0, [0, 0.005], [0.010, 0.025], id="contention-fixed-at-start"),
    ],
)
def test_schedule(batching: Batching, contention: float, arrivals: list[float], want: list[float]) -> None:
    b = batcher(batching, contention=contention)
    feed(b, arrivals)
    assert completions(b, 1.0) == pytest.approx(want, abs=1e-12)


def test_counters_count_at_completion() -> None:
    b = batcher(Batching(8, 5000))
    feed(b, [0, 0.001, 0.002])
    assert completions(b, 0.0015) == []
    assert (b.queued, b.executing, b.batches_in_flight) == (2, 0, 0)
    assert completions(b, 0.010) == []
    assert (b.queued, b.executing, b.batches_in_flight, b.stats.success, b.stats.exec_count) == (
        0,
        3,
        1,
        0,
        0,
    )
    completions(b, 1.0)
    st_ = b.stats
    assert (st_.success, st_.exec_count, st_.per_batch) == (3, 1, {3: (1, pytest.approx(14.0))})
    assert st_.queue_us == pytest.approx(5000 + 4000 + 3000)
    assert st_.compute_us == pytest.approx(3 * 14_000)
    assert (b.busy_s, b.batch_time_s) == (pytest.approx(0.014), pytest.approx(0.014))


def test_queue_timeout_rejects_expired_requests_without_running_them() -> None:
    # One instance, batches of 1, no delay: 0 runs 0-10 ms, 1 runs 10-20 ms; 2 and 3 arrived at 0 and have
    # waited 20 ms when the instance frees at 20 ms: past the 15 ms timeout, rejected there; 4 (arrived 12 ms)
    # has waited 8 ms and runs 20-30 ms.
    b = batcher(Batching(1, 0, queue_timeout_us=15_000))
    feed(b, [0, 0, 0, 0, 0.012])
    ids, times = b.advance(1.0)
    assert dict(zip(ids.tolist(), times.tolist(), strict=True)) == pytest.approx({0: 0.010, 1: 0.020, 4: 0.030})
    rejected, at = b.take_rejected()
    assert rejected.tolist() == [2, 3] and at.tolist() == pytest.approx([0.020, 0.020])
    assert (b.stats.success, b.stats.failure, b.queued) == (3, 2, 0)
    assert b.take_rejected()[0].tolist() == [], "taken once"


def test_queue_timeout_zero_never_rejects() -> None:
    b = batcher(Batching(1, 0))
    feed(b, [0] * 50)
    ids, _ = b.advance(10.0)
    assert len(ids) == 50 and b.stats.failure == 0 and len(b.take_rejected()[0]) == 0


def test_busy_and_batch_time_with_two_batches_side_by_side() -> None:
    b = batcher(Batching(0, 0, (), 2))
    feed(b, [0, 0])
    b.advance(0.010)  # halfway: both accounted up to the call's end
    assert (b.busy_s, b.batch_time_s) == (pytest.approx(0.010), pytest.approx(0.020))
    b.advance(1.0)
    assert (b.busy_s, b.batch_time_s) == (pytest.approx(0.020), pytest.approx(0.040))


def test_reload_pauses_dispatch_and_restarts_statistics() -> None:
    b = batcher(Batching(4, 0))
    feed(b, [0.0])
    assert completions(b, 0.5) == pytest.approx([0.010])
    assert b.stats.success == 1
    b.reconfigure(Batching(8, 0), at_s=1.0, pause_s=0.5)
    feed(b, [0.995, 1.1, 1.2], first_id=1)
    assert completions(b, 1.2) == pytest.approx([1.005])  # in flight across the reload: it finishes
    assert (b.reloads, b.stats.success, b.queued) == (1, 0, 2)  # an old-load batch does not count anew
    assert completions(b, 2.0) == pytest.approx([1.512, 1.512])  # both wait for the pause end, one batch
    assert (b.stats.success, b.stats.exec_count, b.stats.per_batch) == (2, 1, {2: (1, pytest.approx(12.0))})
    assert b.stats.queue_us == pytest.approx((0.4 + 0.3) * 1e6)
    assert b.batching == Batching(8, 0)


def test_advance_returns_each_completion_once_across_calls() -> None:
    b = batcher(Batching(4, 0))
    feed(b, [0.995])
    ids, times = b.advance(1.0)
    assert len(ids) == 0 and b.executing == 1  # the batch runs across 1.0
    ids, times = b.advance(2.0)
    assert ids.tolist() == [0] and times.tolist() == pytest.approx([1.005])
    assert len(b.advance(3.0)[0]) == 0


def test_drain_queue_returns_waiting_requests() -> None:
    b = batcher(Batching(8, 100_000))
    feed(b, [0, 0.001, 5.0])
    b.advance(0.002)
    assert b.drain_queue().tolist() == [0, 1, 2]
    assert (b.queued, len(b.advance(10.0)[0])) == (0, 0)


@pytest.mark.parametrize(
    ("batching", "match"),
    [
        pytest.param(Batching(4, 0, (8,)), "preferred", id="preferred-above-max"),
        pytest.param(Batching(4, -1), "invalid", id="negative-delay"),
        pytest.param(Batching(4, 0, (), 0), "invalid", id="no-instance"),
    ],
)
def test_invalid_batching_is_refused(batching: Batching, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        batcher(batching)
    with pytest.raises(ValueError, match=match):
        batcher(Batching(4, 0)).reconfigure(batching, 0.0, 1.0)


def test_misuse_is_refused() -> None:
    b = batcher(Batching(4, 0))
    feed(b, [1.0])
    with pytest.raises(ValueError, match="sorted"):
        feed(b, [0.5])
    with pytest.raises(ValueError, match="sorted"):
        feed(b, [2.0, 1.5])
    b.advance(2.0)
    with pytest.raises(ValueError, match="already at"):
        b.advance(1.0)


def test_noise_is_lognormal_with_mean_one_and_deterministic_per_seed() -> None:
    def durations(seed: int) -> np.ndarray:
        b = batcher(Batching(0, 0), noise_cv=0.5, seed=seed)
        feed(b, [float(i) for i in range(4000)])
        b.advance(5000.0)
        assert b.batch_log is not None
        return np.array([r.end_s - r.start_s for r in b.batch_log])

    first = durations(7)
    assert first.mean() == pytest.approx(0.010, rel=0.03)
    assert first.std() / first.mean() == pytest.approx(0.5, rel=0.1)
    assert np.array_equal(first, durations(7))
    assert not np.array_equal(first, durations(8))


# --- properties under random load -------------------------------------------------------------------------

arrival_lists = st.lists(st.floats(0.0, 0.3, allow_nan=False), min_size=1, max_size=40).map(sorted)


@st.composite
def batchings(draw: st.DrawFn, max_instances: int = 3) -> Batching:
    m = draw(st.integers(0, 6))
    preferred = tuple(draw(st.sets(st.integers(1, m), max_size=3))) if m else ()
    return Batching(
        m, draw(st.sampled_from([0, 1000, 5000, 20_000])), preferred, draw(st.integers(1, max_instances))
    )


def run_in_steps(b: ReplicaBatcher, arrivals: list[float], step: float) -> tuple[np.ndarray, np.ndarray]:
    """Enqueue each step's arrivals before advancing to its end, as the engine does; then run far."""
    a = np.array(arrivals)
    ids_out, times_out, lo = [], [], 0
    for k in range(math.ceil(1.0 / step)):
        t, until = k * step, (k + 1) * step
        hi = int(np.searchsorted(a, until, side="right"))
        b.enqueue(a[lo:hi], np.arange(lo, hi, dtype=np.int64))
        lo = hi
        ids, times = b.advance(until)
        assert np.all((times > t) & (times <= until))  # each completion in the call that covers it
        ids_out.append(ids)
        times_out.append(times)
    ids, times = b.advance(100.0)
    return np.concatenate([*ids_out, ids]), np.concatenate([*times_out, times])


@settings(max_examples=150, deadline=None)
@given(
    arrival_lists,
    batchings(),
    st.sampled_from([0.0, 0.5, 1.0]),
    st.sampled_from([0.0, 0.2]),
    st.sampled_from([0.001, 0.007, 0.05]),
)
def test_conservation_fifo_and_instance_limit(
    arrivals: list[float], batching: Batching, contention: float, noise_cv: float, step: float
) -> None:
    b = batcher(batching, contention=contention, noise_cv=noise_cv)
    ids, times = run_in_steps(b, arrivals, step)
    n = len(arrivals)
    assert sorted(ids.tolist()) == list(range(n))  # every request completes exactly once
    latency = times - np.array(arrivals)[ids]
    assert np.all(latency > 0)
    if noise_cv == 0:  # the test curve rises with the batch, and contention only slows: batch 1 is a floor
        assert np.all(latency >= CURVE.ms(1) / 1000 - 1e-12)
    assert b.batch_log is not None
    log = sorted(b.batch_log, key=lambda r: (r.start_s, int(r.ids[0])))
    assert np.concatenate([r.ids for r in log]).tolist() == list(range(n))  # FIFO order of batch start
    for r in log:
        assert len(r.ids) <= max(batching.max_batch_size, 1)
        assert r.start_s >= max(arrivals[i] for i in r.ids)  # none starts before its requests arrive
    events = sorted([(r.start_s, 1) for r in log] + [(r.end_s, -1) for r in log])  # ends first at ties
    assert max(np.cumsum([d for _, d in events])) <= batching.instance_count
    assert (b.stats.success, b.stats.exec_count, b.queued, b.executing) == (n, len(log), 0, 0)
    assert b.batch_time_s == pytest.approx(sum(r.end_s - r.start_s for r in log))
    assert b.busy_s <= b.batch_time_s + 1e-12


@settings(max_examples=100, deadline=None)
@given(arrival_lists, batchings(), st.sampled_from([1000, 15_000, 80_000]), st.sampled_from([0.001, 0.05]))
def test_queue_timeout_conserves_requests_and_runs_none_expired(
    arrivals: list[float], batching: Batching, timeout_us: int, step: float
) -> None:
    b = batcher(replace(batching, queue_timeout_us=timeout_us))
    ids, _ = run_in_steps(b, arrivals, step)
    rejected, at = b.take_rejected()
    assert sorted(ids.tolist() + rejected.tolist()) == list(range(len(arrivals)))  # each exactly once
    assert (b.stats.success, b.stats.failure) == (len(ids), len(rejected))
    a = np.array(arrivals)
    assert np.all(at - a[rejected] > timeout_us / 1e6)  # only expired requests are rejected
    assert b.batch_log is not None
    for r in b.batch_log:  # none starts a batch after expiring, but for the delay the batcher waited
        assert r.start_s <= float(a[r.ids].min()) + (timeout_us + batching.max_queue_delay_us) / 1e6 + 1e-12


def reference_one_instance(arrivals: list[float], batching: Batching) -> list[float]:
    """Completion times by stepping from arrival to arrival: the rules restated, one request at a time."""
    m, delay = batching.max_batch_size, batching.max_queue_delay_us / 1e6
    preferred = sorted(batching.preferred_batch_sizes) or [m]
    done, free_at, i, n = [0.0] * len(arrivals), 0.0, 0, len(arrivals)
    while i < n:
        t = max(free_at, arrivals[i])
        while True:
            k = sum(1 for a in arrivals[i:] if a <= t)
            fits = [p for p in preferred if p <= k]
            if m == 0 or k >= m or (delay > 0 and t >= arrivals[i] + delay):
                size = 1 if m == 0 else min(k, m)
            elif fits or delay == 0:
                size = max(fits) if fits else k
            else:
                t = min(arrivals[i + k] if i + k < n else math.inf, arrivals[i] + delay)
                continue
            break
        free_at = t + CURVE.ms(size) / 1000
        done[i : i + size] = [free_at] * size
        i += size
    return done


@settings(max_examples=150, deadline=None)
@given(arrival_lists, batchings(max_instances=1), st.sampled_from([0.001, 0.013, 0.3]))
def test_one_instance_matches_a_request_by_request_reference(
    arrivals: list[float], batching: Batching, step: float
) -> None:
    ids, times = run_in_steps(batcher(batching), arrivals, step)
    assert times[np.argsort(ids)].tolist() == pytest.approx(
        reference_one_instance(arrivals, batching), abs=1e-9
    )


@settings(max_examples=100, deadline=None)
@given(arrival_lists, arrival_lists)
def test_more_load_never_finishes_a_request_earlier_without_batching(
    base: list[float], extra: list[float]
) -> None:
    """Batching off, one instance: a FIFO queue with fixed service, where departure = max(arrival, previous
    departure) + service rises with every added request (Lindley), so busy time rises too."""
    merged = sorted([(a, 0, i) for i, a in enumerate(base)] + [(a, 1, i) for i, a in enumerate(extra)])
    alone, crowded = batcher(Batching(0, 0)), batcher(Batching(0, 0))
    feed(alone, base)
    alone_times = completions(alone, 100.0)
    crowded.enqueue(np.array([a for a, _, _ in merged]), np.arange(len(merged), dtype=np.int64))
    crowded_times = completions(crowded, 100.0)
    for pos, (_, extra_flag, i) in enumerate(merged):
        if not extra_flag:
            assert crowded_times[pos] >= alone_times[i] - 1e-12
    assert crowded.busy_s >= alone.busy_s - 1e-12


def test_the_curves_contention_applies_per_batch_size() -> None:
    """contention None: each batch in flight with others is slowed by its own size's measured coefficient. Two
    instances, two batches of 1 at once (c 0.25): 10 ms * 1.25 each; two batches of 16 at once (c 0.75): 40 ms *
    1.75 each."""
    curve = replace(CURVE, contention=((1, 0.25), (16, 0.75)))
    small = ReplicaBatcher(curve, Batching(1, 0, (), 2), np.random.default_rng(0), noise_cv=0.0, contention=None)
    feed(small, [0, 0])
    assert completions(small, 1.0) == pytest.approx([0.0125, 0.0125], abs=1e-12)
    large = ReplicaBatcher(curve, Batching(16, 0, (), 2), np.random.default_rng(0), noise_cv=0.0, contention=None)
    feed(large, [0.0] * 16)  # one batch of 16 alone: no contention
    assert completions(large, 1.0) == pytest.approx([0.040] * 16, abs=1e-12)
    feed(large, [1.0] * 32, first_id=16)  # 32 at once: two batches of 16 side by side
    assert completions(large, 2.0) == pytest.approx([1.070] * 32, abs=1e-12)
    # A coefficient given for every size overrides the curve's.
    flat = ReplicaBatcher(curve, Batching(1, 0, (), 2), np.random.default_rng(0), noise_cv=0.0, contention=1.0)
    feed(flat, [0, 0])
    assert completions(flat, 1.0) == pytest.approx([0.020, 0.020], abs=1e-12)
