"""The latency floor the planner's search passes ranges of replica counts over with: never above a prediction
in its range (else the search would skip the count a full scan picks), and tight enough to skip."""

from __future__ import annotations

import math
from dataclasses import replace
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpilot.control import latency_floor
from batchpilot.control.capacity import Candidate, CapacityModel
from batchpilot.control.latency_floor import batch_range, latency_floor_ms
from batchpilot.control.replica_search import first_meeting, first_within, lowest_latency
from factories import uniform_contention

# The sandbox's emulated GPU: ResNet-50 on an H100, ten times slower (ms per batch).
PROFILE = [(1, 47.4), (2, 40.7), (4, 41.2), (8, 43.3), (16, 43.7), (32, 43.2), (64, 76.9)]
RESNET = CapacityModel.from_profile(PROFILE)
LOADED = 141_087.5
"""req/s: 600 replicas of 4 instances (contention 0.4) near what they serve (bench.decide_cost's loaded case)."""

spiky = st.lists(st.tuples(st.integers(1, 128), st.floats(0.5, 300)), min_size=1, max_size=7,
                 unique_by=lambda p: p[0])
"""Any curve, spikes included (where the batch interval must follow predict()'s rounds from batch 1)."""


@st.composite
def affine(draw: st.DrawFn) -> list[tuple[int, float]]:
    """A GPU's curve: a fixed cost plus a cost per request, from a large batching gain to none."""
    fixed, per_request = draw(st.floats(0.5, 100)), draw(st.floats(0.01, 20))
    return [(b, fixed + per_request * b) for b in (1, 2, 4, 8, 16, 32, 64)]


contentions = st.one_of(
    st.none().map(uniform_contention), st.floats(0, 1).map(uniform_contention),
    # Learned per batch size: any shape, as noisy statistics may give.
    st.lists(st.tuples(st.integers(1, 64).map(float), st.floats(0, 1)), min_size=1, max_size=5,
             unique_by=lambda p: p[0]).map(lambda ps: tuple(sorted(ps))),
)


@st.composite
def models(draw: st.DrawFn) -> CapacityModel:
    curve = draw(st.one_of(spiky, affine(), st.just(PROFILE)))
    return CapacityModel(CapacityModel.from_profile(curve).seed, overhead_ms=draw(st.floats(0, 30)),
                         contention=draw(contentions))


@settings(max_examples=400, deadline=None, derandomize=True)
@given(model=models(), load=st.floats(0, 0.999), replicas=st.integers(1, 1000),
       width=st.one_of(st.integers(0, 40), st.integers(0, 1000)), max_batch=st.integers(0, 128),
       delay=st.sampled_from([0, 100, 2000, 50_000, 300_000]), preferred=st.lists(st.integers(1, 128), max_size=3),
       instances=st.integers(1, 4), percentile=st.sampled_from([95, 99]))
def test_the_floor_is_never_above_a_prediction_in_its_range(
        model: CapacityModel, load: float, replicas: int, width: int, max_batch: int, delay: int,
        preferred: list[int], instances: int, percentile: int) -> None:
    fewest = Candidate(replicas, max_batch, delay, tuple(preferred), instances)
    rate = load / model.utilization(1.0, fewest)  # the fewest replicas at `load` of their capacity
    floor = latency_floor_ms(model, rate, fewest, replicas + width, percentile)
    lowest = min(model.predict(rate, replace(fewest, replicas=n), percentile).latency_ms
                 for n in range(replicas, replicas + width + 1))
    assert floor <= lowest


@settings(max_examples=300, deadline=None, derandomize=True)
@given(model=models(), load=st.floats(0, 0.999), replicas=st.integers(1, 1000), width=st.integers(0, 300),
       largest=st.integers(1, 128), instances=st.integers(1, 4), follow=st.booleans())
def test_the_batch_range_holds_every_batch_predicted_in_it(model: CapacityModel, load: float, replicas: int,
                                                            width: int, largest: int, instances: int,
                                                            follow: bool) -> None:
    fewest = Candidate(replicas, largest, 0, instance_count=instances)
    rate = load / model.utilization(1.0, fewest)
    # follow: predict()'s rounds are followed from batch 1 whatever the narrowing gave (LOOSE 0).
    with mock.patch.object(latency_floor, "LOOSE", 0.0 if follow else latency_floor.LOOSE):
        low, high = batch_range(model, rate / (replicas + width), rate / replicas, float(largest), instances)
    for n in range(replicas, replicas + width + 1):
        assert low <= model.predict(rate, replace(fewest, replicas=n), 95).batch_size <= high, n


@pytest.mark.parametrize(("rate", "fewest", "most", "at_least"), [
    pytest.param(LOADED, Candidate(600, 8, 2000, instance_count=4), 600, 0.999, id="one count, loaded: its latency"),
    pytest.param(LOADED, Candidate(600, 8, 2000, instance_count=4), 610, 0.99, id="ten counts: about the lowest"),
    pytest.param(2500.0, Candidate(125, 4, 300_000), 1000, 0.95, id="batches that cannot fill: the wait"),
])
def test_the_floor_is_close_enough_to_skip(rate: float, fewest: Candidate, most: int, at_least: float) -> None:
    model = replace(RESNET, contention=uniform_contention(0.4))
    lowest = min(model.predict(rate, replace(fewest, replicas=n), 95).latency_ms
                 for n in range(fewest.replicas, most + 1))
    assert at_least * lowest <= latency_floor_ms(model, rate, fewest, most, 95) <= lowest


def test_the_floor_says_nothing_for_counts_past_capacity() -> None:
    assert latency_floor_ms(RESNET, 1000.0, Candidate(1, 8, 2000), 100, 95) == -math.inf


def test_the_search_finds_what_a_scan_of_every_count_finds() -> None:
    """A loaded service with 4 instances: latency falls slowly with replicas, hundreds of counts apart."""
    model, rate = replace(RESNET, contention=uniform_contention(0.4)), LOADED

    def at(n: int) -> Candidate:
        return Candidate(n, 8, 2000, instance_count=4)

    predictions = [(n, model.predict(rate, at(n), 95)) for n in range(1, 1001)]
    within = next(n for n, p in predictions if p.utilization <= 0.85)
    assert first_within(model, rate, 0.85, at, 1, 1000) == within
    assert first_within(model, rate, 0.01, at, 1, 1000) == 1001
    assert first_meeting(model, rate, 120.0, 0.85, at, within, 1000, 95) == \
        next((n, p) for n, p in predictions if p.latency_ms <= 120.0 and p.utilization <= 0.85)
    assert first_meeting(model, rate, 100.0, 0.85, at, within, 1000, 95) is None
    assert lowest_latency(model, rate, at, within, 1000, 95) == \
        min(predictions[within - 1:], key=lambda o: (o[1].latency_ms, o[0]))
