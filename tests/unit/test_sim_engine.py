"""The simulation engine (pods, routing, billing, reloads, seeds) and the Batchpilot policy inside it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpilot.control.batch_stats import BatchSizeCompute as B
from batchpilot.sim.batcher import ReplicaBatcher
from batchpilot.sim.engine import SimConfig, Simulation, simulate
from batchpilot.sim.lifecycle import COLD_STARTS, Phase
from batchpilot.sim.policies.batchpilot import BatchpilotPolicy, observation, service_spec
from batchpilot.sim.profile import ComputeCurve
from batchpilot.sim.traces import with_warmup
from batchpilot.sim.types import Action, Batching, ColdStart, RunRecord, Trace, View

CURVE = ComputeCurve("test", ((1, 5.0), (8, 8.0), (32, 20.0)))
"""Hand-checkable: 5 ms for one request, 8 ms for 8, 20 ms for 32."""
BATCHING = Batching(max_batch_size=8, max_queue_delay_us=0)
FIXED_30S = ColdStart("fixed-30s", 30.0, 30.0)


def config(**changes: object) -> SimConfig:
    base = SimConfig(curve=CURVE, slo_ms=50.0, cold_start=FIXED_30S, noise_cv=0.0)
    return replace(base, **changes)  # type: ignore[arg-type]


def even(rate: float, duration: float) -> Trace:
    """Evenly spaced arrivals: hand-checkable."""
    return Trace("even", np.arange(0.0, duration, 1.0 / rate), duration)


def poisson(rate: float, duration: float, seed: int = 7) -> Trace:
    rng = np.random.default_rng(seed)
    arrivals = np.sort(rng.uniform(0.0, duration, rng.poisson(rate * duration)))
    return Trace("poisson", arrivals, duration, seed)


class Stub:
    """A policy that answers from a schedule: (view) -> Action; it keeps the views it saw."""

    name = "stub"
    setting = "test"
    period_s = 15.0

    def __init__(self, replicas: int, rule: Callable[[View], Action] | None = None,
                 batching: Batching = BATCHING) -> None:
        self.replicas, self.batching = replicas, batching
        self.rule = rule or (lambda view: Action(view.replicas))
        self.views: list[View] = []

    def initial(self) -> Action:
        return Action(self.replicas, self.batching)

    def step(self, view: View) -> Action:
        self.views.append(view)
        return self.rule(view)


def after(t: float, replicas: int, batching: Batching | None = None) -> Callable[[View], Action]:
    """Keep the count until t, then ask for `replicas` (and batching)."""
    return lambda view: Action(replicas, batching) if view.at >= t else Action(view.replicas)


def test_a_static_run_by_hand() -> None:
    record = simulate(even(20.0, 60.0), Stub(2), config(), seed=1)
    assert np.isfinite(record.latency_ms).all()
    assert record.latency_ms.min() >= CURVE.ms(1) - 1e-9
    assert record.gpu_seconds == pytest.approx(2 * 60.0)
    assert record.timeline_t == [float(t) for t in range(60)]
    assert set(record.timeline_ready) == {2} and set(record.timeline_billed) == {2}
    assert (record.scale_events, record.cold_starts, record.reloads) == (0, 0, 0)
    assert (record.policy, record.trace, record.seed, record.slo_ms) == ("stub", "even", 1, 50.0)


def test_a_warm_up_is_simulated_not_measured() -> None:
    # 1 pod, 2 asked for at 15 s (Ready at 45 s) in the 60 s warm-up, 3 at 90 s (30 s into the trace)
    trace = even(20.0, 120.0)
    stub = Stub(1, lambda view: Action(3 if view.at >= 90.0 else 2 if view.at >= 15.0 else 1))
    record = simulate(with_warmup(trace, 60.0), stub, config(), seed=1)
    assert record.duration_s == 120.0 and record.timeline_t == [float(t) for t in range(120)]
    np.testing.assert_allclose(record.arrival, trace.arrivals, atol=1e-9)
    assert record.latency_ms.shape == trace.arrivals.shape and np.isfinite(record.latency_ms).all()
    assert (record.timeline_ready[0], record.timeline_ready[59], record.timeline_ready[60]) == (2, 2, 3)
    assert record.gpu_seconds == pytest.approx(120.0 + 120.0 + (180.0 - 90.0))  # from the warm-up's end on
    assert (record.scale_events, record.cold_starts) == (1, 1)


def test_cold_start_delays_readiness_and_is_billed() -> None:
    record = simulate(even(20.0, 120.0), Stub(1, after(15.0, 2)), config(), seed=1)
    ready = dict(zip(record.timeline_t, record.timeline_ready, strict=True))
    billed = dict(zip(record.timeline_t, record.timeline_billed, strict=True))
    assert (ready[44.0], ready[45.0]) == (1, 2)  # scheduled at 15 s, 30 s cold start
    assert (billed[14.0], billed[15.0]) == (1, 2)
    assert record.gpu_seconds == pytest.approx(120.0 + (120.0 - 15.0))
    assert (record.scale_events, record.cold_starts) == (1, 1)


def test_pods_beyond_the_gpus_stay_pending_and_unbilled() -> None:
    stub = Stub(1, after(15.0, 3))
    record = simulate(even(20.0, 90.0), stub, config(gpus=2), seed=1)
    assert max(record.timeline_billed) == 2 and record.timeline_replicas[-1] == 3
    assert record.gpu_seconds == pytest.approx(90.0 + (90.0 - 15.0))
    assert stub.views[-1].pending_pods == 1
    assert stub.views[-1].ready_replicas == 2


def test_scale_down_drains_without_failing_requests() -> None:
    # A 100 ms queue delay keeps requests waiting in every pod when two of them are deleted at 15 s.
    slow_batching = Batching(max_batch_size=32, max_queue_delay_us=100_000)
    record = simulate(even(200.0, 60.0), Stub(3, after(15.0, 1), slow_batching), config(), seed=1)
    assert np.isfinite(record.latency_ms[record.arrival < 59.0]).all()  # the last ones are cut off by the end
    assert record.timeline_billed[14] == 3 and record.timeline_billed[20] == 1
    drained = record.gpu_seconds - 60.0 - 2 * 15.0
    assert 0.0 < drained <= 2 * 0.2  # each drained its last batch: at most delay + a batch of 32


def test_a_pod_past_its_grace_period_is_killed() -> None:
    # 1 s per request, 10/s on two pods: by 15 s each holds ~60 requests, more than 40 s of grace can drain.
    slow = config(curve=ComputeCurve("slow", ((1, 1000.0),)), client_timeout_s=1e6)
    one = Batching(max_batch_size=1, max_queue_delay_us=0)
    record = simulate(even(10.0, 120.0), Stub(2, after(15.0, 1), one), slow, seed=1)
    assert record.gpu_seconds == pytest.approx(120.0 + 15.0 + slow.grace_s)
    assert np.isinf(record.latency_ms[record.arrival < 15.0]).any()


def test_a_batching_change_reloads_every_ready_pod_once() -> None:
    faster = Batching(max_batch_size=8, max_queue_delay_us=500)
    stub = Stub(3, lambda view: Action(view.replicas, faster if view.at >= 15.0 else None))
    record = simulate(poisson(100.0, 90.0), stub, config(), seed=2)
    assert record.reloads == 3
    assert all(v.batching == faster for v in stub.views[1:])
    again = Stub(3, lambda view: Action(view.replicas, faster if view.at < 30.0 else BATCHING))
    assert simulate(poisson(100.0, 90.0), again, config(), seed=2).reloads == 6


def test_reloads_roll_one_pod_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    faster = Batching(max_batch_size=8, max_queue_delay_us=500)
    calls: list[tuple[float, float]] = []
    reconfigure = ReplicaBatcher.reconfigure

    def spy(self: ReplicaBatcher, batching: Batching, at_s: float, pause_s: float) -> None:
        calls.append((at_s, pause_s))
        reconfigure(self, batching, at_s, pause_s)

    monkeypatch.setattr(ReplicaBatcher, "reconfigure", spy)
    sim = Simulation(poisson(100.0, 60.0), Stub(3, after(15.0, 3, faster)), config(reload_s=1.3, reload_stall_s=0.2),
                     seed=2)
    sim.run()
    assert calls == [(15.0, 0.2), (pytest.approx(16.3), 0.2), (pytest.approx(17.6), 0.2)]
    assert [p.batcher.batching for p in sim.fleet.ready if p.batcher] == [faster] * 3


def test_requests_fail_without_a_ready_pod() -> None:
    record = simulate(even(10.0, 60.0), Stub(0, after(15.0, 1)), config(), seed=1)
    assert np.isinf(record.latency_ms[record.arrival < 45.0]).all()  # the pod is Ready at 45 s
    assert np.isfinite(record.latency_ms[record.arrival >= 45.0]).all()


def test_runs_are_deterministic_per_seed() -> None:
    def run(seed: int) -> RunRecord:
        policy = BatchpilotPolicy(service_spec(CURVE, 30.0, 95, 8, 1, 6), initial_replicas=1)
        return simulate(poisson(400.0, 180.0), policy, config(noise_cv=0.05, cold_start=COLD_STARTS["cached-image"]),
                        seed)

    a, b, c = run(5), run(5), run(6)
    assert np.array_equal(a.latency_ms, b.latency_ms)
    assert (a.timeline_replicas, a.timeline_ready, a.gpu_seconds) == (b.timeline_replicas, b.timeline_ready,
                                                                     b.gpu_seconds)
    assert not np.array_equal(a.latency_ms, c.latency_ms)


def test_two_policies_see_the_same_cold_starts() -> None:
    cfg, trace = config(cold_start=COLD_STARTS["image-pull"]), even(20.0, 200.0)
    at_once = Simulation(trace, Stub(1, after(15.0, 4)), cfg, seed=3)
    one_by_one = Simulation(trace, Stub(1, lambda v: Action(min(4, int(v.at // 15)))), cfg, seed=3)
    other_seed = Simulation(trace, Stub(1, after(15.0, 4)), cfg, seed=4)
    for sim in (at_once, one_by_one, other_seed):
        sim.run()

    def draws(sim: Simulation) -> list[float]:
        return [p.cold_start_s for p in sim.fleet.pods if p.index > 0][:3]

    assert draws(at_once) == draws(one_by_one)
    assert draws(at_once) != draws(other_seed)
    assert all(60.0 <= d <= 180.0 for d in draws(at_once))


@given(st.lists(st.integers(0, 6), min_size=1, max_size=6), st.integers(1, 4))
@settings(max_examples=15, deadline=None)
def test_pods_never_exceed_gpus_or_desired(plan: list[int], gpus: int) -> None:
    """Whatever a policy asks: billed pods fit the GPUs, Ready pods never exceed the desired count, and GPU
    time is what the billed timeline says (to within a slice per pod change)."""
    stub = Stub(1, lambda v: Action(plan[min(len(plan) - 1, int(v.at // 15) - 1)]))
    sim = Simulation(even(20.0, 100.0), stub, config(gpus=gpus, cold_start=ColdStart("short", 5.0, 12.0)), seed=1)
    record = sim.run()
    assert max(record.timeline_billed) <= gpus
    assert all(r <= d for r, d in zip(record.timeline_ready, record.timeline_replicas, strict=True))
    assert record.gpu_seconds <= gpus * 100.0 + 1e-9
    assert abs(record.gpu_seconds - sum(record.timeline_billed)) <= len(sim.fleet.pods)
    assert all(p.phase is not Phase.PENDING or p.scheduled_at is None for p in sim.fleet.pods)


# --- the Batchpilot policy ----------------------------------------------------------------------------------------

SPEC = service_spec(CURVE, 30.0, 95, 8, 1, 6, max_queue_delay_us=5000, max_instance_count=2)


def blank_view(**fields: object) -> View:
    base = View(at=15.0, replicas=2, ready_replicas=2, pending_pods=0, batching=Batching(8, 5000),
                arrival_rate=None, latency_ms=None, queue_ms=None, compute_ms=None, avg_batch_size=None,
                pending_requests=None, ongoing_per_replica=None, gpu_utilization=None, queue_compute_ratio=None)
    return replace(base, **fields)  # type: ignore[arg-type]


LOADED = dict(arrival_rate=3000.0, latency_ms=60.0, queue_ms=40.0, compute_ms=8.0, avg_batch_size=8.0,
              pending_requests=40.0, ongoing_per_replica=30.0, gpu_utilization=0.97, queue_compute_ratio=2.5,
              batch_compute=(B(8, 8.1, 200),), concurrency=1.0)


@pytest.mark.parametrize(("fields", "reasons"), [
    pytest.param({}, {"MetricsUnavailable"}, id="no data holds"),
    pytest.param({"arrival_rate": 0.0}, {"WithinSLO", "Stabilizing"}, id="idle reads as 0 ms, not blind"),
    pytest.param(LOADED, {"Panic", "ScaleUp"}, id="overloaded scales up"),
])
def test_batchpilot_answers_any_view(fields: dict[str, object], reasons: set[str]) -> None:
    policy = BatchpilotPolicy(SPEC, initial_replicas=2)
    action = policy.step(blank_view(**fields))
    assert action.reason in reasons
    assert SPEC.autoscaling.min_replicas <= action.replicas <= SPEC.autoscaling.max_replicas
    if action.batching is not None:
        assert action.batching.max_batch_size == 8
    if fields is LOADED:
        assert action.replicas > 2


def test_batchpilot_starts_as_new_pods_would() -> None:
    action = BatchpilotPolicy(SPEC, initial_replicas=3).initial()
    assert action == Action(3, Batching(8, 5000, (), 1), reason="Initial")


def test_observation_maps_every_field() -> None:
    obs = observation(blank_view(**LOADED))
    assert (obs.arrival_rate, obs.latency_ms, obs.queue_ms, obs.compute_ms, obs.avg_batch_size, obs.pending,
            obs.gpu_utilization) == (3000.0, 60.0, 40.0, 8.0, 8.0, 40.0, 0.97)
    assert (obs.queue_delay_us, obs.instance_count, obs.window_s) == (5000, 1, 30.0)
    assert (obs.batch_compute, obs.concurrency) == (((8, 8.1, 200),), 1.0)


optional = st.one_of(st.none(), st.floats(0.0, 1e5))
# Compute times Triton can report: none, 0, or at least a microsecond (decide() divides by a curve learned from
# them, and 1e-108 ms underflows to a division by zero in control/capacity.py: no GPU reports that).
compute_times = st.one_of(st.none(), st.just(0.0), st.floats(1e-3, 1e5))


@given(st.integers(0, 8), st.integers(0, 8), optional, optional, optional, compute_times, st.one_of(
    st.none(), st.floats(1.0, 8.0)), st.sampled_from([0, 500, 5000]), st.integers(1, 2))
@settings(max_examples=60, deadline=None)
def test_batchpilot_never_raises(replicas: int, ready: int, rate: float | None, latency: float | None,
                                 queue: float | None, compute: float | None, batch: float | None, delay: int,
                                 instances: int) -> None:
    policy = BatchpilotPolicy(SPEC, initial_replicas=1)
    for at in (15.0, 30.0, 45.0):
        view = blank_view(at=at, replicas=replicas, ready_replicas=min(ready, replicas), arrival_rate=rate,
                          latency_ms=latency, queue_ms=queue, compute_ms=compute, avg_batch_size=batch,
                          batching=Batching(8, delay, (), instances))
        action = policy.step(view)
        assert 1 <= action.replicas <= 6


def test_batchpilot_closes_the_loop_on_a_load_step() -> None:
    trace = Trace("step", np.concatenate([np.arange(0, 120, 1 / 200.0), np.arange(120, 300, 1 / 3000.0)]), 300.0)
    policy = BatchpilotPolicy(service_spec(CURVE, 30.0, 95, 8, 1, 6), initial_replicas=1)
    record = simulate(trace, policy, config(), seed=1)
    assert record.timeline_replicas[100] == 1 and max(record.timeline_replicas) >= 2
    assert record.cold_starts >= 1
