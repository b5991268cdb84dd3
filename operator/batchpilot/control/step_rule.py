"""The reactive replica rule: one more replica above the SLO, one fewer once latency is calm.

The planner falls back to it while the capacity model knows nothing (no profile, no traffic yet). It only
proposes; the shared limits (limits.py) apply the bounds, the readiness wait, the cooldown, the steps and the
stabilization window, as they do for the planner.

decide() is pure: the operator, tests and simulator call the same function.
"""

from __future__ import annotations

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.limits import limit
from batchpilot.control.types import Decision, DecisionReason, History, Observation, Proposal

CALM_FRACTION = 0.5
"""Latency below this fraction of the SLO counts as calm (room to remove a replica)."""


def decide(spec: InferenceServiceSpec, obs: Observation, history: History, now: float) -> Decision:
    if spec.paused:
        return Decision(obs.replicas, DecisionReason.PAUSED, "spec.paused is true: observing only", history)
    return limit(spec, obs, propose(spec, obs, history), now)


def propose(spec: InferenceServiceSpec, obs: Observation, history: History) -> Proposal:
    bounds, slo, current = spec.autoscaling, spec.slo.latency_ms, obs.replicas
    if obs.latency_ms is None:
        # Never act blind: missing metrics must not shrink the service.
        outage, blind = bounds.metrics_outage, "no fresh latency samples"
        if outage.policy == "fallback" and outage.fallback_replicas is not None:
            to = min(bounds.max_replicas, max(current, outage.fallback_replicas))
            if to > current:
                return Proposal(to, DecisionReason.METRICS_FALLBACK, f"{blind}; metricsOutage policy fallback",
                                blind, history, urgent=True)
        return Proposal(current, DecisionReason.METRICS_UNAVAILABLE, blind, f"{blind}; holding replicas", history)
    seen = f"p{spec.slo.percentile} {obs.latency_ms:.1f} ms vs SLO {slo:g} ms"
    if obs.latency_ms > slo:
        if current >= bounds.max_replicas:
            return Proposal(current, DecisionReason.AT_MAX_REPLICAS, seen,
                            f"{seen}; already at maxReplicas {bounds.max_replicas}", history)
        # Without a model every breach is unexplained: the extra replica waits for those still starting.
        return Proposal(current + 1, DecisionReason.SCALE_UP, seen, seen, history, urgent=True, waits_for_ready=True)
    if obs.latency_ms < CALM_FRACTION * slo and current > bounds.min_replicas:
        return Proposal(current - 1, DecisionReason.SCALE_DOWN, f"{seen}, calm", seen, history)
    return Proposal(current, DecisionReason.WITHIN_SLO, seen, seen, history)
