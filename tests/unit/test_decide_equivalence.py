"""The fast planner decides exactly as the straightforward one did: predict() bit for bit, fewest(), plan(),
batching_bound() and decide() as a scan of every replica count, over random models, specs and loads.

The reference below is the planner and capacity model as they were before the search (replica_search,
latency_floor) and the memos: a linear scan of every count, thirty rounds of the batch iteration. Only the
model's points are built once per model here (the old code rebuilt the same list on every call), so the
reference runs in seconds.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control import planner
from batchpilot.control.capacity import Candidate, CapacityModel, Prediction, batch_limits
from batchpilot.control.planner import (
    DELAY_GAIN,
    Plan,
    batching_bound,
    candidate,
    decide,
    delay_choices,
    fewest,
    instance_choices,
    plan,
    plan_options,
)
from batchpilot.control.replica_search import first_within
from batchpilot.control.types import History, Observation, Tuning
from factories import uniform_contention

# ---- the reference: the code before the search, as it was (points built once per model) ----


@lru_cache(maxsize=256)
def old_points(model: CapacityModel) -> list[tuple[float, float]]:
    return model._points()


def old_interpolate(points: list[tuple[float, float]], batch_size: float) -> float:
    xs = [b for b, _ in points]
    ys = [ms for _, ms in points]
    if batch_size <= xs[0]:
        return ys[0]
    if batch_size >= xs[-1]:
        return ys[-1] * batch_size / xs[-1]
    i = next(k for k in range(len(xs) - 1) if xs[k] <= batch_size <= xs[k + 1])
    return ys[i] + (ys[i + 1] - ys[i]) * (batch_size - xs[i]) / (xs[i + 1] - xs[i])


def old_compute_ms(model: CapacityModel, batch_size: float, instances: int = 1) -> float:
    # The reference had one coefficient for every batch size: the models below give one (uniform_contention).
    contention = model.contention[0][1] if model.contention else 1.0
    slowdown = 1.0 + contention * (max(1, instances) - 1)
    return slowdown * old_interpolate(old_points(model), batch_size)


def old_capacity(model: CapacityModel, max_batch_size: int, instances: int = 1) -> float:
    largest = float(max(1, max_batch_size))
    sizes = {1.0, largest, *(b for b, _ in old_points(model) if 1.0 <= b <= largest)}
    return max(instances * b / old_compute_ms(model, b, instances) * 1000.0 for b in sizes)


def old_predict(model: CapacityModel, arrival_rate: float, candidate: Candidate, percentile: int) -> Prediction:
    replicas = max(1, candidate.replicas)
    k = max(1, candidate.instance_count)
    rate = max(0.0, arrival_rate) / replicas
    preferred = [p for p in candidate.preferred_batch_sizes if 1 <= p <= max(1, candidate.max_batch_size)]
    largest = max(preferred, default=max(1, candidate.max_batch_size))
    utilization = rate / old_capacity(model, largest, k)
    if utilization >= 1.0:
        return Prediction(math.inf, utilization, float(largest))
    batch = 1.0
    for _ in range(30):
        batch = min(float(largest), max(1.0, rate * old_compute_ms(model, batch, k) / 1000.0 / k))
    service_s = old_compute_ms(model, batch, k) / 1000.0
    q = percentile / 100.0
    busy = min(1.0, rate * service_s / batch / k)
    residual_s = service_s * q / k if busy > 1.0 - q else service_s * busy / k
    fill_s = 0.0
    target = min(preferred, default=largest)
    if target > 1 and rate > 0:
        fill_s = max(0.0, min(candidate.max_queue_delay_us / 1e6, (target - 1) / rate) - busy * service_s / k)
    queue_s = -math.log(1.0 - q) * service_s / (2.0 * largest * k) * utilization / (1.0 - utilization)
    latency_ms = (fill_s + residual_s + service_s + queue_s) * 1000.0 + model.overhead_ms
    return Prediction(latency_ms, utilization, batch)


def old_fewest(spec: InferenceServiceSpec, model: CapacityModel, rate: float, latency_ms: float,
               utilization: float, delay_us: int | None = None,
               instances: int | None = None) -> tuple[int, Prediction]:
    bounds, p = spec.autoscaling, spec.slo.percentile
    prediction = old_predict(model, rate, candidate(spec, bounds.max_replicas, delay_us, instances), p)
    for n in range(bounds.min_replicas, bounds.max_replicas + 1):
        prediction = old_predict(model, rate, candidate(spec, n, delay_us, instances), p)
        if prediction.latency_ms <= latency_ms and prediction.utilization <= utilization:
            return n, prediction
    return bounds.max_replicas, prediction


def old_options(spec: InferenceServiceSpec, model: CapacityModel, rate: float, latency_ms: float,
                utilization: float) -> list[Plan]:
    options = []
    for d in delay_choices(spec):
        for k in instance_choices(spec):
            replicas, prediction = old_fewest(spec, model, rate, latency_ms, utilization, d, k)
            options.append(Plan(replicas, Tuning(d, k), prediction))
    return options


def old_plan(spec: InferenceServiceSpec, model: CapacityModel, rate: float, latency_ms: float, utilization: float,
             current_delay: int | None = None, current_instances: int | None = None,
             for_latency: bool = True) -> Plan:
    options = old_options(spec, model, rate, latency_ms, utilization)
    best = min(options, key=lambda o: (o.replicas, o.prediction.latency_ms, o.batching.instance_count,
                                       o.batching.queue_delay_us))
    kept = next((o for o in options if o.batching.queue_delay_us == current_delay and
                 o.batching.instance_count == (current_instances or spec.batching.instance_count)), None)
    if kept is not None and kept.replicas == best.replicas and \
            (not for_latency or kept.prediction.latency_ms <= best.prediction.latency_ms * (1 + DELAY_GAIN)):
        return kept
    return best


def old_batching_bound(spec: InferenceServiceSpec, model: CapacityModel, rate: float, latency_ms: float,
                       utilization: float, delay_us: int, instances: int) -> tuple[int, Prediction] | None:
    if spec.model.max_batch_size <= 1 or spec.batching.mode == "off" or delay_us == 0:
        return None
    bounds, p = spec.autoscaling, spec.slo.percentile
    options = [(old_predict(model, rate, candidate(spec, n, delay_us, instances), p), n)
               for n in range(bounds.min_replicas, bounds.max_replicas + 1)]
    feasible = [(pr.latency_ms, n, pr) for pr, n in options if pr.utilization <= utilization]
    if not feasible or any(lat <= latency_ms for lat, _, _ in feasible):
        return None
    _, best, prediction = min(feasible, key=lambda o: (o[0], o[1]))
    without_wait = old_predict(model, rate, candidate(spec, best, 0, instances), p)
    return (best, prediction) if without_wait.latency_ms <= latency_ms else None


# ---- random models, specs and loads ----

DELAYS = (0, 100, 500, 2000, 10_000, 100_000, 300_000)
curves = st.lists(st.tuples(st.integers(1, 128), st.floats(0.5, 300)), min_size=1, max_size=7,
                  unique_by=lambda p: p[0])
measurements = st.lists(st.tuples(st.floats(1, 100), st.floats(0.5, 300)), max_size=4)


@st.composite
def models(draw: st.DrawFn) -> CapacityModel:
    model = CapacityModel.from_profile(draw(curves))
    for batch, ms in draw(measurements):
        model = model.learn(batch, ms)
    contention = uniform_contention(draw(st.one_of(st.none(), st.floats(0, 1))))
    return CapacityModel(model.seed, model.learned, draw(st.floats(0, 30)), contention)


@st.composite
def specs(draw: st.DrawFn, most_replicas: int = 1000) -> InferenceServiceSpec:
    top = draw(st.one_of(st.integers(1, 12), st.integers(1, most_replicas)))
    low = draw(st.one_of(st.just(1), st.integers(1, top)))
    lo_delay, hi_delay = sorted(draw(st.lists(st.sampled_from(DELAYS), min_size=2, max_size=2)))
    count = draw(st.integers(1, 4))
    batching: dict[str, Any] = {"mode": draw(st.sampled_from(["auto", "auto", "fixed", "off"])),
                                "minQueueDelayMicroseconds": lo_delay, "maxQueueDelayMicroseconds": hi_delay,
                                "instanceCount": count}
    if draw(st.booleans()):
        batching["maxInstanceCount"] = draw(st.integers(count, 4))
    max_batch = draw(st.integers(0, 64))
    if draw(st.booleans()):  # within maxBatchSize, as the CRD requires (ignored when it is 0)
        batching["preferredBatchSizes"] = draw(st.lists(st.integers(1, max_batch or 64), min_size=1, max_size=3))
    return InferenceServiceSpec.model_validate({
        "model": {"name": "m", "repository": {"configMap": "m"}, "maxBatchSize": max_batch},
        "slo": {"latencyMs": draw(st.floats(1, 1000)), "percentile": draw(st.sampled_from([95, 99]))},
        "autoscaling": {"minReplicas": low, "maxReplicas": top,
                        "targetUtilization": draw(st.floats(0.2, 0.95))},
        "batching": batching,
    })


@st.composite
def loads(draw: st.DrawFn, spec: InferenceServiceSpec, model: CapacityModel) -> float:
    """Arrival rates from none to past what maxReplicas serve, in proportion to the model's capacity."""
    most = spec.autoscaling.max_replicas * model.capacity_per_replica(max(1, spec.model.max_batch_size))
    return draw(st.one_of(st.just(0.0), st.floats(0, 1.3).map(lambda f: f * most)))


@st.composite
def problems(draw: st.DrawFn, most_replicas: int = 1000) -> tuple[InferenceServiceSpec, CapacityModel, float]:
    spec, model = draw(specs(most_replicas)), draw(models())
    return spec, model, draw(loads(spec, model))


Case = tuple[InferenceServiceSpec, CapacityModel, float, float, float, int, int]
"""spec, model, arrival rate, latency and utilization looked for, queue delay, instances."""


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Loads that some count in the bounds serves within the utilization, and latencies near what a count from
    there predicts at this delay (fewest() lands between the bounds) or between that and its prediction without
    delay (where waiting for batches may be all that misses it: batching_bound()); or anything."""
    spec, model = draw(specs()), draw(models())
    delay = draw(st.sampled_from(delay_choices(spec)))
    instances = draw(st.sampled_from(instance_choices(spec)))
    utilization = draw(st.one_of(st.just(spec.autoscaling.target_utilization), st.floats(0.1, 1.0)))
    low, top, p = spec.autoscaling.min_replicas, spec.autoscaling.max_replicas, spec.slo.percentile
    capacity = model.capacity_per_replica(batch_limits(candidate(spec, 1, delay, instances))[1], instances)
    served = utilization * capacity * draw(st.integers(low, top))  # what some count serves within the bound
    rate = draw(st.one_of(st.floats(0, 1.3 * top * capacity), st.floats(0.05, 1.0).map(lambda f: f * served)))
    within = first_within(model, rate, utilization, lambda n: candidate(spec, n, delay, instances), low, top)
    near = candidate(spec, draw(st.integers(min(within, top), top)), delay, instances)
    waiting = model.predict(rate, near, p).latency_ms
    no_wait = model.predict(rate, replace(near, max_queue_delay_us=0), p).latency_ms
    if math.isinf(waiting) or draw(st.integers(0, 5)) == 0:
        latency = draw(st.floats(1, 1000))
    elif draw(st.booleans()):
        latency = waiting * draw(st.floats(0.97, 1.1))
    else:
        latency = no_wait + (waiting - no_wait) * draw(st.floats(0, 1))
    return spec, fresh(model), rate, latency, utilization, delay, instances


def fresh(model: CapacityModel) -> CapacityModel:
    """The same model without what the other side cached on it."""
    return CapacityModel(model.seed, model.learned, model.overhead_ms, model.contention)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(model=models(), rate=st.floats(0, 5000), replicas=st.integers(1, 1000), max_batch=st.integers(0, 128),
       delay=st.sampled_from(DELAYS), preferred=st.lists(st.integers(1, 128), max_size=3),
       instances=st.integers(1, 4), percentile=st.sampled_from([95, 99]))
def test_predict_is_bit_for_bit_the_old_one(model: CapacityModel, rate: float, replicas: int, max_batch: int,
                                            delay: int, preferred: list[int], instances: int,
                                            percentile: int) -> None:
    c = Candidate(replicas, max_batch, delay, tuple(preferred), instances)
    assert model.predict(rate, c, percentile) == old_predict(model, rate, c, percentile)
    assert model.utilization(rate, c) == old_predict(model, rate, c, percentile).utilization


@settings(max_examples=250, deadline=None, derandomize=True)
@given(case=cases())
def test_fewest_is_the_scan_of_every_count(case: Case) -> None:
    spec, model, rate, latency, utilization, delay, instances = case
    assert fewest(spec, model, rate, latency, utilization, delay, instances) == \
        old_fewest(spec, fresh(model), rate, latency, utilization, delay, instances)


@settings(max_examples=250, deadline=None, derandomize=True)
@given(case=cases())
def test_batching_bound_is_the_scan_of_every_count(case: Case) -> None:
    spec, model, rate, latency, utilization, delay, instances = case
    assert batching_bound(spec, model, rate, latency, utilization, delay, instances) == \
        old_batching_bound(spec, fresh(model), rate, latency, utilization, delay, instances)


@settings(max_examples=70, deadline=None, derandomize=True)
@given(case=cases(), data=st.data())
def test_plan_is_the_scan_of_every_count_and_batching(case: Case, data: st.DataObject) -> None:
    spec, model, rate, latency, utilization, _, _ = case
    assert plan_options(spec, model, rate, latency, utilization) == \
        old_options(spec, fresh(model), rate, latency, utilization)
    current_delay = data.draw(st.one_of(st.none(), st.sampled_from(delay_choices(spec))))
    current_instances = data.draw(st.one_of(st.none(), st.sampled_from(instance_choices(spec))))
    for_latency = data.draw(st.booleans())
    assert plan(spec, model, rate, latency, utilization, current_delay, current_instances, for_latency) == \
        old_plan(spec, fresh(model), rate, latency, utilization, current_delay, current_instances, for_latency)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(problem=problems(200), current=st.integers(0, 220), p95=st.floats(1, 3000), replicas=st.none() |
       st.integers(1, 200), calm=st.none() | st.floats(0, 120))
def test_decide_is_the_old_decide(problem: tuple[InferenceServiceSpec, CapacityModel, float], current: int,
                                  p95: float, replicas: int | None, calm: float | None) -> None:
    spec, model, rate = problem
    spec = spec.model_copy(update={"replicas": replicas})
    now = 1_000_000.0
    obs = Observation(at=now, replicas=current, ready_replicas=current, latency_ms=p95, arrival_rate=rate,
                      queue_ms=p95 / 2, compute_ms=p95 / 3, avg_batch_size=2.0, queue_delay_us=2000,
                      window_s=30)
    history = History(calm_since=None if calm is None else now - calm, model=model)
    new = decide(spec, obs, history, now)
    with mock.patch.object(planner, "plan", old_plan), \
            mock.patch.object(planner, "batching_bound", old_batching_bound), \
            mock.patch.object(CapacityModel, "predict", old_predict):
        old = decide(spec, obs, History(calm_since=history.calm_since, model=fresh(model)), now)
    assert new == old
