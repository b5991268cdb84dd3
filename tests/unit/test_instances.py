"""Model instances per pod: the capacity model assumes no gain until it has measured how batches in flight
together slow each other (contention); the planner tries one instance more (ProbingInstances) before it buys a
replica, then keeps whichever the measurement favours."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import factories
from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.batch_stats import BatchSizeCompute as B
from batchpilot.control.capacity import Candidate, CapacityModel
from batchpilot.control.limits import RETUNE_INTERVAL_S
from batchpilot.control.planner import PROBE_S, decide, instance_choices
from batchpilot.control.types import Decision, History, Observation
from factories import H100_RESNET50_MS, NOW, observation, service_spec, uniform_contention

PROFILE = H100_RESNET50_MS
ONE = CapacityModel.from_profile(PROFILE)



def instances_of(decision: Decision) -> int | None:
    """The instance count the decision has every pod run (None: batching left as it is)."""
    return None if decision.batching is None else decision.batching.instance_count


def delay_of(decision: Decision) -> int | None:
    """The queue delay the decision has every pod run (None: batching left as it is)."""
    return None if decision.batching is None else decision.batching.queue_delay_us

def spec(mode: str = "auto", most: int | None = 2, **batching: Any) -> InferenceServiceSpec:
    b: dict[str, Any] = {"mode": mode, **batching}
    if most is not None:
        b["maxInstanceCount"] = most
    return service_spec(model={"maxBatchSize": 4, "profile": factories.profile()}, slo_ms=150,
                        autoscaling={"minReplicas": 1, "maxReplicas": 8}, batching=b)


def obs(instances: int = 1, rate: float = 120, p95: float = 110, queue: float = 20,
        batch_compute: tuple[tuple[int, float, int], ...] = (), in_flight: float | None = None) -> Observation:
    """One replica short of what 120 req/s needs with one instance, its p95 within the planning target (120 ms)."""
    return observation(1, rate, latency_ms=p95, queue_ms=queue, queue_delay_us=2000, instance_count=instances,
                       batch_compute=batch_compute, concurrency=in_flight)


def measured(slowdown: float) -> tuple[B, ...]:
    """Triton's per-batch-size compute times, each batch `slowdown` x its time alone."""
    return tuple(B(b, ms * slowdown, 50) for b, ms in PROFILE if b <= 4)


def test_instances_are_assumed_to_gain_nothing_until_measured() -> None:
    assert ONE.contention == () and not ONE.measured_contention and ONE.contention_at(4) == 1.0
    assert ONE.compute_ms(4, 2) == pytest.approx(2 * ONE.compute_ms(4))
    assert ONE.capacity_per_replica(4, 2) == pytest.approx(ONE.capacity_per_replica(4))
    one, two = (ONE.predict(60, Candidate(1, 4, 2000, instance_count=k), 95) for k in (1, 2))
    assert two.utilization == pytest.approx(one.utilization) and two.latency_ms > one.latency_ms


@pytest.mark.parametrize(("slowdown", "in_flight", "contention"), [
    (1.0, 2.0, 0.0),    # batches side by side took their time alone: no contention
    (2.0, 2.0, 1.0),    # each took twice as long with two in flight: they took turns
    (1.3, 1.6, 0.5),    # partly
    (2.5, 1.5, 1.0),    # waiting counts as well: never above 1
])
def test_contention_is_learned_from_batches_in_flight_together(slowdown: float, in_flight: float,
                                                               contention: float) -> None:
    model = ONE.learn_contention(measured(slowdown), in_flight)
    assert [model.contention_at(b) for b in (1, 2, 4)] == pytest.approx([contention] * 3)
    assert model.learned == ONE.learned
    assert model.compute_ms(4, 3) == pytest.approx((1 + 2 * contention) * ONE.compute_ms(4))
    assert model.capacity_per_replica(4, 2) == pytest.approx(ONE.capacity_per_replica(4) * 2 / (1 + contention))


def test_contention_is_not_learned_from_batches_that_mostly_ran_alone_or_without_a_curve() -> None:
    assert ONE.learn_contention(measured(1.1), 1.1).contention == ()
    assert CapacityModel().learn_contention(measured(1.0), 2.0).contention == ()


def test_contention_is_learned_per_batch_size_and_not_carried_to_batches_never_seen_side_by_side() -> None:
    """An H200 measured ResNet-50's instances at 0.24 for batches of 1 and 0.88 for batches of 32: what a light load
    shows says nothing of the batches a heavy one brings. Learned at 1, 2 and 4 only, contention rises from the
    value at 4 to 1 at 8 (twice the largest size seen), so 4 instances add no capacity at the batches of 32 a
    loaded pod runs."""
    sizes = {1: 1.3, 2: 1.4, 4: 1.8}  # each batch's time with 2 in flight over its time alone
    seen = tuple(B(b, ms * sizes[b], 50) for b, ms in PROFILE if b in sizes)
    model = ONE.learn_contention(seen, 2.0)
    assert [model.contention_at(b) for b in (1, 2, 3, 4)] == pytest.approx([0.3, 0.4, 0.6, 0.8])
    assert model.contention_at(6) == pytest.approx(0.9) and model.contention_at(8) == 1.0
    assert model.contention_at(32) == 1.0 and model.contention_at(0.5) == pytest.approx(0.3)
    assert model.capacity_per_replica(32, 4) == pytest.approx(ONE.capacity_per_replica(32))
    assert model.compute_ms(2, 3) == pytest.approx(1.8 * ONE.compute_ms(2))
    # A later tick at larger batches extends what is known.
    loaded = model.learn_contention((B(8, 43.3 * 1.9, 50),), 2.0)
    assert loaded.contention_at(8) == pytest.approx(0.9) and loaded.contention_at(16) == 1.0


def test_instance_choices_follow_the_mode_and_the_bound() -> None:
    assert instance_choices(spec(most=3)) == [1, 2, 3]
    assert instance_choices(spec(most=None, instanceCount=2)) == [2]
    assert instance_choices(spec(mode="fixed", most=3, instanceCount=2)) == [2]


def test_the_api_refuses_an_instance_count_above_its_bound() -> None:
    with pytest.raises(ValueError, match="instanceCount"):
        spec(most=2, instanceCount=3)


def test_one_instance_more_is_probed_before_a_replica_is_added() -> None:
    d = decide(spec(), obs(), History(), NOW)
    assert (d.replicas, d.reason, instances_of(d), delay_of(d)) == (1, "ProbingInstances", 2, 2000)
    assert d.history.probed == (2,) and d.history.probe_since == NOW
    without = decide(spec(most=None), obs(), History(), NOW)
    assert (without.replicas, without.reason, instances_of(without)) == (2, "ScaleUp", 1)


def test_no_probe_for_a_rise_one_instance_more_could_not_serve() -> None:
    # 150 req/s needs 3 replicas with one instance: a second instance serves at most twice what the one pod does,
    # so the replicas are bought at once; a probe would hold the count for a tick (0.8 points of the H200 step
    # with maxInstanceCount 4, where 3 pods needed 8).
    d = decide(spec(), obs(rate=150), History(), NOW)
    assert (d.replicas, d.reason, d.history.probed) == (3, "ScaleUp", ())


def test_a_probe_holds_the_count_until_the_contention_is_measured() -> None:
    probing = decide(spec(), obs(), History(), NOW).history
    d = decide(spec(), obs(instances=2), probing, NOW + 10)
    assert (d.replicas, d.reason, instances_of(d)) == (1, "ProbingInstances", 2)


def test_a_breach_during_a_probe_scales_at_once() -> None:
    probing = decide(spec(), obs(), History(), NOW).history
    d = decide(spec(), obs(instances=2, p95=900, queue=800), probing, NOW + 10)
    assert d.reason == "Panic" and d.replicas > 1 and d.history.probe_since is None


def test_a_count_that_measured_no_gain_is_given_back_and_the_replica_bought() -> None:
    probing = decide(spec(), obs(), History(), NOW).history
    d = decide(spec(), obs(instances=2, batch_compute=measured(1.9), in_flight=1.9), probing, NOW + 20)
    assert (d.replicas, d.reason, instances_of(d)) == (2, "ScaleUp", 2)  # the replica now, the reload later
    assert "held: the last was 20s ago (at most one per 30s)" in d.message
    later = decide(spec(), replace(obs(instances=2), replicas=2, ready_replicas=2, arrival_rate=120), d.history,
                   NOW + 35)
    assert instances_of(later) == 1 and later.history.last_retune_at == NOW + 35
    again = decide(spec(), obs(), replace(d.history, last_scale_at=None), NOW + 70)
    assert again.reason == "ScaleUp"  # measured: not probed again


def test_a_count_that_measured_a_gain_is_kept_instead_of_a_replica() -> None:
    probing = decide(spec(), obs(), History(), NOW).history
    d = decide(spec(), obs(instances=2, batch_compute=measured(1.1), in_flight=1.8), probing, NOW + 20)
    assert (d.replicas, instances_of(d)) == (1, 2) and d.reason == "WithinSLO"


def test_a_probe_that_measured_nothing_ends_after_its_limit_and_is_not_repeated() -> None:
    probing = decide(spec(), obs(), History(), NOW).history
    d = decide(spec(), obs(instances=2), probing, NOW + PROBE_S + 1)
    assert (d.replicas, d.reason, instances_of(d)) == (2, "ScaleUp", 1)
    assert d.history.probed == (2,) and d.history.probe_since is None
    assert d.history.probe_ended_at == NOW + PROBE_S + 1  # the probe's batching was no choice: not paced after it


def test_retunes_are_paced_but_the_first_is_not() -> None:
    first = decide(spec(), obs(), History(), NOW)
    assert instances_of(first) == 2 and first.history.last_retune_at == NOW
    # The pods' batching unknown (no pass has succeeded yet, e.g. the last one failed and rolled back): still one
    # pass per RETUNE_INTERVAL_S, since a failing pass reloads the pods before the one that refuses, twice.
    unknown = replace(obs(), queue_delay_us=None)
    held = decide(spec(), unknown, History(last_retune_at=NOW), NOW + 1)
    assert delay_of(held) is None and "held" in held.message
    later = decide(spec(), unknown, History(last_retune_at=NOW), NOW + RETUNE_INTERVAL_S)
    assert delay_of(later) is not None and later.history.last_retune_at == NOW + RETUNE_INTERVAL_S


def test_fixed_mode_leaves_instances_alone() -> None:
    d = decide(spec(mode="fixed", most=3), obs(), History(), NOW)
    assert instances_of(d) is None and delay_of(d) is None and d.reason == "ScaleUp"


@settings(max_examples=60, deadline=None)
@given(rate=st.floats(min_value=1, max_value=400), current=st.integers(1, 8), p95=st.floats(10, 2000))
def test_a_measured_lack_of_gain_plans_exactly_as_one_instance_would(rate: float, current: int, p95: float) -> None:
    saturated = History(model=replace(ONE, contention=uniform_contention(1.0)))
    seen = replace(obs(rate=rate, p95=p95, queue=p95 / 2), replicas=current, ready_replicas=current)
    alone = decide(spec(most=None), seen, saturated, NOW)
    allowed = decide(spec(most=3), seen, saturated, NOW)
    assert (allowed.replicas, allowed.reason, instances_of(allowed)) == (alone.replicas, alone.reason, 1)


@settings(max_examples=60, deadline=None)
@given(rate=st.floats(min_value=1, max_value=400), current=st.integers(1, 8), p95=st.floats(10, 2000),
       contention=st.floats(0, 1))
def test_instances_never_cost_replicas(rate: float, current: int, p95: float, contention: float) -> None:
    """Whatever the measured contention, allowing more instances never plans more replicas than one would."""
    known = History(model=replace(ONE, contention=uniform_contention(contention)))
    seen = replace(obs(rate=rate, p95=p95, queue=p95 / 2), replicas=current, ready_replicas=current)
    assert decide(spec(most=3), seen, known, NOW).replicas <= decide(spec(most=None), seen, known, NOW).replicas


@settings(max_examples=300, deadline=None, derandomize=True)
@given(points=st.lists(st.tuples(st.integers(1, 64).map(float), st.floats(0, 1)), min_size=1, max_size=5,
                       unique_by=lambda p: p[0]).map(lambda ps: tuple(sorted(ps))),
       instances=st.integers(2, 4), largest=st.integers(1, 96), low=st.floats(1, 96), width=st.floats(0, 64))
def test_capacity_and_compute_ranges_are_exact_with_contention_per_batch_size(
        points: tuple[tuple[float, float], ...], instances: int, largest: int, low: float, width: float) -> None:
    """With contention per batch size, compute time is a product of two piecewise-linear curves: its best
    throughput and its least and most time over a range can lie inside a piece, and are found there (a dense grid
    never beats them); the latency floor (latency_floor.py) rests on them."""
    model = replace(ONE, contention=points)
    k = instances
    grid = [1.0 + i * (largest - 1.0) / 2000 for i in range(2001)]
    best = max(k * b / model.compute_ms(b, k) * 1000.0 for b in grid)
    assert model.capacity_per_replica(largest, k) >= best * (1 - 1e-9)
    high = low + width
    least, most = model.compute_range_ms(low, high, k)
    times = [model.compute_ms(low + i * (high - low) / 2000, k) for i in range(2001)]
    assert least <= min(times) * (1 + 1e-9) and most >= max(times) * (1 - 1e-9)
