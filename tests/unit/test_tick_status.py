"""What one control tick writes (build/tick_status.py): the status patch keys and the Events, in order."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import pytest

from batchpilot.api.status import ObservedMetrics
from batchpilot.build.pod_health import PodHealth
from batchpilot.build.status import resumed_history, rfc3339
from batchpilot.build.tick_status import Event, TickOutcome, tick_write
from batchpilot.control.planner import start_ahead
from batchpilot.control.types import (
    Decision,
    DecisionReason,
    History,
    Observation,
    ServiceMetrics,
    Tuning,
    metric_values,
)
from batchpilot.retune import Retune
from factories import service_spec

NOW = 1_800_000_000.0
SPEC = service_spec(model={"maxBatchSize": 8}, slo_ms=200, autoscaling={"minReplicas": 1, "maxReplicas": 4})
OBS = Observation(at=NOW, replicas=2, ready_replicas=2, latency_ms=80.0, arrival_rate=50.0, queue_ms=3.0,
                  compute_ms=20.0, avg_batch_size=2.0, queue_delay_us=1000, instance_count=1)
HEALTHY = [PodHealth("m-0", phase="Running", ready=True), PodHealth("m-1", phase="Running", ready=True)]
UNSCHEDULABLE = [PodHealth("m-0", unschedulable="0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")]
NONE_READY = Observation(at=NOW, replicas=1, ready_replicas=0)
TUNING = Tuning(5000, 1)
BASE_KEYS = {"conditions", "replicas", "readyReplicas", "observed"}


def outcome(replicas: int = 2, reason: DecisionReason = DecisionReason.WITHIN_SLO, acted: bool = False,
            retune: Retune | None = None, pods: list[PodHealth] | None = None, obs: Observation = OBS) -> TickOutcome:
    decision = Decision(replicas, reason, f"decided {replicas}", predicted_latency_ms=90.0)
    return TickOutcome(obs, decision, None, acted, retune, HEALTHY if pods is None else pods)


def write(o: TickOutcome, previous: list[dict[str, Any]] | None = None) -> tuple[dict[str, Any], tuple[Event, ...]]:
    w = tick_write(o, SPEC, previous, None, 3, NOW)
    return w.status, w.events


def test_a_tick_that_changes_nothing_writes_what_it_saw_and_sends_no_event() -> None:
    status, events = write(outcome())
    assert set(status) == BASE_KEYS
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    assert status["observed"]["arrivalRate"] == 50.0
    assert events == ()


def test_a_scale_records_the_decision_its_time_and_one_event_named_by_its_reason() -> None:
    status, events = write(outcome(3, DecisionReason.SCALE_UP, acted=True))
    assert set(status) == BASE_KEYS | {"lastDecision", "lastScaleTime"}
    assert status["lastScaleTime"] == rfc3339(NOW)
    assert status["lastDecision"]["replicas"] == {"from": 2, "to": 3}
    assert "batching" not in status["lastDecision"]
    assert events == (Event("Normal", "ScaleUp", "decided 3"),)


@pytest.mark.parametrize(("retune", "keys", "event"), [
    (Retune(TUNING, pods=2, changed=2), {"batching", "lastDecision"}, ("Normal", "Retuned")),
    (Retune(TUNING, pods=2, changed=0), {"batching"}, None),
    (Retune(TUNING, pods=2, changed=1, error="pod 127.0.0.3: load failed"), set(), ("Warning", "RetuneFailed")),
], ids=["changed", "already-applied", "failed"])
def test_a_retune_pass(retune: Retune, keys: set[str], event: tuple[str, str] | None) -> None:
    status, events = write(outcome(retune=retune))
    assert set(status) == BASE_KEYS | keys
    if "batching" in keys:
        assert status["batching"]["maxQueueDelayMicroseconds"] == 5000
    if "lastDecision" in keys:
        assert status["lastDecision"]["batching"]["to"]["maxQueueDelayMicroseconds"] == 5000
        assert status["lastDecision"]["batching"]["from"]["maxQueueDelayMicroseconds"] == 1000
    assert [(e.type, e.reason) for e in events] == ([] if event is None else [event])
    if retune.error is not None:
        assert "load failed" in events[0].message


def test_ready_turning_to_a_failure_warns_once_before_the_other_events() -> None:
    status, events = write(outcome(2, DecisionReason.BELOW_MIN_REPLICAS, acted=True, pods=UNSCHEDULABLE,
                                   obs=NONE_READY))
    assert status["conditions"][0]["status"] == "False"
    assert [(e.type, e.reason) for e in events] == [("Warning", "Unschedulable"), ("Normal", "BelowMinReplicas")]
    assert "Insufficient nvidia.com/gpu" in events[0].message
    # The next tick, still failing for the same reason, does not warn again.
    _, again = write(outcome(1, pods=UNSCHEDULABLE, obs=NONE_READY), previous=status["conditions"])
    assert again == ()


def test_the_last_applys_pair_is_carried_into_the_conditions() -> None:
    pair = [{"type": "Stalled", "status": "True", "reason": "ChildForbidden", "message": "exceeded quota",
             "observedGeneration": 3, "lastTransitionTime": rfc3339(NOW)}]
    w = tick_write(outcome(), SPEC, None, pair, 3, NOW)
    stalled = [c for c in w.status["conditions"] if c["type"] == "Stalled"]
    assert stalled == pair
    assert {c["type"] for c in w.status["conditions"]} >= {"Ready", "MetricsAvailable", "Autoscaling", "SLOMet"}


def test_status_observed_shows_every_metric_the_observation_carries_and_nothing_else() -> None:
    """ServiceMetrics (control/types.py) is the one declaration of the service's metrics; the API's
    ObservedMetrics must name the same fields, plus when they were read."""
    assert {f.name for f in fields(ServiceMetrics)} | {"at"} == set(ObservedMetrics.model_fields)
    status, _ = write(outcome())
    wire = {f.name: ObservedMetrics.model_fields[f.name].alias or f.name for f in fields(ServiceMetrics)}
    assert {wire[name]: value for name, value in metric_values(OBS).items()} == \
        {k: v for k, v in status["observed"].items() if k != "at"}


def test_the_burst_memory_is_written_and_a_restarted_operator_resumes_it() -> None:
    """A hold for bursts must survive a restart or a leader takeover: the new process would otherwise remove the
    held replicas after one stabilization window and lose the next burst again."""
    history = History(removed_at=NOW - 600, missed_at=NOW - 300, burst_returned_at=NOW - 60)
    o = outcome(reason=DecisionReason.HOLDING_FOR_BURSTS)
    held = TickOutcome(o.observation, replace(o.decision, history=history), None, False, None, HEALTHY)
    status, events = write(held)
    assert (status["lastScaleDownTime"], status["lastBurstMissTime"], status["lastBurstReturnTime"]) == \
        (rfc3339(NOW - 600), rfc3339(NOW - 300), rfc3339(NOW - 60))
    assert events == ()
    resumed = resumed_history(status)
    assert (resumed.removed_at, resumed.missed_at, resumed.burst_returned_at) == (NOW - 600, NOW - 300, NOW - 60)
    assert set(write(outcome())[0]) == BASE_KEYS  # nothing remembered, nothing written


def test_the_cold_starts_measured_are_written_and_a_restarted_operator_plans_a_climb_over_them() -> None:
    """A new leader that forgot a new node's 3-10 minute starts would plan a climb over none until one more scale-up
    had finished (planner.start_ahead), as the ramp that lost 4.7% of its requests did."""
    history = History(starts=(184.04, 412.5, 233.0))
    o = outcome()
    status, _ = write(TickOutcome(o.observation, replace(o.decision, history=history), None, False, None, HEALTHY))
    assert status["coldStartSeconds"] == [184.0, 412.5, 233.0]
    resumed = resumed_history(status)
    assert resumed.starts == (184.0, 412.5, 233.0)
    assert start_ahead(resumed, NOW) == 412.5
    assert resumed_history({"coldStartSeconds": [90, "x", -1]}).starts == (90.0,)  # edited by hand: what reads
