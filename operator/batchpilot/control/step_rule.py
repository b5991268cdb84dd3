"""The reactive replica rule: one more replica above the SLO, one fewer after a calm window.

The planner falls back to it while the capacity model knows nothing (no profile, no traffic yet).

decide() is pure: the operator, tests and simulator call the same function.
"""

from __future__ import annotations

from dataclasses import replace

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.types import Decision, DecisionReason, History, Observation

CALM_FRACTION = 0.5
"""Latency below this fraction of the SLO counts as calm (room to remove a replica)."""


def decide(spec: InferenceServiceSpec, obs: Observation, history: History, now: float) -> Decision:
    bounds = spec.autoscaling
    slo = spec.slo.latency_ms
    current = obs.replicas

    def hold(reason: DecisionReason, message: str, hist: History = history) -> Decision:
        return Decision(current, reason, message, hist)

    def scale(to: int, reason: DecisionReason, message: str) -> Decision:
        return Decision(to, reason, message, replace(history, calm_since=None, last_scale_at=now))

    if spec.paused:
        return hold(DecisionReason.PAUSED, "spec.paused is true: observing only")
    if current < bounds.min_replicas:
        return scale(bounds.min_replicas, DecisionReason.BELOW_MIN_REPLICAS, f"raise to minReplicas {bounds.min_replicas}")
    if current > bounds.max_replicas:
        return scale(bounds.max_replicas, DecisionReason.ABOVE_MAX_REPLICAS, f"lower to maxReplicas {bounds.max_replicas}")
    if obs.latency_ms is None:
        # Never act blind: missing metrics must not shrink the service.
        outage = bounds.metrics_outage
        if outage.policy == "fallback" and outage.fallback_replicas is not None:
            to = min(bounds.max_replicas, max(current, outage.fallback_replicas))
            if to > current:
                return scale(to, DecisionReason.METRICS_FALLBACK,
                             f"no fresh latency samples; metricsOutage policy fallback: {current} -> {to}")
        return hold(DecisionReason.METRICS_UNAVAILABLE, "no fresh latency samples; holding replicas",
                    replace(history, calm_since=None))

    p = spec.slo.percentile
    seen = f"p{p} {obs.latency_ms:.1f} ms vs SLO {slo:g} ms"
    if obs.latency_ms > slo:
        if current >= bounds.max_replicas:
            return hold(DecisionReason.AT_MAX_REPLICAS, f"{seen}; already at maxReplicas {bounds.max_replicas}",
                        replace(history, calm_since=None))
        if obs.ready_replicas < current:
            return hold(DecisionReason.WAITING_FOR_REPLICAS, f"{seen}; {current - obs.ready_replicas} replica(s) not ready yet",
                        replace(history, calm_since=None))
        if history.last_scale_at is not None and now - history.last_scale_at < bounds.scale_up.cooldown_seconds:
            return hold(DecisionReason.SCALE_UP_COOLDOWN, f"{seen}; last change {now - history.last_scale_at:.0f}s ago",
                        replace(history, calm_since=None))
        return scale(current + 1, DecisionReason.SCALE_UP, f"{seen}: add a replica ({current} -> {current + 1})")

    if obs.latency_ms < CALM_FRACTION * slo and current > bounds.min_replicas:
        calm_since = history.calm_since if history.calm_since is not None else now
        window = bounds.scale_down.stabilization_seconds
        if now - calm_since >= window:
            return scale(current - 1, DecisionReason.SCALE_DOWN,
                         f"{seen} for {now - calm_since:.0f}s (window {window}s): remove a replica "
                         f"({current} -> {current - 1})")
        return hold(DecisionReason.STABILIZING, f"{seen}; calm for {now - calm_since:.0f}s of {window}s",
                    replace(history, calm_since=calm_since))
    return hold(DecisionReason.WITHIN_SLO, seen, replace(history, calm_since=None))
