"""Pure renderers of InferenceService status: conditions, observation and last decision.

Who owns which condition: the control loop (handlers.control, every tick) writes Ready, MetricsAvailable,
Autoscaling and SLOMet; applying the children (handlers.reconcile_children, and handlers.repair_child putting
back a child someone else changed) writes the kstatus pair Stalled and Reconciling, so a failed apply is never
silent and Ready keeps saying whether Triton serves:
- applied: Stalled=False and Reconciling=False, reason Reconciled;
- refused for good (the spec, or something only a person can change, must change first: SpecInvalid,
  ChildInvalid, ChildForbidden): Stalled=True, Reconciling=False, with the API server's message; a quota
  exceeded is retried every QUOTA_RETRY_S (an admin lifts it without touching the spec), the rest wait for the spec;
- failed for now (Conflict, ApiUnavailable, Timeout, InternalError; kopf retries): Reconciling=True,
  Stalled=False, with the error.
Both carry the generation they were computed for, and status.observedGeneration moves with them (kstatus reads
"Stalled at generation N" as a failure, not as work in progress). The loop's ticks keep the pair as the last
apply left it (`merge_conditions`), and the handlers hand the latest pair to each tick (kopf runs the timer
beside the change handlers, so a tick's list could otherwise miss a pair written while it ran).
Polarity and names follow kstatus (sigs.k8s.io/cli-utils pkg/kstatus README: "abnormal-true" conditions).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.api.status import (
    AppliedBatching,
    BatchingChange,
    BatchingValues,
    LastDecision,
    ObservedMetrics,
    ReplicaChange,
)
from batchpilot.build.pod_health import PodHealth, assess
from batchpilot.control.types import Decision, History, Observation, Tuning, metric_values


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
    order = ["Ready", "MetricsAvailable", "Autoscaling", "SLOMet", "Stalled", "Reconciling"]
    return sorted(by_type.values(), key=lambda c: order.index(c["type"]) if c["type"] in order else 99)


def ready_condition(previous: list[dict[str, Any]] | None, ready: int, desired: int, generation: int,
                    now: float, pods: Sequence[PodHealth] | None = None) -> dict[str, Any]:
    """Ready: True with one ready replica; the message (and, when none is, the reason) says why others are not.

    pods None: they could not be read, so only the counts are known."""
    health = assess(pods, ready, desired)
    return condition(previous, "Ready", health.ready, health.reason, health.message, generation, now)


def tick_conditions(previous: list[dict[str, Any]] | None, spec: InferenceServiceSpec, obs: Observation,
                    decision: Decision, metrics_error: str | None, pods: Sequence[PodHealth] | None,
                    generation: int, now: float) -> list[dict[str, Any]]:
    """The four conditions after a control tick (Ready, MetricsAvailable, Autoscaling, SLOMet), merged."""
    fresh = metrics_error is None
    return merge_conditions(previous, [
        ready_condition(previous, obs.ready_replicas, decision.replicas, generation, now, pods),
        condition(previous, "MetricsAvailable", fresh, "MetricsFresh" if fresh else "MetricsMissing",
                  metrics_error or "fresh Triton samples in Prometheus", generation, now),
        condition(previous, "Autoscaling", not spec.paused, decision.reason, decision.message, generation, now),
        slo_condition(previous, spec, obs.latency_ms, generation, now),
    ])


def find(conditions: Sequence[dict[str, Any]], type_: str) -> dict[str, Any]:
    """The condition of that type (tick_conditions always has all four)."""
    return next(c for c in conditions if c["type"] == type_)


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


def api_error(body: str | bytes | None) -> str:
    """The message of a Kubernetes Status error body (JSON), else the body as text."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    try:
        return str(json.loads(text).get("message") or text)
    except (ValueError, AttributeError):
        return text


def refused_for_good(status: int | None, message: str) -> bool:
    """Whether an API error is about the object itself or the place it goes (retrying the same spec at once cannot
    help): invalid, forbidden, or a server-side apply whose object does not fit the type (reported as a 500)."""
    return status in (400, 403, 422) or (status == 500 and "failed to create typed patch object" in message)


QUOTA_RETRY_S = 60.0
"""Seconds between applies while a ResourceQuota forbids a child: an admin lifts a quota without touching the
InferenceService, so no spec change would ever come to retry it; once a minute finds the lifted quota soon enough
and costs the API server one refused request a minute per stalled service."""


def retry_after(status: int | None, message: str) -> float | None:
    """Seconds until a refusal for good is tried again by itself: a quota exceeded (403 "exceeded quota", which
    the ResourceQuota admission answers) is lifted by people without a spec change; None for every other refusal
    (RBAC and a terminating namespace are 403 too, and an invalid child stays invalid until the spec changes)."""
    return QUOTA_RETRY_S if status == 403 and "exceeded quota" in message else None


class ReconcileReason(enum.StrEnum):
    """Reasons of the Stalled and Reconciling conditions: how the last apply of the children ended."""

    RECONCILED = "Reconciled"
    """Every child applied."""
    SPEC_INVALID = "SpecInvalid"
    """The stored spec does not parse (the CRD let through what the operator's model refuses)."""
    CHILD_INVALID = "ChildInvalid"
    """The API server refused a child as invalid (400, 422, or a 500 when the object does not fit its type)."""
    CHILD_FORBIDDEN = "ChildForbidden"
    """The API server forbade a child (403: a ResourceQuota, RBAC, a terminating namespace)."""
    CONFLICT = "Conflict"
    """409: another writer changed the object meanwhile; retried."""
    API_UNAVAILABLE = "ApiUnavailable"
    """The API server answered with another error (5xx, 429, ...); retried."""
    TIMEOUT = "Timeout"
    """No answer in time, or no connection; retried."""
    INTERNAL_ERROR = "InternalError"
    """Anything else (an operator bug: see its log); retried."""


STALLED_REASONS = frozenset({ReconcileReason.SPEC_INVALID, ReconcileReason.CHILD_INVALID,
                             ReconcileReason.CHILD_FORBIDDEN})
"""Failures that retrying the same spec at once cannot fix: Stalled=True; kopf retries them only after
ReconcileFailure.retry_after_s (a quota), else never."""
MESSAGE_LIMIT = 1024
"""Characters kept of a foreign error message (an invalid Deployment lists every cause)."""


@dataclass(frozen=True)
class ReconcileFailure:
    """Why applying the children failed, for the conditions and the Warning Event."""

    reason: ReconcileReason
    message: str
    """For people: what was refused and the API server's own words."""
    retry_after_s: float | None = None
    """Seconds until the operator tries a stalled apply again by itself (a quota being lifted); None: a stalled
    apply waits for the spec to change, a transient one follows kopf's back-off."""

    @property
    def stalled(self) -> bool:
        return self.reason in STALLED_REASONS


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MESSAGE_LIMIT else flat[: MESSAGE_LIMIT - 3] + "..."


def _cause(error: BaseException) -> tuple[ReconcileReason, str, str, float | None]:
    """(reason, what happened, the cause in its own words, retry_after_s) of what applying the children raised:
    an API error by its HTTP status (and the API server's message), no answer (timeouts, connection errors) as
    Timeout, anything else as InternalError."""
    if isinstance(error, ApiException):
        status = error.status
        detail = api_error(error.body or error.reason) or f"HTTP {status}"
        if refused_for_good(status, detail):
            reason = ReconcileReason.CHILD_FORBIDDEN if status == 403 else ReconcileReason.CHILD_INVALID
            return reason, "the API server refused a child", detail, retry_after(status, detail)
        reason = ReconcileReason.CONFLICT if status == 409 else ReconcileReason.API_UNAVAILABLE
        return reason, f"the API server answered {status}", detail, None
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    # urllib3's timeouts and connection errors (under the client) are its HTTPError, not builtin ones.
    if isinstance(error, (TimeoutError, OSError, urllib3.exceptions.HTTPError)):
        return ReconcileReason.TIMEOUT, "no answer from the API server", text, None
    return ReconcileReason.INTERNAL_ERROR, "applying the children failed", text, None


def reconcile_failure(error: BaseException) -> ReconcileFailure:
    """Why applying the children failed, and when it is tried again: e.g. "the API server refused a child,
    retrying every 60 s: deployments.apps "m" is forbidden: exceeded quota: q, ..." (see _cause)."""
    reason, what, detail, retry_s = _cause(error)
    if reason in STALLED_REASONS:
        when = "" if retry_s is None else f", retrying every {retry_s:g} s"
    else:
        when = ", retrying"
    return ReconcileFailure(reason, _one_line(f"{what}{when}: {detail}"), retry_s)


def namespace_terminating(error: ApiException) -> bool:
    """Whether the API server refused a create because the namespace is being deleted (403): the owner goes
    with it, so a repair has nothing to report."""
    return error.status == 403 and "because it is being terminated" in api_error(error.body or error.reason)


def repair_failure(error: BaseException) -> ReconcileFailure:
    """Why putting back a child that someone else changed or deleted failed (handlers.repair_child). Nothing
    retries a repair by itself: the child's next change or a spec change does."""
    reason, what, detail, _ = _cause(error)
    return ReconcileFailure(reason, _one_line(f"repairing a child changed by someone else failed ({what}; the "
                                              f"child's next change or a spec change retries it): {detail}"))


def spec_failure(message: str) -> ReconcileFailure:
    """A stored spec the operator's model refuses (the message names the field)."""
    return ReconcileFailure(ReconcileReason.SPEC_INVALID, _one_line(f"the spec cannot be served: {message}"))


def reconcile_conditions(previous: list[dict[str, Any]] | None, failure: ReconcileFailure | None, generation: int,
                         now: float) -> list[dict[str, Any]]:
    """Stalled and Reconciling after one apply of the children (failure None: every child applied)."""
    if failure is None:
        done = ReconcileReason.RECONCILED.value
        message = f"every child applied for generation {generation}"
        return [condition(previous, "Stalled", False, done, message, generation, now),
                condition(previous, "Reconciling", False, done, message, generation, now)]
    return [condition(previous, "Stalled", failure.stalled, failure.reason.value, failure.message, generation, now),
            condition(previous, "Reconciling", not failure.stalled, failure.reason.value, failure.message,
                      generation, now)]


def reconcile_failed(conditions: Sequence[dict[str, Any]] | None) -> bool:
    """Whether conditions (a status's, or a pair) say the last apply of the children failed."""
    return any(c.get("type") in ("Stalled", "Reconciling") and c.get("status") == "True" for c in conditions or [])


def _finite(value: float | None) -> float | None:
    """JSON has no infinity: an overload prediction is shown as absent (the message says 'overload')."""
    return None if value is None or value != value or value in (float("inf"), float("-inf")) else round(value, 3)


def observed(obs: Observation, now: float) -> dict[str, Any]:
    """status.observed from one observation; absent values are None so the merge patch removes stale ones."""
    values = {name: _finite(value) for name, value in metric_values(obs).items()}
    return ObservedMetrics(**values, at=rfc3339(now)).model_dump(by_alias=True, mode="json")


def last_decision(obs: Observation, decision: Decision, now: float, retuned: Tuning | None = None) -> dict[str, Any]:
    """status.lastDecision for a decision that changed something: the replicas, and the pods' batching when a
    retune pass changed them to `retuned`."""
    batching = None if retuned is None else BatchingChange.model_validate({
        "from": BatchingValues(max_queue_delay_microseconds=obs.queue_delay_us, instance_count=obs.instance_count),
        "to": BatchingValues(max_queue_delay_microseconds=retuned.queue_delay_us,
                             instance_count=retuned.instance_count)})
    return LastDecision(
        at=rfc3339(now), reason=decision.reason, message=decision.message,
        replicas=ReplicaChange.model_validate({"from": obs.replicas, "to": decision.replicas}), batching=batching,
        predicted_latency_ms=_finite(decision.predicted_latency_ms),
    ).to_wire()


def resumed_history(status: dict[str, Any]) -> History:
    """The loop's memory after an operator restart: when it last scaled (status.lastScaleTime) and retuned
    (status.lastDecision.at of a decision that changed batching), its burst memory (status.lastScaleDownTime,
    status.lastBurstMissTime, status.lastBurstReturnTime) and the cold starts it measured (status.coldStartSeconds).

    Cooldowns and a hold for bursts then survive a restart, so an action is never doubled and a burst learned is not
    lost again, and a climb is planned over the cold start already seen; what the model learned, and the rate's
    trend, are relearned (a scale-up under way at the restart is timed from the first tick after it).
    """
    last = status.get("lastDecision") or {}
    replicas = last.get("replicas") or {}
    scaled = status.get("lastScaleTime") or (last.get("at") if replicas.get("from") != replicas.get("to") else None)
    retuned = last.get("at") if last.get("batching") else None
    starts = status.get("coldStartSeconds") or []
    return History(last_scale_at=_parse(scaled), last_retune_at=_parse(retuned),
                   removed_at=_parse(status.get("lastScaleDownTime")),
                   missed_at=_parse(status.get("lastBurstMissTime")),
                   burst_returned_at=_parse(status.get("lastBurstReturnTime")),
                   starts=tuple(float(s) for s in starts if isinstance(s, int | float) and s >= 0))


def remembered(history: History) -> dict[str, Any]:
    """What a restarted operator resumes (resumed_history), those the loop has: status.lastScaleDownTime,
    status.lastBurstMissTime and status.lastBurstReturnTime (the burst memory) and status.coldStartSeconds."""
    times = {"lastScaleDownTime": history.removed_at, "lastBurstMissTime": history.missed_at,
             "lastBurstReturnTime": history.burst_returned_at}
    kept: dict[str, Any] = {key: rfc3339(at) for key, at in times.items() if at is not None}
    if history.starts:
        kept["coldStartSeconds"] = [round(start, 1) for start in history.starts]
    return kept


def _parse(at: str | None) -> float | None:
    if not at:
        return None
    return dt.datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


def applied_batching(tuning: Tuning, pods: int) -> dict[str, Any]:
    """status.batching after a successful retune pass."""
    return AppliedBatching(max_queue_delay_microseconds=tuning.queue_delay_us, instance_count=tuning.instance_count,
                           pods=pods).to_wire()


def retune_event(tuning: Tuning, pods: int, changed: int, error: str | None, why: str) -> tuple[str, str, str]:
    """(type, reason, message) of the Event for a retune pass that changed pods or failed; `why` is the
    decision's reason."""
    if error is not None:
        return "Warning", "RetuneFailed", f"{tuning.describe()} not applied: {error}"
    return "Normal", "Retuned", f"{tuning.describe()} applied to {changed} of {pods} pod(s) ({why})"
