"""One tick of the control loop for one service: observe -> decide -> act."""

from __future__ import annotations

from dataclasses import dataclass, replace

from batchpilot.adapters.kube import Kube
from batchpilot.adapters.prometheus import MetricsUnavailable, PrometheusReader
from batchpilot.adapters.promql import ServiceQueries
from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.planner import decide
from batchpilot.control.types import Decision, History, Observation
from batchpilot.settings import OperatorSettings


@dataclass(frozen=True)
class Tick:
    observation: Observation
    decision: Decision
    metrics_error: str | None
    acted: bool


def tick(
    kube: Kube,
    prometheus: PrometheusReader,
    settings: OperatorSettings,
    namespace: str,
    name: str,
    spec: InferenceServiceSpec,
    history: History,
    now: float,
) -> Tick | None:
    """None when the Deployment does not exist yet (reconcile has not run)."""
    deployment = kube.deployment(namespace, name)
    if deployment is None:
        return None
    queries = ServiceQueries(namespace, name, spec.model.name, settings.metrics_window_seconds)
    error: str | None = None
    metrics = None
    try:
        metrics = prometheus.read(queries, spec.slo.percentile, settings.stale_after_seconds)
    except MetricsUnavailable as e:
        error = str(e)
    observation = Observation(at=now, replicas=deployment.replicas, ready_replicas=deployment.ready_replicas,
                              window_s=settings.metrics_window_seconds)
    if metrics is not None:
        observation = replace(observation, latency_ms=metrics.latency_ms, arrival_rate=metrics.arrival_rate,
                              queue_ms=metrics.queue_ms, compute_ms=metrics.compute_ms,
                              avg_batch_size=metrics.avg_batch_size, pending=metrics.pending)
    decision = decide(spec, observation, history, now)
    acted = decision.changes(observation)
    if acted:
        kube.scale(namespace, name, decision.replicas)
    return Tick(observation, decision, error, acted)
