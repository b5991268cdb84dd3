"""The planner: table-driven decisions and property-based invariants (monotone in load, bounded, no flapping)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import factories
from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.batch_stats import BatchSizeCompute as B
from batchpilot.control.capacity import Candidate, CapacityModel
from batchpilot.control.limits import limit
from batchpilot.control.planner import decide, projected
from batchpilot.control.types import DecisionReason, History, Observation, Proposal
from factories import H100_RESNET50_MS, NOW, observation, service_spec

SCALE_UP_COOLDOWN_S = 10  # spec.autoscaling.scaleUp.cooldownSeconds default
PROFILE = H100_RESNET50_MS


def spec(lo: int = 1, hi: int = 8, slo: float = 150, max_batch: int = 4, profile: bool = True,
         paused: bool = False, window: int = 60, **autoscaling: Any) -> InferenceServiceSpec:
    model: dict[str, Any] = {"maxBatchSize": max_batch, **({"profile": factories.profile()} if profile else {})}
    return service_spec(model=model, slo_ms=slo, paused=paused, autoscaling={
        "minReplicas": lo, "maxReplicas": hi, "scaleDown": {"stabilizationSeconds": window}, **autoscaling})


def obs(replicas: int, rate: float, p95: float | None = 100.0, ready: int | None = None, queue: float = 5.0,
        compute: float | None = None, batch: float | None = None) -> Observation:
    return observation(replicas, rate, ready=ready, latency_ms=p95, queue_ms=queue, compute_ms=compute,
                       avg_batch_size=batch)


CASES = [
    # name, spec, observation, history, replicas, reason
    ("a load step is planned at once, not one by one", spec(), obs(1, 240, p95=2000, queue=1500), History(),
     None, "Panic"),
    ("planned scale-up without a breach", spec(), obs(1, 120, p95=140, queue=20), History(), 2, "ScaleUp"),
    ("planned scale-up does not wait for starting replicas (they count in the plan)", spec(),
     obs(2, 300, p95=140, ready=1, queue=20), History(), 5, "ScaleUp"),
    ("an unexplained breach waits for starting replicas", spec(), obs(3, 30, p95=400, ready=2, queue=300),
     History(), 3, "WaitingForReplicas"),
    ("a backlog is planned for: queued requests as extra arrivals over BACKLOG_DRAIN_S", spec(),
     replace(obs(2, 120, p95=140, queue=20), pending=6000.0), History(), 4, "ScaleUp"),
    ("no backlog is planned for while pods cannot be placed: they are the capacity asked for already", spec(),
     replace(obs(2, 120, p95=140, ready=1, queue=20), pending=6000.0, unschedulable=1), History(), 2,
     "WithinSLO"),
    ("the arrival rate is still planned for while pods cannot be placed (a cluster autoscaler needs the asks)",
     spec(), replace(obs(2, 300, p95=140, ready=1, queue=20), pending=6000.0, unschedulable=1), History(), 5,
     "ScaleUp"),
    ("planned scale-up respects the cooldown", spec(), obs(1, 120, p95=140, queue=20),
     History(last_scale_at=NOW - SCALE_UP_COOLDOWN_S / 2), 1, "ScaleUpCooldown"),
    ("a breach ignores the cooldown", spec(), obs(1, 120, p95=900, queue=800),
     History(last_scale_at=NOW - 1), 2, "Panic"),
    ("enough replicas hold", spec(), obs(2, 120, p95=115), History(), 2, "WithinSLO"),
    ("too many replicas start the window", spec(), obs(4, 30, p95=100), History(), 4, "Stabilizing"),
    ("after the window they go, at most half at once", spec(), obs(8, 15, p95=100),
     History(calm_since=NOW - 60), 4, "ScaleDown"),
    ("a breach the model cannot explain adds one", spec(), obs(3, 30, p95=400, queue=300), History(), 4, "Panic"),
    ("at max a breach holds", spec(hi=2), obs(2, 400, p95=4000, queue=3000), History(), 2, "AtMaxReplicas"),
    ("missing metrics hold", spec(), obs(4, 10, p95=None), History(calm_since=NOW - 600), 4,
     "MetricsUnavailable"),
    ("paused freezes", spec(paused=True), obs(1, 500, p95=5000, queue=4000), History(), 1, "Paused"),
    ("no profile and no traffic seen: the reactive rule", spec(profile=False), obs(1, 50, p95=400, queue=300),
     History(), 2, "ScaleUp"),
    ("below min is raised", spec(lo=2), obs(1, 10), History(), 2, "BelowMinReplicas"),
    ("scaleUp.maxStep limits a step", spec(scaleUp={"maxStep": 1}), obs(1, 240, p95=2000, queue=1500), History(),
     2, "Panic"),
    ("scaleUp.cooldownSeconds is the spec's", spec(scaleUp={"cooldownSeconds": 60}), obs(1, 120, p95=140, queue=20),
     History(last_scale_at=NOW - 30), 1, "ScaleUpCooldown"),
    ("scaleDown.maxStepPercent limits a step", spec(window=60, scaleDown={"stabilizationSeconds": 60,
                                                                        "maxStepPercent": 25}),
     obs(8, 15, p95=100), History(calm_since=NOW - 60), 6, "ScaleDown"),
    ("metricsOutage hold keeps the count", spec(metricsOutage={"policy": "hold"}), obs(2, 10, p95=None),
     History(), 2, "MetricsUnavailable"),
    ("metricsOutage fallback raises to fallbackReplicas",
     spec(metricsOutage={"policy": "fallback", "fallbackReplicas": 5}), obs(2, 10, p95=None), History(), 5,
     "MetricsFallback"),
    ("metricsOutage fallback never lowers", spec(metricsOutage={"policy": "fallback", "fallbackReplicas": 2}),
     obs(4, 10, p95=None), History(), 4, "MetricsUnavailable"),
]


@pytest.mark.parametrize(("spec_", "observation", "history", "replicas", "reason"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_planner(spec_: InferenceServiceSpec, observation: Observation, history: History, replicas: int | None,
                 reason: str) -> None:
    decision = decide(spec_, observation, history, NOW)
    assert decision.reason == reason, decision.message
    if replicas is not None:
        assert decision.replicas == replicas, decision.message


def test_manual_replicas_pin_the_count_and_still_tune_the_delay() -> None:
    pinned = spec().model_copy(update={"replicas": 3})
    decision = decide(pinned, obs(1, 240, p95=2000, queue=1500), History(), NOW)
    assert (decision.replicas, decision.reason) == (3, "ManualReplicas")
    assert decision.batching is not None and "remove spec.replicas" in decision.message
    assert decide(spec().model_copy(update={"replicas": 50}), obs(2, 10), History(), NOW).replicas == 8  # maxReplicas
    assert decide(pinned, obs(3, 10, p95=None), History(), NOW).replicas == 3  # blind: still the pin


@pytest.mark.parametrize("observation", [
    obs(1, 240, p95=2000, queue=1500),  # overloaded: the loop would add replicas
    obs(8, 5, p95=60),  # idle: the loop would remove them
    obs(12, 100),  # above maxReplicas: the HPA's bounds rule, not Batchpilot's
    obs(3, 10, p95=None),  # blind (metrics outage)
])
def test_external_mode_keeps_the_count_that_runs_and_still_tunes_batching(observation: Observation) -> None:
    external = spec(mode="external")
    decision = decide(external, observation, History(), NOW)
    assert (decision.replicas, decision.reason) == (observation.replicas, "ExternalReplicas"), decision.message
    assert not decision.changes(observation)
    if observation.latency_ms is not None:
        assert decision.batching is not None, "batching is still tuned, for the count the HPA runs"
        assert "owned by an HPA or KEDA" in decision.message


def test_external_mode_tunes_the_delay_for_the_count_that_runs() -> None:
    # The same load on 1 pod and on 6: a lone overloaded pod gets the delay predicted best for it, which need not
    # be the one for six; either way the prediction is the count's own, not the plan's.
    one = decide(spec(mode="external"), obs(1, 200, p95=180, queue=60), History(), NOW)
    six = decide(spec(mode="external"), obs(6, 200, p95=50, queue=2), History(), NOW)
    assert one.predicted_latency_ms is not None and six.predicted_latency_ms is not None
    assert one.predicted_latency_ms > six.predicted_latency_ms


def test_a_lower_target_utilization_plans_more_replicas() -> None:
    loose = decide(spec(targetUtilization=0.95), obs(1, 170, p95=140, queue=20), History(), NOW)
    tight = decide(spec(targetUtilization=0.4), obs(1, 170, p95=140, queue=20), History(), NOW)
    assert tight.replicas > loose.replicas, (loose.message, tight.message)


def test_a_breach_from_before_the_last_change_adds_nothing() -> None:
    stale = Observation(at=NOW, replicas=3, ready_replicas=3, latency_ms=400, arrival_rate=30, queue_ms=300,
                        window_s=15)
    assert decide(spec(), stale, History(last_scale_at=NOW - 10), NOW).replicas == 3
    assert decide(spec(), stale, History(last_scale_at=NOW - 15), NOW).replicas == 4


def test_a_load_step_goes_straight_to_enough_replicas() -> None:
    decision = decide(spec(), obs(1, 240, p95=2000, queue=1500), History(), NOW)
    assert decision.replicas >= 3  # 240/s needs three replicas at ~90/s each
    assert decision.predicted_latency_ms is not None and decision.predicted_latency_ms <= 0.8 * 150


def test_the_model_learns_compute_time_and_overhead() -> None:
    model = CapacityModel()
    for _ in range(20):
        model = model.learn(2.0, 50.0)
    assert math.isclose(model.compute_ms(2.0), 50.0)
    assert model.compute_ms(4.0) == pytest.approx(100.0)  # unseen: no batching gain assumed
    calibrated = model.calibrate(observed_ms=130, predicted_without_overhead_ms=100)
    assert calibrated.overhead_ms == pytest.approx(6.0)
    assert model.calibrate(observed_ms=50, predicted_without_overhead_ms=100).overhead_ms == 0.0


def test_prediction_is_infinite_past_capacity() -> None:
    model = CapacityModel.from_profile(PROFILE)
    assert model.capacity_per_replica(4) == pytest.approx(4 / 41.2 * 1000)
    assert math.isinf(model.predict(100, Candidate(1, 4, 2000), 95).latency_ms)
    assert model.predict(100, Candidate(2, 4, 2000), 95).latency_ms < 150


def test_a_long_queue_delay_is_predicted_when_batches_cannot_fill() -> None:
    model = CapacityModel.from_profile(PROFILE)
    short = model.predict(2, Candidate(1, 32, 1_000), 95).latency_ms
    long = model.predict(2, Candidate(1, 32, 200_000), 95).latency_ms
    assert long - short > 150


rates = st.floats(min_value=0.5, max_value=2000, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(low=rates, extra=st.floats(min_value=0, max_value=2000), current=st.integers(1, 8))
def test_more_load_never_plans_fewer_replicas(low: float, extra: float, current: int) -> None:
    s = spec()
    a = decide(s, obs(current, low, p95=100, queue=5), History(), NOW)
    b = decide(s, obs(current, low + extra, p95=100, queue=5), History(), NOW)
    assert b.replicas >= a.replicas, (a.message, b.message)


@settings(max_examples=200, deadline=None)
@given(rate=rates, current=st.integers(0, 12), p95=st.one_of(st.none(), st.floats(0, 10_000)),
       queue=st.floats(0, 10_000), lo=st.integers(1, 4), extra=st.integers(0, 6),
       calm=st.one_of(st.none(), st.floats(0, 1000)))
def test_bounds_always_hold(rate: float, current: int, p95: float | None, queue: float, lo: int, extra: int,
                            calm: float | None) -> None:
    s = spec(lo=lo, hi=lo + extra)
    history = History(calm_since=None if calm is None else NOW - calm)
    decision = decide(s, obs(current, rate, p95=p95, queue=queue), history, NOW)
    assert lo <= decision.replicas <= lo + extra, decision.message


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(min_value=1, max_value=300))
def test_constant_load_does_not_flap(rate: float) -> None:
    """Replaying one constant load for 10 minutes: the count moves in one direction, then at most one trial of one
    replica fewer (planner.tried_fewer), then stays."""
    s, history, replicas, t = spec(window=30), History(), 4, NOW
    seen = [replicas]
    model = CapacityModel.from_profile(PROFILE)
    for _ in range(120):
        predicted = model.predict(rate, Candidate(replicas, 4, 2000), 95).latency_ms
        p95 = min(predicted, 5000.0)
        decision = decide(s, obs(replicas, rate, p95=p95, queue=max(0.0, p95 - 45) / 2), history, t)
        history, replicas, t = decision.history, decision.replicas, t + 5
        seen.append(replicas)
    changes = [b - a for a, b in zip(seen, seen[1:], strict=False) if b != a]
    if changes and changes[-1] == -1 and any(c > 0 for c in changes):
        changes.pop()  # the trial of one fewer, after the way up
    assert all(c > 0 for c in changes) or all(c < 0 for c in changes), seen
    assert seen[-20:] == [seen[-1]] * 20, seen


def test_an_overload_episode_is_not_learned_as_overhead() -> None:
    overloaded = Observation(at=NOW, replicas=1, ready_replicas=1, latency_ms=1500, arrival_rate=60, queue_ms=600,
                             compute_ms=44, avg_batch_size=3.5, window_s=15)
    decision = decide(spec(), overloaded, History(), NOW)
    assert decision.history.model.overhead_ms == 0.0
    healthy = replace(overloaded, latency_ms=120, queue_ms=10, arrival_rate=15, avg_batch_size=1.1)
    assert decide(spec(), healthy, History(), NOW).history.model.overhead_ms == 0.0  # load not steady yet
    steady = History(steady_rate=15, steady_since=NOW - 60)
    assert decide(spec(), healthy, steady, NOW).history.model.overhead_ms > 0.0
    moved = replace(healthy, arrival_rate=30)  # a new load level: the minute-long p95 describes the old one
    assert decide(spec(), moved, steady, NOW).history.model.overhead_ms == 0.0


def test_a_fixed_delay_that_makes_batches_wait_is_diagnosed_not_scaled() -> None:
    """20 req/s, batches of 4, a fixed 300 ms delay: more replicas lengthen the wait, so the planner holds
    the count with the lowest latency and says which knob to turn (the sandbox's e2e scenario b)."""
    poor = spec(slo=200).model_copy(update={"batching": spec().batching.model_copy(
        update={"mode": "fixed", "max_queue_delay_microseconds": 300_000})})
    breach = obs(1, 20, p95=260, queue=200, compute=45, batch=3.0)
    decision = decide(poor, breach, History(), NOW)
    assert (decision.replicas, decision.reason) == (1, "BatchingBound"), decision.message
    assert "maxQueueDelayMicroseconds or use mode auto" in decision.message
    # Over-provisioned already: back to the best count after the window, breach or not.
    many = decide(poor, obs(4, 20, p95=340, queue=290, compute=45, batch=1.5), History(calm_since=NOW - 60), NOW)
    assert (many.replicas, many.reason) == (2, "ScaleDown"), many.message
    # The same load in auto mode is not batching-bound: a shorter delay meets the SLO.
    auto = decide(spec(slo=200), breach, History(), NOW)
    assert auto.reason != "BatchingBound" and auto.batching is not None and auto.batching.queue_delay_us < 300_000


def test_triton_batch_stats_are_learned_per_batch_size_instead_of_the_blurred_means() -> None:
    """Ten batches of 1 and ten of 64: the means say 'batches of 62 take 77 ms'; the statistics say each."""
    blurred = obs(1, 60, p95=100, queue=5, compute=76.5, batch=(10 + 640) / 20)
    measured = replace(blurred, batch_compute=(B(1, 47.4, 10), B(64, 76.9, 10)))
    learned = decide(spec(max_batch=64), measured, History(), NOW).history.model.learned
    assert learned == ((1.0, 47.4), (64.0, 76.9))
    fallback = decide(spec(max_batch=64), blurred, History(), NOW).history.model.learned
    assert fallback == ((32.0, 76.5),)  # no statistics arrived: the old pair


def test_batch_sizes_seen_too_rarely_since_the_last_tick_are_not_learned() -> None:
    thin = replace(obs(1, 60, p95=100), batch_compute=(B(1, 47.4, 40), B(3, 90.0, 2)))
    assert decide(spec(), thin, History(), NOW).history.model.learned == ((1.0, 47.4),)


def test_batch_stats_are_learned_without_prometheus_means() -> None:
    no_means = replace(obs(1, 60, p95=100, compute=None, batch=None), batch_compute=(B(4, 41.2, 12),))
    assert decide(spec(), no_means, History(), NOW).history.model.learned == ((4.0, 41.2),)


def test_a_preferred_batch_size_shortens_the_predicted_wait() -> None:
    model = CapacityModel.from_profile(PROFILE)
    plain = model.predict(20, Candidate(1, 32, 200_000), 95).latency_ms
    preferred = model.predict(20, Candidate(1, 32, 200_000, (2, 8)), 95).latency_ms
    assert preferred < plain - 100  # dispatch at 2 requests (~50 ms apart at 20/s), not after the 200 ms delay


def test_batches_stop_growing_at_the_largest_preferred_size() -> None:
    model = CapacityModel.from_profile(PROFILE)
    plain = model.predict(400, Candidate(1, 32, 0), 95)
    capped = model.predict(400, Candidate(1, 32, 0, (2, 4)), 95)
    assert capped.batch_size <= 4 < plain.batch_size
    assert capped.utilization == pytest.approx(400 / model.capacity_per_replica(4))
    assert capped.utilization > plain.utilization


def rising(rate: float, before: float, pending: float, gap: float = 15.0, steady_since: float = NOW - 600,
           window: float = 30.0) -> tuple[Observation, History]:
    """A tick whose rate window reads `rate` after the previous tick (gap seconds ago) read `before`."""
    seen = replace(obs(2, rate, p95=140, queue=20), pending=pending, window_s=window)
    return seen, History(last_rate=(NOW - gap, before), steady_rate=before, steady_since=steady_since)


@pytest.mark.parametrize(("rate", "before", "pending", "gap", "steady_since", "expected"), [
    # a rise with the pods' queues growing: half a window ahead at the slope since the previous tick
    (150.0, 100.0, 500.0, 15.0, NOW - 600, 200.0),
    (150.0, 100.0, 500.0, 30.0, NOW - 600, 175.0),  # the slope over a longer gap is gentler
    (150.0, 100.0, 8.0, 15.0, NOW - 600, 150.0),  # queues hold at most a batch per pod: a window still filling
    (115.0, 100.0, 500.0, 15.0, NOW - 600, 115.0),  # within RISE_BAND: noise
    (80.0, 100.0, 500.0, 15.0, NOW - 600, 80.0),  # falls are never projected
    (150.0, 100.0, 500.0, 45.0, NOW - 600, 150.0),  # the previous rate is older than the window
    (150.0, 100.0, 500.0, 15.0, NOW - 15.0, 150.0),  # the rise began last tick: the window has caught up since
])
def test_a_rise_is_projected_past_the_lag_of_the_rate_window(rate: float, before: float, pending: float, gap: float,
                                                             steady_since: float, expected: float) -> None:
    seen, history = rising(rate, before, pending, gap, steady_since)
    assert projected(spec(), seen, history, NOW) == pytest.approx(expected)


def test_a_projected_rise_plans_more_replicas_than_the_window_alone() -> None:
    seen, history = rising(240.0, 150.0, 500.0)
    plain = decide(spec(), seen, replace(history, last_rate=None), NOW)
    ahead = decide(spec(), seen, history, NOW)
    assert ahead.replicas > plain.replicas, (plain.message, ahead.message)
    assert "rising: 330.0 req/s projected" in ahead.message
    assert ahead.history.last_rate == (NOW, 240.0)


def _at_utilization(s: InferenceServiceSpec, replicas: int, utilization: float) -> float:
    """The arrival rate at which `replicas` pods of the spec's profile run at `utilization` of their capacity."""
    model = CapacityModel.from_profile(PROFILE)
    one = model.predict(1.0, Candidate(replicas, 4, s.batching.max_queue_delay_microseconds), 95).utilization
    return utilization / one


def test_a_steady_load_under_the_target_utilization_of_fewer_pods_scales_down_to_them() -> None:
    """Gamma CV 4 in the simulator: 0.82 of six pods' capacity (target 0.85) held seven pods for the hour while the
    way down asked for 0.75. (A 400 ms SLO: utilization, not latency, decides.)"""
    s = spec(slo=400)
    rate = _at_utilization(s, 6, 0.82)
    six = CapacityModel.from_profile(PROFILE).predict(rate, Candidate(6, 4, s.batching.max_queue_delay_microseconds),
                                                      95)
    assert six.latency_ms <= 0.76 * 400 and s.autoscaling.target_utilization - 0.1 < six.utilization < 0.85, six
    decision = decide(s, obs(7, rate, p95=60), History(calm_since=NOW - 60), NOW)
    assert (decision.replicas, decision.reason) == (6, "ScaleDown"), decision.message


def test_a_scale_down_goes_to_the_most_any_proposal_of_the_window_asked_for() -> None:
    """The HPA's stabilization window keeps its highest recommendation likewise: one low reading at the end of the
    window does not set the count."""
    s, seen, history = spec(window=60), obs(8, 10), History()
    steps = []
    for t, wanted in ((0, 6), (30, 5), (60, 5)):
        proposal = Proposal(wanted, DecisionReason.SCALE_DOWN, "evidence", "evidence", history)
        decision = limit(s, seen, proposal, NOW + t)
        history = decision.history
        steps.append((decision.replicas, decision.reason))
    assert steps == [(8, "Stabilizing"), (8, "Stabilizing"), (6, "ScaleDown")]
    assert (history.calm_since, history.calm_peak) == (None, None), "the scale-down ends the calm stretch"
    # A proposal to hold ends the stretch, and its peak with it.
    held = limit(s, seen, Proposal(8, DecisionReason.WITHIN_SLO, "e", "e", History(calm_since=NOW, calm_peak=7)), NOW)
    assert (held.history.calm_since, held.history.calm_peak) == (None, None)


def test_a_count_seen_slow_at_a_steady_load_is_not_returned_to() -> None:
    """Over the planning target (0.8 x 400 ms) at seven pods, after all seven served a whole minute: the model's six
    is refused until the load moves out of the steady band."""
    s = spec(slo=400)
    rate = _at_utilization(s, 6, 0.8)
    steady_load = History(steady_rate=rate, steady_since=NOW - 600, calm_since=NOW - 60)
    assert decide(s, obs(7, rate, p95=330), steady_load, NOW).replicas == 6, "no minute of evidence yet"
    served = replace(steady_load, serving=(7, NOW - 60))
    slow = decide(s, obs(7, rate, p95=330), served, NOW)
    assert (slow.replicas, slow.reason, slow.history.slow_at) == (7, "WithinSLO", 7), slow.message
    assert "6 would do by the model, but p95 was over 320 ms at 7 replica(s)" in slow.message
    # Calm again at the same load: still not six.
    assert decide(s, obs(7, rate, p95=60), replace(slow.history, calm_since=NOW - 60), NOW + 5).replicas == 7
    # Fast at seven does not count as slow; a count not all ready serves no evidence.
    assert decide(s, obs(7, rate, p95=300), served, NOW).history.slow_at is None
    assert decide(s, obs(7, rate, p95=330, ready=6), served, NOW).history == \
        replace(decide(s, obs(7, rate, p95=330, ready=6), served, NOW).history, serving=None, slow_at=None)
    # The load moved out of the band: what was slow at the old load says nothing of the new one.
    moved = decide(s, obs(7, rate * 0.7, p95=60), replace(slow.history, calm_since=NOW - 60), NOW + 5)
    assert moved.history.slow_at is None and moved.replicas < 7, moved.message


def test_a_count_measured_within_half_the_margins_at_a_steady_load_is_kept() -> None:
    """Gamma CV 8 in the simulator: p95 164-172 ms on 6 pods (SLO 200 ms), over the planning target (160 ms) and
    the 0.85 utilization at the rate's highs, ran 7 pods for the hour where 6 serve 99.2%. A count whose own minute
    of measurements covers the load keeps it while p95 and the prediction stay under 90% of the SLO and the
    utilization under 0.925 (half of each margin), and while the load has not grown; without that minute, past either
    half, or on a growing load, the plan goes ahead."""
    s = spec(slo=400)
    rate = _at_utilization(s, 6, 0.88)
    steady_load = History(steady_rate=rate, steady_since=NOW - 600)
    served = replace(steady_load, serving=(6, NOW - 60))
    kept = decide(s, obs(6, rate, p95=300), served, NOW)
    assert (kept.replicas, kept.reason) == (6, "WithinSLO"), kept.message
    assert "7 by the model at 320 ms, but p95 has been 300 ms (under 360 ms) at 6 replica(s)" in kept.message
    assert decide(s, obs(6, rate, p95=300), replace(served, serving=(6, NOW - 30)), NOW).replicas == 7, \
        "the count has served under a minute"
    assert decide(s, obs(6, rate, p95=300), replace(served, steady_since=NOW - 30), NOW).replicas == 7, \
        "the load has held under a minute"
    assert decide(s, obs(6, rate, p95=370), served, NOW).replicas == 7, "p95 over 90% of the SLO"
    assert decide(s, obs(6, rate, p95=300), replace(served, steady_rate=rate / 1.15), NOW).replicas == 7, \
        "the load has grown more than half the steady band since the stretch began"
    busier = _at_utilization(s, 6, 0.94)
    assert decide(s, obs(6, busier, p95=300), replace(served, steady_rate=busier), NOW).replicas == 7, \
        "utilization over 0.925"
    assert decide(s, obs(6, rate, p95=300, ready=5), served, NOW).replicas == 7, "a replica not ready"


def test_a_count_serving_a_steady_load_well_tries_one_replica_fewer_and_keeps_it_on_its_own_p95() -> None:
    """Step in the simulator: after the step the plan ran 8 pods (utilization 0.85) for the hour where 7 serve the
    SLO at 0.89 (KEDA's rate trigger at the measured capacity ran 7: 12% fewer GPU-hours). Five minutes of a steady
    load within the planning target at 7 pods, and 6 predicted within half of each margin: 6 is tried, held through
    its first minute, then kept or left on its own p95."""
    s = spec(slo=400)
    rate = _at_utilization(s, 6, 0.9)
    assert decide(s, obs(7, rate, p95=250), History(), NOW).replicas == 7, "the model alone keeps 7"
    steady_load = History(steady_rate=rate, steady_since=NOW - 600, serving=(7, NOW - 300), calm_since=NOW - 60)
    trial = decide(s, obs(7, rate, p95=250), steady_load, NOW)
    assert (trial.replicas, trial.reason, trial.history.tried) == (6, "ScaleDown", 6), trial.message
    assert "p95 has been 250 ms at 7 replica(s) for 5 minutes at this load" in trial.message
    assert "trying 6" in trial.message
    # Its first minute, before its own p95 exists (the summary still covers 7 pods): kept.
    first = replace(trial.history, serving=(6, NOW + 10), calm_since=None)
    kept = decide(s, obs(6, rate, p95=250), first, NOW + 30)
    assert (kept.replicas, kept.reason) == (6, "WithinSLO") and "6 is on trial" in kept.message, kept.message
    # After it: its own p95 decides (held()), and over the planning target it is seen slow and left.
    assert decide(s, obs(6, rate, p95=300), first, NOW + 75).replicas == 6
    left = decide(s, obs(6, rate, p95=370), first, NOW + 75)
    assert (left.replicas, left.history.slow_at) == (7, 6), left.message
    # No trial: under five minutes of serving or of steady load, p95 over the target, a count seen slow, growth,
    # or the count fewer predicted over 0.925 utilization.
    for history, p95, why in (
        (replace(steady_load, serving=(7, NOW - 200)), 250, "served under five minutes"),
        (replace(steady_load, steady_since=NOW - 200), 250, "the load held under five minutes"),
        (steady_load, 330, "p95 over the planning target"),
        (replace(steady_load, slow_at=6), 250, "6 seen slow at this load"),
        (replace(steady_load, steady_rate=rate / 1.15), 250, "the load grew since the stretch began"),
        (replace(steady_load, fell_at=NOW - 1700), 250, "the load fell within the half hour"),
    ):
        assert decide(s, obs(7, rate, p95=p95), history, NOW).replicas == 7, why
    busier = _at_utilization(s, 6, 0.94)
    assert decide(s, obs(7, busier, p95=250), replace(steady_load, steady_rate=busier), NOW).replicas == 7, \
        "6 predicted over 0.925"
    # A fall out of the band is remembered (a rise is not), and the half hour counts from it.
    assert decide(s, obs(7, rate, p95=250), replace(steady_load, steady_rate=rate * 1.5), NOW).history.fell_at == NOW
    assert decide(s, obs(7, rate, p95=250), replace(steady_load, steady_rate=rate / 1.5), NOW).history.fell_at is None
    assert decide(s, obs(7, rate, p95=250), replace(steady_load, fell_at=NOW - 1800), NOW).replicas == 6
