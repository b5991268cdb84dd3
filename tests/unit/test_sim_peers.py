"""The peer autoscalers of the simulator: each upstream rule on hand-computed tables, plus invariants."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpilot.sim.policies import FAMILIES, PeerContext, make
from batchpilot.sim.policies import settings as peer_settings
from batchpilot.sim.policies.hpa import (
    HpaPolicy,
    HpaRules,
    HpaState,
    Target,
    external_average_replicas,
    external_value_replicas,
    hpa_decide,
    limit,
    pods_average_replicas,
    queue_compute_ratio,
    stabilize,
)
from batchpilot.sim.policies.keda import keda_latency, keda_rate, null_as_zero
from batchpilot.sim.policies.knative import KpaState, kpa_decide, record, start_state
from batchpilot.sim.policies.oracle import OraclePolicy, needed_replicas
from batchpilot.sim.policies.ray_serve import RayState, delayed, ray_decide, scaled
from batchpilot.sim.policies.sizing import (
    QUEUE_DELAYS_US,
    best_static_batching,
    measure_capacity,
    probe_latencies_ms,
    replicas_for,
    throughput_bound,
)
from batchpilot.sim.policies.static import peak_replicas
from batchpilot.sim.profile import ComputeCurve
from batchpilot.sim.types import Action, Batching, ColdStart, Trace, View

BATCHING = Batching(max_batch_size=64, max_queue_delay_us=500)
RULES = HpaRules(min_replicas=1, max_replicas=100)
START = Action(replicas=4, batching=BATCHING)


def view(at: float = 15.0, replicas: int = 4, ready: int | None = None, **metrics: Any) -> View:
    """A View with every metric missing unless given."""
    fields: dict[str, Any] = dict(
        at=at, replicas=replicas, ready_replicas=replicas if ready is None else ready, pending_pods=0,
        batching=BATCHING, arrival_rate=None, latency_ms=None, queue_ms=None, compute_ms=None,
        avg_batch_size=None, pending_requests=None, ongoing_per_replica=None, gpu_utilization=None,
        queue_compute_ratio=None)
    fields.update(metrics)
    return View(**fields)


def step_trace(rates: list[tuple[float, float, float]], duration_s: float) -> Trace:
    """Evenly spaced arrivals: (start s, end s, req/s) pieces."""
    arrivals = np.concatenate([np.arange(a, b, 1.0 / r) for a, b, r in rates])
    return Trace("step", np.sort(arrivals), duration_s)


def ctx(**kw: Any) -> PeerContext:
    base: dict[str, Any] = dict(min_replicas=1, max_replicas=50, initial_replicas=4, batching=BATCHING,
                                capacity=300.0, slo_ms=100.0, percentile=95)
    base.update(kw)
    return PeerContext(**base)


# ---- HPA: the recommendation -------------------------------------------------------------------------------

@pytest.mark.parametrize(("average", "current", "ready", "want"), [
    pytest.param(1.05, 4, 4, 4, id="inside tolerance keeps"),
    pytest.param(0.91, 4, 4, 4, id="inside tolerance below keeps"),
    pytest.param(1.2, 4, 4, 5, id="just past tolerance: ceil(4.8)"),
    pytest.param(1.5, 4, 4, 6, id="scale up: ceil(4 x 1.5)"),
    pytest.param(0.5, 4, 4, 2, id="scale down: ceil(4 x 0.5)"),
    pytest.param(1.5, 8, 4, 8, id="starting pods count as 0: 6/8 < 1, keep"),
    pytest.param(3.0, 6, 4, 12, id="starting pods count as 0: 12/6 = 2, ceil(2 x 6)"),
    pytest.param(1.6, 6, 4, 6, id="rebalanced 6.4/6 inside tolerance keeps"),
    pytest.param(0.5, 8, 4, 2, id="scale down ignores starting pods: ceil(4 x 0.5)"),
])
def test_pods_average(average: float, current: int, ready: int, want: int) -> None:
    assert pods_average_replicas(average, 1.0, current, ready, 0.1) == want


@pytest.mark.parametrize(("total", "current", "want"), [
    pytest.param(1000.0, 3, 4, id="1000/900 = 1.11 out of band: ceil(1000/300)"),
    pytest.param(950.0, 3, 3, id="950/900 = 1.06 in band keeps"),
    pytest.param(3000.0, 2, 10, id="ceil(3000/300) whatever the pods"),
    pytest.param(0.0, 5, 0, id="zero asks for zero (min applies later)"),
])
def test_external_average(total: float, current: int, want: int) -> None:
    assert external_average_replicas(total, 300.0, current, 0.1) == want


@pytest.mark.parametrize(("value", "current", "ready", "want"), [
    pytest.param(150.0, 4, 4, 6, id="ceil(4 ready x 1.5)"),
    pytest.param(150.0, 4, 2, 3, id="only ready pods count: ceil(2 x 1.5)"),
    pytest.param(105.0, 4, 4, 4, id="in band keeps"),
    pytest.param(20.0, 4, 4, 1, id="ceil(4 x 0.2)"),
])
def test_external_value(value: float, current: int, ready: int, want: int) -> None:
    assert external_value_replicas(value, 100.0, current, ready, 0.1) == want


# ---- HPA: limits and stabilization ---------------------------------------------------------------------------

@pytest.mark.parametrize(("desired", "current", "rules", "want"), [
    pytest.param(10, 1, RULES, (4, "ScaleUpLimit"), id="no behavior: max(2x1, 4) = 4"),
    pytest.param(10, 3, RULES, (6, "ScaleUpLimit"), id="no behavior: max(2x3, 4) = 6"),
    pytest.param(50, 10, RULES, (20, "ScaleUpLimit"), id="no behavior: double 10"),
    pytest.param(10, 1, HpaRules(1, 100, behavior=True), (5, "ScaleUpLimit"), id="policies: +4 pods from 1"),
    pytest.param(10, 3, HpaRules(1, 100, behavior=True), (7, "ScaleUpLimit"), id="policies: +4 pods from 3"),
    pytest.param(50, 10, HpaRules(1, 100, behavior=True), (20, "ScaleUpLimit"), id="policies: +100% of 10"),
    pytest.param(30, 20, HpaRules(1, 25), (25, "TooManyReplicas"), id="max replicas"),
    pytest.param(0, 5, HpaRules(2, 25), (2, "TooFewReplicas"), id="min replicas"),
    pytest.param(7, 5, RULES, (7, "DesiredWithinRange"), id="within range"),
])
def test_limit(desired: int, current: int, rules: HpaRules, want: tuple[int, str]) -> None:
    assert limit(desired, current, rules) == want


def test_stabilization_keeps_the_highest_of_300_s() -> None:
    state = HpaState(((0.0, 10), (15.0, 4)))
    assert stabilize(3, 10, 300.0, state, RULES)[0] == 10, "the t=0 recommendation is still in the window"
    assert stabilize(3, 10, 315.0, state, RULES)[0] == 4, "t=0 left the window, t=15 is the highest"
    _, kept = stabilize(3, 10, 315.0, state, RULES)
    assert kept.recommendations == ((15.0, 4), (315.0, 3))


def test_stabilization_without_behavior_may_exceed_current() -> None:
    """The legacy rule takes the window's highest as is; with behavior the current count caps it."""
    state = HpaState(((0.0, 12),))
    assert stabilize(6, 8, 15.0, state, RULES)[0] == 12
    assert stabilize(6, 8, 15.0, state, HpaRules(1, 100, behavior=True))[0] == 8
    assert stabilize(5, 8, 15.0, HpaState(((0.0, 6),)), HpaRules(1, 100, behavior=True))[0] == 6


def test_hpa_scales_down_only_after_the_window() -> None:
    policy = HpaPolicy("hpa-queue-compute", "t", queue_compute_ratio, Target.POD_AVERAGE, 1.0, RULES, START)
    first = policy.step(view(at=0.0, replicas=10, queue_compute_ratio=1.0))
    assert first.replicas == 10
    times = [15.0 * i for i in range(1, 23)]  # 15 ... 330 s at half the target: recommendation 5
    got = [policy.step(view(at=t, replicas=10, queue_compute_ratio=0.5)).replicas for t in times]
    assert got[times.index(300.0)] == 10 and got[times.index(315.0)] == 5
    assert set(got[: times.index(315.0)]) == {10}


@pytest.mark.parametrize("ready", [4, 0])
def test_hpa_without_metric_changes_nothing(ready: int) -> None:
    value = None if ready else 2.0  # no value, or a Pods metric with no ready pod to average
    state = HpaState(((0.0, 9),))
    assert hpa_decide(Target.POD_AVERAGE, value, 1.0, 15.0, 4, ready, state, RULES) == (4, state,
                                                                                        "FailedGetMetric")


@settings(max_examples=200, deadline=None)
@given(a=st.floats(0.0, 10.0), b=st.floats(0.0, 10.0), current=st.integers(1, 40), ready=st.integers(1, 40))
def test_more_load_never_fewer_replicas(a: float, b: float, current: int, ready: int) -> None:
    ready = min(ready, current)
    low, high = sorted((a, b))
    assert pods_average_replicas(low, 1.0, current, ready, 0.1) <= pods_average_replicas(high, 1.0, current,
                                                                                        ready, 0.1)


@settings(max_examples=200, deadline=None)
@given(value=st.none() | st.floats(0.0, 50.0), current=st.integers(1, 60), ready=st.integers(0, 60),
       history=st.lists(st.integers(0, 200), max_size=5))
def test_hpa_stays_in_bounds(value: float | None, current: int, ready: int, history: list[int]) -> None:
    rules = HpaRules(2, 30)
    state = HpaState(tuple((float(i), r) for i, r in enumerate(history)))
    replicas, _, _ = hpa_decide(Target.POD_AVERAGE, value, 1.0, 10.0, current, min(ready, current), state, rules)
    assert 2 <= replicas <= 30


# ---- KEDA --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "want"), [
    pytest.param(None, 0.0, id="empty result"), pytest.param(math.nan, 0.0, id="NaN"),
    pytest.param(math.inf, 0.0, id="Inf"), pytest.param(5.5, 5.5, id="a value"),
])
def test_ignore_null_values(raw: float | None, want: float) -> None:
    assert null_as_zero(raw) == want


def test_keda_reads_an_outage_as_no_load_where_the_hpa_holds() -> None:
    keda = keda_rate("t", 100.0, RULES, START)
    hpa = HpaPolicy("hpa-queue-compute", "t", queue_compute_ratio, Target.POD_AVERAGE, 1.0, RULES, START)
    assert keda.step(view(at=0.0, answered_rate=400.0)).replicas == 4
    assert hpa.step(view(at=0.0, queue_compute_ratio=1.0)).replicas == 4
    outage = [15.0 * i for i in range(1, 22)]  # 15 ... 315 s without data
    keda_got = [keda.step(view(at=t)).replicas for t in outage]
    hpa_got = [hpa.step(view(at=t)).replicas for t in outage]
    assert set(hpa_got) == {4}
    assert keda_got[-2] == 4 and keda_got[-1] == 1, "held by the 300 s window, then down to min"


def test_keda_value_uses_ready_pods_average_value_does_not() -> None:
    rate = keda_rate("t", 100.0, RULES, START)
    latency = keda_latency("t", 100.0, RULES, START)
    assert rate.step(view(replicas=4, ready=2, answered_rate=600.0)).replicas == 6  # ceil(600 / 100)
    assert latency.step(view(replicas=4, ready=2, latency_ms=250.0)).replicas == 5  # ceil(2 x 250 / 100)


# ---- Knative KPA ------------------------------------------------------------------------------------------------

def samples(at: float, older: float, recent: float, n_recent: int = 3) -> KpaState:
    """A full stable window of 2 s samples ending at `at`: `recent` for the last n_recent, `older` before."""
    times = [at - 2.0 * i for i in range(29, -1, -1)]
    return KpaState(tuple((t, recent if i >= 30 - n_recent else older) for i, t in enumerate(times)))


def panicking(state: KpaState, since: float, pods: int) -> KpaState:
    return KpaState(state.samples, since, pods)


AT = 1000.0


@pytest.mark.parametrize(("ready", "state", "want"), [
    pytest.param(3, samples(AT, 280, 280), (4, "Stable"), id="stable: ceil(280 / 70)"),
    pytest.param(4, samples(AT, 280, 700), (10, "Panic"), id="panic entry: ceil(700/70) = 10 >= 2 x 4"),
    pytest.param(10, panicking(samples(AT, 70, 70), AT - 10, 10), (10, "Panic"), id="panic never scales down"),
    pytest.param(10, panicking(samples(AT, 70, 70), AT - 60, 10), (10, "Panic"), id="panic until 60 s passed"),
    pytest.param(10, panicking(samples(AT, 70, 70), AT - 61, 10), (5, "Stable"),
                 id="panic exit, then at most halve: floor(10 / 2)"),
    pytest.param(10, samples(AT, 70, 70), (5, "Stable"), id="scale-down rate 2: floor(10 / 2)"),
    pytest.param(10, samples(AT, 420, 420), (6, "Stable"), id="scale down within the rate: ceil(420 / 70)"),
    pytest.param(0, samples(AT, 140, 140), (2, "Panic"), id="no ready pod counts as 1: 2 / 1 >= 2"),
    pytest.param(4, KpaState(), (7, "NoData"), id="no samples keeps the current scale"),
])
def test_kpa(ready: int, state: KpaState, want: tuple[int, str]) -> None:
    replicas, _, reason = kpa_decide(AT, ready, 7 if not state.samples else ready, state, 70.0)
    assert (replicas, reason) == want


def test_kpa_panic_extends_and_records() -> None:
    state = record(panicking(samples(AT - 2, 70, 70), AT - 30, 10), AT, 2100.0)
    assert state.samples[0][0] > AT - 60 and state.samples[-1] == (AT, 2100.0)
    _, after, _ = kpa_decide(AT, 10, 10, state, 70.0)  # panic window (6 s): (70 + 70 + 2100) / 3 -> 11 pods
    assert (after.panic_time, after.max_panic_pods) == (AT - 30, 11), "11 / 10 < 2: not extended, max kept"


def test_kpa_starts_in_panic_over_more_than_one_pod() -> None:
    assert start_state(0.0, 3) == KpaState((), 0.0, 3)
    assert start_state(0.0, 1) == KpaState()


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.floats(0.0, 5000.0), min_size=1, max_size=30), ready=st.integers(1, 40),
       held=st.integers(1, 60))
def test_kpa_in_panic_never_below_its_max(values: list[float], ready: int, held: int) -> None:
    state = KpaState(tuple((AT - 2.0 * i, v) for i, v in enumerate(reversed(values))), AT - 5, held)
    replicas, _, reason = kpa_decide(AT, ready, ready, state, 70.0)
    assert reason == "Panic" and replicas >= held


# ---- Ray Serve --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("desired", "running", "factor", "want"), [
    pytest.param(2.5, 3, 1.0, 3, id="ceil(2.5)"),
    pytest.param(1.2, 3, 1.0, 2, id="ceil(1.2)"),
    pytest.param(6.0, 3, 1.0, 6, id="up by the whole difference"),
    pytest.param(1.0, 5, 0.5, 3, id="half the way down: ceil(5 - 2)"),
    pytest.param(3.5, 5, 0.1, 4, id="stuck at 5 by the factor: one down"),
])
def test_ray_scaling_factor(desired: float, running: int, factor: float, want: int) -> None:
    assert scaled(desired, running, factor) == want


def test_ray_upscale_waits_30_s_of_decisions() -> None:
    replicas, counter, got = 3, 0, []
    for _ in range(5):
        replicas, counter = delayed(6, replicas, counter)
        got.append(replicas)
    assert got == [3, 3, 3, 6, 6]


def test_ray_downscale_waits_600_s_and_a_reversal_resets() -> None:
    counter, got = 0, []
    for _ in range(61):
        replicas, counter = delayed(1, 3, counter)
        got.append(replicas)
    assert got[:60] == [3] * 60 and got[60] == 1
    counter = 0
    for want in (6, 1, 6, 6, 6):  # up, down, then up three times: the down reset the count
        _, counter = delayed(want, 3, counter)
    assert counter == 3


def test_ray_averages_its_look_back() -> None:
    state, got = RayState(), []
    for i, total in enumerate((12.0, 12.0, 12.0, 12.0)):  # 3 running replicas, 12 ongoing in all, target 2
        replicas, state, reason = ray_decide(10.0 * (i + 1), total, 3, 3, state, 2.0, 1, 50)
        got.append((replicas, reason))
    assert got == [(3, "UpscaleDelay")] * 3 + [(6, "ScaleUp")]
    assert [t for t, _ in state.samples] == [20.0, 30.0, 40.0], "30 s look-back"


@pytest.mark.parametrize(("total", "running", "reason"), [
    pytest.param(None, 3, "NoMetrics", id="no metrics pushed"),
    pytest.param(30.0, 0, "ColdStart", id="no replica running"),
])
def test_ray_holds(total: float | None, running: int, reason: str) -> None:
    assert ray_decide(10.0, total, running, 4, RayState(), 2.0, 1, 50)[::2] == (4, reason)


@settings(max_examples=150, deadline=None)
@given(totals=st.lists(st.none() | st.floats(0.0, 1e4), min_size=1, max_size=8), current=st.integers(1, 80),
       running=st.integers(0, 80))
def test_ray_answers_current_or_within_bounds(totals: list[float | None], current: int, running: int) -> None:
    state = RayState()
    for i, total in enumerate(totals):
        replicas, state, _ = ray_decide(10.0 * i, total, running, current, state, 2.0, 2, 40)
        assert replicas == current or 2 <= replicas <= 40


# ---- static and oracle ------------------------------------------------------------------------------------------

def test_static_sizes_for_the_peak_minute() -> None:
    trace = step_trace([(0, 120, 100.0), (120, 180, 1000.0), (180, 300, 100.0)], 300.0)
    assert peak_replicas(trace, 300.0, 1, 50) == 4  # ceil(1000 / 300)
    assert peak_replicas(trace, 300.0, 1, 3) == 3
    policy = make("static", None, ctx(trace=trace))
    assert policy.initial() == Action(replicas=4, batching=BATCHING, reason="Static")
    assert policy.step(view(at=60.0, arrival_rate=5000.0)).replicas == 4


@pytest.mark.parametrize(("at", "horizon", "want"), [
    pytest.param(0.0, 5.0, 1, id="first bin only: 100 req/s"),
    pytest.param(0.0, 10.0, 3, id="reaches the 900 req/s bin: ceil(900 / 400)"),
    pytest.param(12.0, 30.0, 3, id="peak of the bins ahead"),
    pytest.param(20.0, 30.0, 1, id="the peak is behind"),
])
def test_oracle_needed(at: float, horizon: float, want: int) -> None:
    starts, rates = np.array([0.0, 10.0, 20.0]), np.array([100.0, 900.0, 300.0])
    assert needed_replicas(starts, rates, at, horizon, 400.0, 1, 50) == want


def test_oracle_runs_ahead_by_the_cold_start() -> None:
    trace = step_trace([(0, 300, 100.0), (300, 600, 1000.0), (600, 900, 100.0)], 900.0)
    cold = ColdStart("image-pull", 20.0, 60.0)
    oracle = OraclePolicy(trace, 300.0, cold, BATCHING, 1, 50)
    assert oracle.initial().replicas == 1 and oracle.initial().batching == BATCHING
    got = {t: oracle.step(view(at=t)).replicas for t in np.arange(10.0, 900.0, 10.0)}
    first_up = min(t for t, r in got.items() if r == 4)
    assert first_up == 300.0 - cold.high_s - 10.0, "asked for one step plus the slowest cold start ahead"
    last_up = max(t for t, r in got.items() if r == 4)
    assert last_up == 590.0 and got[600.0] == 1, "down as soon as no load ahead needs the pods"


# ---- sizing helpers and the registry ------------------------------------------------------------------------

@pytest.mark.parametrize(("rate", "capacity", "fraction", "want"), [
    pytest.param(1000.0, 300.0, 0.8, 5, id="ceil(1000 / 240)"),
    pytest.param(900.0, 300.0, 1.0, 3, id="exactly 3"),
    pytest.param(900.0 * (1 + 1e-12), 300.0, 1.0, 3, id="float noise is not a pod"),
    pytest.param(0.0, 300.0, 1.0, 1, id="at least one pod"),
])
def test_replicas_for(rate: float, capacity: float, fraction: float, want: int) -> None:
    assert replicas_for(rate, capacity, fraction) == want


def test_replicas_for_refuses_no_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        replicas_for(10.0, 0.0)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in ("static", "oracle")])
def test_threshold_families(family: str) -> None:
    context = ctx()
    found = peer_settings(family, context)
    assert found is not None
    assert 5 <= len(found.sweep) <= 7 and list(found.sweep) == sorted(found.sweep)
    assert any(math.isclose(found.default, v) for v in found.sweep)
    policy = make(family, None, context)
    assert (policy.name, policy.setting.startswith("default (")) == (family, True)
    assert policy.initial() == Action(replicas=4, batching=BATCHING, reason="Initial")
    assert policy.step(view(at=policy.period_s)).batching is None, "peers never change batching"
    assert make(family, found.sweep[0], context).setting == f"swept {found.sweep[0]:g}"


@pytest.mark.parametrize(("family", "setting"), [
    pytest.param("hpa-queue-compute", "default (1000m)", id="NVIDIA's 1000m"),
    pytest.param("hpa-gpu", "default (80%)", id="80%"),
    pytest.param("keda-rate", "default (300 req/s)", id="measured capacity"),
    pytest.param("keda-latency", "default (100 ms)", id="the SLO"),
    pytest.param("knative", "default (70)", id="100 x 70%"),
    pytest.param("ray-serve", "default (2)", id="target_ongoing_requests 2"),
])
def test_default_labels(family: str, setting: str) -> None:
    assert make(family, None, ctx()).setting == setting


@pytest.mark.parametrize(("family", "setting", "context", "match"), [
    pytest.param("cpu-hpa", None, ctx(), "unknown peer family", id="unknown"),
    pytest.param("static", 2.0, ctx(), "no threshold", id="static has no threshold"),
    pytest.param("oracle", None, ctx(), "trace and the cold start", id="oracle needs the future"),
    pytest.param("knative", -1.0, ctx(), "must be > 0", id="negative threshold"),
])
def test_make_refuses(family: str, setting: float | None, context: PeerContext, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(family, setting, context)


def test_context_refuses_no_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ctx(capacity=0.0)


# ---- sizing on a tiny curve (one batch: 10 ms alone, 12 ms for 4; at most 4 x 1000 / 12 = 333 req/s) ---------

TINY = ComputeCurve("tiny", ((1, 10.0), (4, 12.0)))


@pytest.mark.parametrize(("delay_us", "want_ms"), [
    pytest.param(0, 10.0, id="a lone request runs at once: 10 ms"),
    pytest.param(2000, 12.0, id="a lone request first waits the 2 ms delay"),
])
def test_probe_at_a_trickle(delay_us: int, want_ms: float) -> None:
    latencies = probe_latencies_ms(TINY, Batching(4, delay_us), 2.0, seed=0)
    assert latencies.size > 50
    assert float(np.median(latencies)) == pytest.approx(want_ms, rel=0.05)


def test_capacity_of_the_tiny_curve() -> None:
    bound = throughput_bound(TINY, Batching(4, 0))
    assert bound == pytest.approx(1000.0 * 4 / 12.0)
    relaxed = measure_capacity(TINY, Batching(4, 0), 100.0, 95)
    tight = measure_capacity(TINY, Batching(4, 0), 30.0, 95)
    assert 0.6 * bound < relaxed <= bound, "full batches of 4 keep a loaded pod within 100 ms"
    assert 0.0 < tight <= relaxed, "a tighter SLO never buys capacity"
    assert measure_capacity(TINY, Batching(4, 0), 5.0, 95) == 0.0, "one batch alone takes 10 ms > 5 ms"
    hits = measure_capacity.cache_info().hits
    assert measure_capacity(TINY, Batching(4, 0), 100.0, 95) == relaxed
    assert measure_capacity.cache_info().hits == hits + 1


def test_best_static_batching_takes_the_highest_capacity() -> None:
    best = best_static_batching(TINY, 4, 100.0, 95)
    assert best.max_batch_size == 4 and best.max_queue_delay_us in QUEUE_DELAYS_US
    capacities = [measure_capacity(TINY, Batching(4, d), 100.0, 95) for d in QUEUE_DELAYS_US]
    assert measure_capacity(TINY, best, 100.0, 95) == max(capacities)
    assert best.max_queue_delay_us == QUEUE_DELAYS_US[capacities.index(max(capacities))], "shortest on a tie"
