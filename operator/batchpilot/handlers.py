"""kopf wiring: parse, call reconcile or the control loop, record the outcome. No business rules here."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import kopf

from batchpilot import metrics
from batchpilot.adapters.kube import Kube
from batchpilot.adapters.prometheus import PrometheusReader
from batchpilot.api.parse import SpecError, parse_spec
from batchpilot.api.spec import GROUP, PLURAL, VERSION, InferenceServiceSpec
from batchpilot.build import status as render
from batchpilot.build.names import ChildNames
from batchpilot.control_loop import tick
from batchpilot.reconcile import reconcile
from batchpilot.settings import OperatorSettings

SETTINGS = OperatorSettings()


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Progress and diff-base live in annotations under our own prefix; kopf's chatter is kept to warnings.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    memo.kube = Kube()
    memo.prometheus = PrometheusReader(SETTINGS.prometheus_url)
    metrics.serve(SETTINGS.metrics_port, SETTINGS.metrics_address)


def _spec(spec: kopf.Spec) -> InferenceServiceSpec:
    try:
        return parse_spec(spec)
    except SpecError as e:
        raise kopf.PermanentError(str(e)) from None


def _lock(memo: kopf.Memo) -> threading.Lock:
    lock: threading.Lock = memo.setdefault("lock", threading.Lock())
    return lock


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile_children(body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, patch: kopf.Patch, memo: kopf.Memo,
                       **_: Any) -> None:
    parsed = _spec(spec)
    with _lock(memo):
        replicas = reconcile(memo.kube, dict(body), parsed)
    patch.status["observedGeneration"] = meta.get("generation")
    patch.status["replicas"] = replicas
    patch.status["selector"] = ChildNames(meta["name"]).selector_string


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.control_interval_seconds, initial_delay=1.0)
def control(body: kopf.Body, spec: kopf.Spec, name: str, namespace: str | None, status: kopf.Status, meta: kopf.Meta,
            patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    parsed = _spec(spec)
    assert namespace is not None  # InferenceService is namespaced
    labels = (namespace, name)
    now = time.time()
    with metrics.loop_seconds.labels(*labels).time(), _lock(memo):
        try:
            result = tick(memo.kube, memo.prometheus, SETTINGS, dict(body), parsed,
                          memo.get("history") or render.resumed_history(dict(status)), now)
        except Exception:
            metrics.loop_errors.labels(*labels).inc()
            raise
    if result is None:
        return
    obs, decision = result.observation, result.decision
    memo.history = decision.history
    generation = int(meta.get("generation") or 0)
    previous = status.get("conditions")
    desired = decision.replicas
    updates = [
        render.ready_condition(previous, obs.ready_replicas, desired, generation, now),
        render.condition(previous, "MetricsAvailable", result.metrics_error is None,
                         "MetricsFresh" if result.metrics_error is None else "MetricsMissing",
                         result.metrics_error or "fresh Triton samples in Prometheus", generation, now),
        render.condition(previous, "Autoscaling", not parsed.paused, decision.reason, decision.message,
                         generation, now),
        render.slo_condition(previous, parsed, obs.latency_ms, generation, now),
    ]
    patch.status["conditions"] = render.merge_conditions(previous, updates)
    patch.status["replicas"] = desired
    patch.status["readyReplicas"] = obs.ready_replicas
    patch.status["observed"] = render.observed(obs, now)
    metrics.desired_replicas.labels(*labels).set(desired)
    metrics.ready_replicas.labels(*labels).set(obs.ready_replicas)
    metrics.slo_latency_ms.labels(*labels).set(parsed.slo.latency_ms)
    if obs.latency_ms is not None:
        metrics.observed_latency_ms.labels(*labels).set(obs.latency_ms)
    metrics.decisions.labels(*labels, decision.reason).inc()
    if result.acted:
        patch.status["lastDecision"] = render.last_decision(obs, decision, now)
        kopf.event(body, type="Normal", reason=decision.reason, message=decision.message)
    retuned = result.retune
    if retuned is not None:
        metrics.queue_delay_us.labels(*labels).set(retuned.delay_us if retuned.error is None else float("nan"))
        if retuned.error is None:
            patch.status["batching"] = render.applied_batching(retuned.delay_us, retuned.pods)
        if retuned.error is not None or retuned.changed:
            kind, reason, message = render.retune_event(retuned.delay_us, retuned.pods, retuned.changed,
                                                        retuned.error)
            kopf.event(body, type=kind, reason=reason, message=message)
