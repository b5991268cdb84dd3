"""Retunes reload the model on every pod: a change of batching for latency alone (the same replicas) waits
LATENCY_RETUNE_S after the last retune while the latency meets the planning target. It halved the reloads of the H200
step with maxInstanceCount 4, whose pods went between 1, 2 and 3 instances every 30-45 s (README, "Retunes for
latency alone are paced")."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import factories
from batchpilot.control.capacity import CapacityModel
from batchpilot.control.planner import LATENCY_RETUNE_S, decide, plan
from batchpilot.control.types import Decision, History, Observation
from factories import NOW, observation, service_spec

MODEL = CapacityModel.from_profile(factories.H100_RESNET50_MS)
WINDOW_S = 30.0


def spec(**batching: Any) -> Any:
    return service_spec(model={"maxBatchSize": 8, "profile": factories.profile()}, slo_ms=150,
                        autoscaling={"minReplicas": 1, "maxReplicas": 8},
                        batching={"mode": "auto", "maxQueueDelayMicroseconds": 300_000, **batching})


def running(delay_us: int, p95: float, rate: float = 60.0) -> Observation:
    """One replica at `rate` req/s running `delay_us`, its p95 as given (the planning target is 120 ms)."""
    return observation(1, rate, latency_ms=p95, queue_ms=5.0, compute_ms=40.0, queue_delay_us=delay_us,
                       instance_count=1, window_s=WINDOW_S)


def delay_of(d: Decision) -> int | None:
    return None if d.batching is None else d.batching.queue_delay_us


def test_plan_keeps_the_running_batching_for_latency_alone_only_when_asked() -> None:
    # At 60 req/s a 50 ms delay predicts 92 ms, no delay 83 ms: more than DELAY_GAIN, on one replica either way.
    assert plan(spec(), MODEL, 60, 120, 0.85, current_delay=50_000).batching.queue_delay_us == 0
    assert plan(spec(), MODEL, 60, 120, 0.85, current_delay=50_000, for_latency=False).batching.queue_delay_us == 50_000
    # A change that saves replicas is never held: a 100 ms delay needs 8 replicas at 20 req/s, no delay one.
    saving = plan(spec(), MODEL, 20, 120, 0.85, current_delay=100_000, for_latency=False)
    assert (saving.replicas, saving.batching.queue_delay_us) == (1, 0)


def test_a_retune_for_latency_alone_waits_while_the_latency_meets_the_target() -> None:
    recent = History(last_retune_at=NOW - 60)
    held = decide(spec(), running(50_000, p95=90), recent, NOW)
    assert delay_of(held) == 50_000 and held.history.last_retune_at == NOW - 60
    later = decide(spec(), running(50_000, p95=90), History(last_retune_at=NOW - LATENCY_RETUNE_S), NOW)
    assert delay_of(later) == 0 and later.history.last_retune_at == NOW


def test_a_retune_for_latency_goes_ahead_when_the_latency_misses_the_target() -> None:
    d = decide(spec(), running(50_000, p95=130), History(last_retune_at=NOW - 60), NOW)
    assert delay_of(d) == 0 and d.history.last_retune_at == NOW


def test_after_a_probe_the_batching_is_chosen_freely_until_the_next_retune() -> None:
    probed = History(last_retune_at=NOW - 60, probe_ended_at=NOW - 45)
    assert delay_of(decide(spec(), running(50_000, p95=90), probed, NOW)) == 0
    retuned_since = replace(probed, last_retune_at=NOW - 40)
    assert delay_of(decide(spec(), running(50_000, p95=90), retuned_since, NOW)) == 50_000
