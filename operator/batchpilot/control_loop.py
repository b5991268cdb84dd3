"""One tick of the control loop for one service: observe -> decide -> act, reading each source once.

The pods are listed once per tick: their placement (ready IPs, unschedulable) feeds the observation and the
retune pass, and the list itself goes back with the Tick for the pods' health in status. The tick returns the
new per-pod statistics snapshots instead of changing the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from batchpilot.adapters.kube import DeploymentState, placement
from batchpilot.adapters.prometheus import MetricsUnavailable
from batchpilot.adapters.promql import ServiceQueries
from batchpilot.adapters.triton import STATS_TIMEOUT_S, service_batch_stats
from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.build.children import config_map
from batchpilot.build.names import ChildNames
from batchpilot.control.batch_stats import BatchCompute, Timed, concurrency, since_last_tick
from batchpilot.control.planner import decide
from batchpilot.control.types import Decision, History, Observation, ServiceMetrics, metric_values
from batchpilot.reconcile import owned_by, tuned
from batchpilot.retune import Retune, retune
from batchpilot.settings import OperatorSettings

PodSnapshots = dict[str, Timed]
"""Each ready pod's cumulative Triton batch statistics at the last tick and when they were read, by pod IP (one
service)."""


class ServiceAPI(Protocol):
    """What a tick needs of the Kubernetes API (adapters/kube.py Kube)."""

    def deployment(self, namespace: str, name: str) -> DeploymentState | None: ...
    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...
    def scale(self, namespace: str, name: str, replicas: int) -> None: ...
    def apply(self, manifest: dict[str, Any]) -> Any: ...


class MetricsSource(Protocol):
    """What a tick needs of Prometheus (adapters/prometheus.py PrometheusReader)."""

    def read(self, queries: ServiceQueries, percentile: int, stale_after_s: float) -> ServiceMetrics: ...


@dataclass(frozen=True)
class Tick:
    observation: Observation
    decision: Decision
    metrics_error: str | None
    acted: bool
    retune: Retune | None = None
    """The batching pass of this tick (auto mode with fresh metrics), None when there was none."""
    pods: list[dict[str, Any]] = field(default_factory=list)
    """The service's pods as listed this tick (camelCase, as the API serves them)."""
    batch_stats: PodSnapshots = field(default_factory=dict)
    """The pods' statistics snapshots to pass to the next tick."""


def tick(
    kube: ServiceAPI,
    prometheus: MetricsSource,
    settings: OperatorSettings,
    owner: dict[str, Any],
    spec: InferenceServiceSpec,
    history: History,
    now: float,
    batch_stats: PodSnapshots,
) -> Tick | None:
    """None when the Deployment does not exist yet (reconcile has not run).

    batch_stats: the service's pod snapshots from the last tick (the previous Tick's batch_stats); not changed.
    """
    namespace, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
    applied = tuned(owner.get("status") or {}, spec)
    deployment = kube.deployment(namespace, name)
    if deployment is None:
        return None
    queries = ServiceQueries(namespace, name, spec.model.name, settings.metrics_window_seconds)
    error: str | None = None
    metrics = None
    try:
        metrics = prometheus.read(queries, spec.slo.percentile, spec.autoscaling.metrics_outage.stale_after_seconds)
    except MetricsUnavailable as e:
        error = str(e)
    pods = kube.list_pods(namespace, ChildNames(name).selector_string)
    placed = placement(pods)
    batch_compute, in_flight, silent, snapshots = _batch_compute(placed.ready_ips, spec.model.name, batch_stats, now)
    observation = Observation(at=now, replicas=deployment.replicas, ready_replicas=deployment.ready_replicas,
                              unschedulable=placed.unschedulable,
                              queue_delay_us=applied.queue_delay_us if applied else None,
                              instance_count=applied.instance_count if applied else spec.batching.instance_count,
                              window_s=settings.metrics_window_seconds,
                              batch_compute=batch_compute, concurrency=in_flight)
    if metrics is not None:
        observation = replace(observation, **metric_values(metrics))
    decision = decide(spec, observation, history, now)
    # autoscaling.mode external: an HPA or KEDA owns the count; the operator never writes it, whatever decide says.
    acted = decision.changes(observation) and spec.autoscaling.mode != "external"
    if acted:
        kube.scale(namespace, name, decision.replicas)
    result: Retune | None = None
    if decision.batching is not None:
        tuning = decision.batching
        if silent:
            # A pod that did not answer its statistics would fail the pass anyway, after the repository API's much
            # longer timeout, every tick (a hung Triton held this service's loop ~60 s a tick): defer, change nothing.
            result = Retune(tuning, len(placed.ready_ips), 0, f"pod(s) {', '.join(silent)} did not answer "
                            f"their statistics within {STATS_TIMEOUT_S:g}s; pass deferred, no pod changed")
        else:
            result = retune(placed.ready_ips, spec.model.name, tuning)
        if result.changed or (result.error is not None and not silent):
            # Reloaded pods count from zero, perhaps past the last snapshot already: start them afresh.
            snapshots = {}
        if result.error is None and result.tuning != applied:
            # New pods start from the ConfigMap: keep it in step with what the running pods were given.
            kube.apply(owned_by(config_map(name, namespace, spec, result.tuning), owner))
    return Tick(observation, decision, error, acted, result, pods, snapshots)


def _batch_compute(ready: list[str], model: str, kept: PodSnapshots,
                   now: float) -> tuple[BatchCompute, float | None, list[str], PodSnapshots]:
    """Compute time per batch size and mean executions in flight per pod since the last tick, over the ready
    pods, the ready pods that did not answer, and the snapshots as of now.

    A pod that did not answer keeps its last snapshot (it counts again next time); a pod gone is forgotten.
    """
    current = {pod: (now, snapshot) for pod, snapshot in service_batch_stats(ready, model).items()}
    measured = since_last_tick({pod: s for pod, (_, s) in kept.items()}, {pod: s for pod, (_, s) in current.items()})
    in_flight = concurrency(kept, current)
    latest = {pod: current.get(pod, kept.get(pod)) for pod in ready}
    snapshots = {pod: timed for pod, timed in latest.items() if timed is not None}
    return measured, in_flight, [pod for pod in ready if pod not in current], snapshots
