"""Many services on one GPU pool (sim/cluster.py): alone-equivalence with GPUs to spare, the pool's limit and its
oldest-first queue across services when full."""

from __future__ import annotations

import numpy as np
import pytest
from tests.unit.test_sim_engine import FIXED_30S, Stub, after, config, even, poisson

from batchpilot.sim.cluster import ServiceRun, pending_seconds, simulate_cluster
from batchpilot.sim.engine import Simulation, simulate
from batchpilot.sim.lifecycle import Fleet, GpuPool, Phase
from batchpilot.sim.types import Action, ColdStart, RunRecord, View


def same_run(a: RunRecord, b: RunRecord) -> None:
    np.testing.assert_array_equal(a.latency_ms, b.latency_ms)
    assert a.gpu_seconds == b.gpu_seconds
    assert (a.timeline_replicas, a.timeline_ready, a.timeline_billed) == (
        b.timeline_replicas, b.timeline_ready, b.timeline_billed)
    assert (a.scale_events, a.cold_starts, a.reloads) == (b.scale_events, b.cold_starts, b.reloads)


def steps(*plan: tuple[float, int]) -> Stub:
    """A policy that asks for plan's replicas from each time on, e.g. (15, 3), (45, 1)."""
    def rule(view: View) -> Action:
        wanted = [r for t, r in plan if view.at >= t]
        return Action(wanted[-1] if wanted else view.replicas)
    return Stub(1, rule)


def test_services_with_gpus_to_spare_run_exactly_as_alone() -> None:
    cfg = config(cold_start=ColdStart("short", 5.0, 25.0))
    plans = [((15.0, 3), (60.0, 1)), ((30.0, 4),), ((15.0, 2), (45.0, 5), (90.0, 2))]
    traces = [poisson(150.0, 120.0, seed=s) for s in range(3)]
    alone = [simulate(t, steps(*p), cfg, seed=i) for i, (t, p) in enumerate(zip(traces, plans, strict=True))]
    runs = [ServiceRun(t, steps(*p), cfg, i) for i, (t, p) in enumerate(zip(traces, plans, strict=True))]
    together = simulate_cluster(runs, gpus=64)
    for a, b in zip(alone, together.runs, strict=True):
        same_run(a, b)
    assert together.pending_pod_s == [0.0, 0.0, 0.0]
    assert max(together.timeline_pending) == 0


def test_a_full_pool_queues_pods_oldest_first_across_services() -> None:
    """4 GPUs, two services with one warm pod each. A asks for 3 at t=15: both new pods get a GPU. B asks for 3
    at t=30: the pool is full, both wait. A goes back to 1 at t=60 (its 2 newest pods drain an empty queue and go
    at once): B's pods are scheduled then, after 30 s Pending each."""
    cfg = config(cold_start=FIXED_30S)
    a, b = steps((15.0, 3), (60.0, 1)), steps((30.0, 3),)
    record = simulate_cluster([ServiceRun(even(10.0, 120.0), a, cfg, 0), ServiceRun(even(10.0, 120.0), b, cfg, 1)],
                              gpus=4)
    assert max(record.timeline_in_use) == 4
    assert record.pending_pod_s == [0.0, pytest.approx(2 * 30.0)]
    # sampled at each slice's start, before that slice's decisions
    assert record.timeline_pending[30:32] == [0, 2] and record.timeline_pending[60:62] == [2, 0]
    run_a, run_b = record.runs
    assert run_a.gpu_seconds == pytest.approx(120.0 + 2 * (60.0 - 15.0))
    assert run_b.gpu_seconds == pytest.approx(120.0 + 2 * (120.0 - 60.0))
    assert run_b.timeline_ready[-1] == 3  # ready 30 s after they got their GPUs at t=60


def test_the_pool_serves_the_oldest_pending_pod_first() -> None:
    """Pending pods of two fleets: one GPU frees, and the pod created first gets it, whichever fleet it is in."""
    pool = GpuPool(1)
    make = lambda seed: Fleet(pool, FIXED_30S, 40.0, np.random.default_rng(seed), lambda *_: None)  # noqa: E731
    first, second = make(0), make(1)
    first.scale_to(1, 0.0)  # takes the only GPU
    second.scale_to(1, 5.0)
    first.scale_to(2, 10.0)  # newer than second's pod
    assert [p.phase for p in second.pods] == [Phase.PENDING]
    first.scale_to(1, 20.0)  # deletes its Pending pod: nothing frees
    assert pool.free == 0
    first.scale_to(0, 30.0)  # its starting pod goes: the GPU is free, second's pod (created at 5) gets it
    assert second.pods[0].phase is Phase.STARTING and second.pods[0].scheduled_at == 30.0
    assert pending_seconds(second, 100.0) == pytest.approx(25.0)
    assert pending_seconds(first, 100.0) == pytest.approx(10.0)  # the pod created at 10, deleted at 20


def test_a_cluster_of_one_is_simulate() -> None:
    trace, cfg = poisson(120.0, 90.0, seed=4), config(gpus=3, cold_start=ColdStart("short", 5.0, 12.0))
    rule = after(15.0, 5)
    alone = Simulation(trace, Stub(2, rule), cfg, seed=9).run()
    together = simulate_cluster([ServiceRun(trace, Stub(2, rule), cfg, 9)], gpus=3)
    same_run(alone, together.runs[0])
    assert together.pending_pod_s[0] > 0  # 5 asked for on 3 GPUs


def test_services_must_share_one_duration() -> None:
    cfg = config()
    with pytest.raises(ValueError, match="same trace duration"):
        simulate_cluster([ServiceRun(even(5.0, 60.0), Stub(1), cfg, 0), ServiceRun(even(5.0, 90.0), Stub(1), cfg, 1)],
                         gpus=4)
