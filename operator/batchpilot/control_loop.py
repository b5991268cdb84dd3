"""One tick of the control loop for one service: observe -> decide -> act."""

from __future__ import annotations

from dataclasses import dataclass

from batchpilot.adapters.kube import Kube
from batchpilot.adapters.prometheus import MetricsUnavailable, PrometheusReader
from batchpilot.adapters.promql import ServiceQueries
from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.step_rule import decide
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
    latency = rate = None
    try:
        metrics = prometheus.read(queries, spec.slo.percentile, settings.stale_after_seconds)
        latency, rate = metrics.latency_ms, metrics.arrival_rate
    except MetricsUnavailable as e:
        error = str(e)
    observation = Observation(at=now, replicas=deployment.replicas, ready_replicas=deployment.ready_replicas,
                              latency_ms=latency, arrival_rate=rate)
    decision = decide(spec, observation, history, now)
    acted = decision.changes(observation)
    if acted:
        kube.scale(namespace, name, decision.replicas)
    return Tick(observation, decision, error, acted)
