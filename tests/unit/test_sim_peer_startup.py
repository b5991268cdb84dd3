"""The peers' first minutes in the simulator: what a new HPA/KEDA does with the monitor's first readings, and
that the concurrency Knative reads is Little's law of the simulated pods (so the KPA's choices are its own)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from batchpilot.sim.engine import SimConfig, simulate
from batchpilot.sim.policies.hpa import HpaPolicy, HpaRules, HpaState, Target, hpa_decide, queue_compute_ratio
from batchpilot.sim.policies.keda import keda_rate
from batchpilot.sim.policies.knative import KpaState, kpa_decide
from batchpilot.sim.profile import ComputeCurve
from batchpilot.sim.types import Action, Batching, Trace, View

BATCHING = Batching(max_batch_size=32, max_queue_delay_us=10_000)
RULES = HpaRules(min_replicas=1, max_replicas=40)
START = Action(replicas=4, batching=BATCHING)


def view(at: float, replicas: int, **metrics: float) -> View:
    fields: dict[str, Any] = dict(
        at=at, replicas=replicas, ready_replicas=replicas, pending_pods=0, batching=BATCHING, arrival_rate=None,
        latency_ms=None, queue_ms=None, compute_ms=None, avg_batch_size=None, pending_requests=None,
        ongoing_per_replica=None, gpu_utilization=None, queue_compute_ratio=None)
    fields.update(metrics)
    return View(**fields)


# ---- HPA / KEDA: a new HPA remembers the scale it found ------------------------------------------------------

def test_first_sync_seeds_the_window_with_the_current_scale() -> None:
    replicas, state, _ = hpa_decide(Target.POD_AVERAGE, 0.5, 1.0, 15.0, 4, 4, HpaState(), RULES)
    assert replicas == 4, "recordInitialRecommendation: the replicas found count as a recommendation"
    assert state.recommendations == ((15.0, 4), (15.0, 2))


@pytest.mark.parametrize(("policy", "low"), [
    pytest.param(HpaPolicy("hpa-queue-compute", "t", queue_compute_ratio, Target.POD_AVERAGE, 1.0, RULES, START),
                 {"queue_compute_ratio": 0.5}, id="hpa queue:compute"),
    # 150 req/s: what rate() reads 15 s into a series whose load began at 0 (half the window), of a true 300.
    pytest.param(keda_rate("t", 100.0, RULES, START), {"answered_rate": 150.0}, id="keda rate, partial window"),
])
def test_a_new_hpa_does_not_scale_below_what_it_found_for_one_window(policy: HpaPolicy,
                                                                     low: dict[str, float]) -> None:
    times = [15.0 * i for i in range(1, 23)]  # 15 ... 330 s
    got = [policy.step(view(t, 4, **low)).replicas for t in times]
    assert set(got[: times.index(315.0) + 1]) == {4}, "held by the first sync's recommendation"
    assert got[times.index(330.0)] == 2, "then the 300 s window lets it go"


# ---- Knative: the concurrency it reads is the pods' own ------------------------------------------------------

CURVE = ComputeCurve("flat", ((1, 47.4), (2, 40.7), (8, 43.3), (32, 43.2)))
"""The bench's resnet50 (the H100 curve x 10): a batch costs ~43 ms whatever its size."""


class Fixed:
    """3 pods throughout; keeps every View."""

    name, setting, period_s = "fixed", "3", 2.0

    def __init__(self) -> None:
        self.views: list[View] = []

    def initial(self) -> Action:
        return Action(replicas=3, batching=BATCHING)

    def step(self, v: View) -> Action:
        self.views.append(v)
        return Action(replicas=3)


def test_ongoing_requests_obey_littles_law_and_the_default_kpa_wants_too_few_pods() -> None:
    rate, duration = 1800.0, 60.0
    arrivals = np.sort(np.random.default_rng(3).uniform(0.0, duration, int(rate * duration)))
    policy = Fixed()
    record = simulate(Trace("flat", arrivals, duration), policy, SimConfig(CURVE, 200.0, batching=BATCHING), 3)
    settled = [v for v in policy.views if v.at >= 10.0]
    total = float(np.mean([v.ongoing_per_replica * v.ready_replicas for v in settled
                           if v.ongoing_per_replica is not None]))
    kept = record.arrival >= 10.0
    littles = rate * float(np.mean(record.latency_ms[kept])) / 1000.0
    assert total == pytest.approx(littles, rel=0.1), "queued + executing per ready pod, summed = lambda x W"
    # ~40 in flight per pod at 82% load, under Knative's default target of 70: the real KPA asks for 2 pods,
    # which cannot carry 1800 req/s (a pod tops out at 32 / 43 ms = 740 req/s). The flapping is the peer's.
    state = KpaState(tuple((float(t), total) for t in range(2, 62, 2)))
    pods, _, reason = kpa_decide(61.0, 3, 3, state, 70.0)
    assert (pods, reason) == (2, "Stable")
