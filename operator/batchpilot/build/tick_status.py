"""What one control tick writes: its status patch and its Events, rendered from what the tick returned. Pure.

handlers.control only carries this out (kopf's status patch, kopf.event, in order), so what a tick writes is
tested without kopf or an API server (tests/unit/test_tick_status.py). The Events, in the order they are sent:
1. a Warning when the Ready condition just turned to a failure (build/pod_health.py failure_event);
2. the decision's reason when the tick changed the replicas;
3. Retuned or RetuneFailed when a retune pass changed pods or failed (build/status.py retune_event).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.build import status as render
from batchpilot.build.pod_health import PodHealth, failure_event
from batchpilot.control.types import Decision, Observation

if TYPE_CHECKING:
    from batchpilot.retune import Retune


@dataclass(frozen=True)
class Event:
    """One Kubernetes Event on the InferenceService."""

    type: str
    """"Normal" or "Warning"."""
    reason: str
    message: str


@dataclass(frozen=True)
class TickWrite:
    status: dict[str, Any]
    """The status merge patch (top-level keys of status)."""
    events: tuple[Event, ...]


@dataclass(frozen=True)
class TickOutcome:
    """What a tick saw, decided and did (control_loop.Tick, with the pods' health already assessed)."""

    observation: Observation
    decision: Decision
    metrics_error: str | None
    acted: bool
    """The tick changed the Deployment's replicas."""
    retune: Retune | None
    pods: list[PodHealth]


def tick_write(outcome: TickOutcome, spec: InferenceServiceSpec, previous: list[dict[str, Any]] | None,
               reconcile_pair: list[dict[str, Any]] | None, generation: int, now: float) -> TickWrite:
    """The status patch and Events of one tick. `previous` is the conditions status holds; `reconcile_pair` the
    last apply's Stalled/Reconciling pair (kept by the handlers: it may have been written while this tick ran)."""
    obs, decision, retuned = outcome.observation, outcome.decision, outcome.retune
    conditions = render.merge_conditions(
        render.tick_conditions(previous, spec, obs, decision, outcome.metrics_error, outcome.pods, generation, now),
        reconcile_pair or [])
    status: dict[str, Any] = {"conditions": conditions, "replicas": decision.replicas,
                              "readyReplicas": obs.ready_replicas, "observed": render.observed(obs, now)}
    events: list[Event] = []
    failure = failure_event(previous, render.find(conditions, "Ready"))
    if failure is not None:
        events.append(Event("Warning", *failure))
    changed = retuned.tuning if retuned is not None and retuned.changed and retuned.error is None else None
    if outcome.acted or changed is not None:
        status["lastDecision"] = render.last_decision(obs, decision, now, changed)
    if outcome.acted:
        status["lastScaleTime"] = render.rfc3339(now)
        events.append(Event("Normal", decision.reason, decision.message))
    status.update(render.remembered(decision.history))
    if retuned is not None:
        failed = retuned.error is not None
        if not failed:
            status["batching"] = render.applied_batching(retuned.tuning, retuned.pods)
        if failed or retuned.changed:
            events.append(Event(*render.retune_event(retuned.tuning, retuned.pods, retuned.changed, retuned.error,
                                                     decision.reason)))
    return TickWrite(status, tuple(events))
