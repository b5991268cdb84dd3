"""Pure renderers of InferenceService status: conditions, observation and last decision."""

from __future__ import annotations

import datetime as dt
from typing import Any

from batchpilot.api.spec import InferenceServiceSpec


def rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    previous: list[dict[str, Any]] | None, type_: str, ok: bool | None, reason: str, message: str,
    generation: int, now: float,
) -> dict[str, Any]:
    """A condition whose lastTransitionTime moves only when its status flips."""
    status = "Unknown" if ok is None else ("True" if ok else "False")
    before = next((c for c in previous or [] if c.get("type") == type_), None)
    since = before["lastTransitionTime"] if before and before.get("status") == status else rfc3339(now)
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since, "observedGeneration": generation}


def merge_conditions(previous: list[dict[str, Any]] | None, updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_type = {c["type"]: c for c in previous or []}
    by_type.update({c["type"]: c for c in updates})
    order = ["Ready", "MetricsAvailable", "Autoscaling", "SLOMet"]
    return sorted(by_type.values(), key=lambda c: order.index(c["type"]) if c["type"] in order else 99)


def ready_condition(previous: list[dict[str, Any]] | None, ready: int, desired: int, generation: int,
                    now: float) -> dict[str, Any]:
    if ready >= 1:
        return condition(previous, "Ready", True, "ReplicasReady", f"{ready}/{desired} replicas ready",
                         generation, now)
    return condition(previous, "Ready", False, "NoReplicaReady", f"0/{desired} replicas ready", generation, now)


def slo_condition(previous: list[dict[str, Any]] | None, spec: InferenceServiceSpec, latency_ms: float | None,
                  generation: int, now: float) -> dict[str, Any]:
    slo, p = spec.slo.latency_ms, spec.slo.percentile
    if latency_ms is None:
        return condition(previous, "SLOMet", None, "NoObservation", "latency is not known", generation, now)
    if latency_ms <= slo:
        return condition(previous, "SLOMet", True, "WithinSLO", f"p{p} {latency_ms:.1f} ms <= {slo:g} ms",
                         generation, now)
    return condition(previous, "SLOMet", False, "SLOBreached", f"p{p} {latency_ms:.1f} ms > {slo:g} ms",
                     generation, now)
