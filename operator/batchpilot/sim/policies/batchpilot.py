"""Batchpilot itself as a simulator policy: the very `control.planner.decide()` the operator runs.

Follows the operator's own loop (batchpilot/control_loop.py `tick`, adapters/prometheus.py `read`): every
control interval (OperatorSettings.control_interval_seconds, 15 s) it builds an Observation from what
Prometheus and Triton report, calls decide(spec, observation, history, now), carries the History to the next
tick, scales to the decision's replicas and, when the decision carries a queue delay, retunes the pods to it.
The spec is what a user would write (batchpilot_sandbox/demo/sample.py is the model): the SLO, replica
bounds, batching mode auto between a min and max queue delay, and spec.model.profile seeded with the GPU's
offline curve. With spec.batching.rejectLateRequests the pods' batching carries the queue timeout the operator
renders (control/queue_policy.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.planner import decide
from batchpilot.control.queue_policy import queue_timeout_us
from batchpilot.control.types import History, Observation
from batchpilot.sim.profile import ComputeCurve
from batchpilot.sim.types import Action, Batching, View

CONTROL_INTERVAL_S = 15.0
"""The operator's control period, seconds (OperatorSettings.control_interval_seconds default)."""


def service_spec(curve: ComputeCurve, slo_ms: float, percentile: int, max_batch_size: int, min_replicas: int,
                 max_replicas: int, min_queue_delay_us: int = 0, max_queue_delay_us: int = 2000,
                 max_instance_count: int | None = None, extra: Mapping[str, Any] | None = None
                 ) -> InferenceServiceSpec:
    """The InferenceService spec a user would apply for this service (validated as the API server would).

    extra: spec fields merged over the result one level deep, e.g. {"autoscaling": {"targetUtilization": 0.7}}.
    """
    batching: dict[str, Any] = {"mode": "auto", "minQueueDelayMicroseconds": min_queue_delay_us,
                                "maxQueueDelayMicroseconds": max_queue_delay_us}
    if max_instance_count is not None:
        batching["maxInstanceCount"] = max_instance_count
    spec: dict[str, Any] = {
        "model": {"name": "sim", "repository": {"configMap": "sim-model"}, "maxBatchSize": max_batch_size,
                  "profile": {"points": [{"batchSize": b, "latencyMs": round(ms, 3)} for b, ms in curve.points]}},
        "runtime": {"resources": {"limits": {"nvidia.com/gpu": 1}}},
        "slo": {"latencyMs": slo_ms, "percentile": percentile},
        "autoscaling": {"minReplicas": min_replicas, "maxReplicas": max_replicas},
        "batching": batching,
    }
    for key, value in (extra or {}).items():
        spec[key] = {**spec[key], **value} if isinstance(value, Mapping) and key in spec else value
    return InferenceServiceSpec.model_validate(spec)


def observation(view: View) -> Observation:
    """The Observation the operator would build from what Prometheus, Triton and the Deployment say now.

    As adapters/prometheus.py: without fresh samples (arrival_rate None here) every metric is missing; a latency
    quantile missing while nothing arrives is idle, 0 ms, not unknown (Triton reports NaN quantiles then).
    queue_delay_us and instance_count are what the pods run (control_loop.py takes them from status).
    """
    base = Observation(at=view.at, replicas=view.replicas, ready_replicas=view.ready_replicas,
                       unschedulable=view.pending_pods,
                       queue_delay_us=view.batching.max_queue_delay_us,
                       instance_count=view.batching.instance_count, window_s=view.window_s,
                       batch_compute=view.batch_compute, concurrency=view.concurrency)
    if view.arrival_rate is None:
        return base
    latency = view.latency_ms
    if latency is None and view.arrival_rate == 0.0:
        latency = 0.0
    return Observation(
        at=base.at, replicas=base.replicas, ready_replicas=base.ready_replicas,
        unschedulable=base.unschedulable, latency_ms=latency,
        arrival_rate=view.arrival_rate, queue_ms=view.queue_ms, compute_ms=view.compute_ms,
        avg_batch_size=view.avg_batch_size, pending=view.pending_requests, queue_delay_us=base.queue_delay_us,
        instance_count=base.instance_count, window_s=base.window_s, batch_compute=base.batch_compute,
        concurrency=base.concurrency, gpu_utilization=view.gpu_utilization, failure_rate=view.failure_rate)


class BatchpilotPolicy:
    """The operator's planner, stepped every control interval; carries its History between steps."""

    name = "batchpilot"

    def __init__(self, spec: InferenceServiceSpec, initial_replicas: int, setting: str = "default",
                 period_s: float = CONTROL_INTERVAL_S) -> None:
        self.spec = spec
        self.setting = setting
        self.period_s = period_s
        self.initial_replicas = initial_replicas
        self.history = History()
        self.last_reason = ""
        """The latest decision's reason (for traces of a run)."""

    def initial(self) -> Action:
        """The pods at t=0 run what new pods start with: the spec's maximum queue delay and instance count."""
        b = self.spec.batching
        return Action(self.initial_replicas, self._batching(b.max_queue_delay_microseconds, b.instance_count),
                      reason="Initial")

    def step(self, view: View) -> Action:
        decision = decide(self.spec, observation(view), self.history, view.at)
        self.history = decision.history
        self.last_reason = decision.reason
        batching = None
        if decision.batching is not None:
            batching = self._batching(decision.batching.queue_delay_us, decision.batching.instance_count)
        return Action(decision.replicas, batching, reason=decision.reason)

    def _batching(self, delay_us: int, instances: int) -> Batching:
        return Batching(self.spec.model.max_batch_size, delay_us,
                        tuple(self.spec.batching.preferred_batch_sizes or ()), instances,
                        queue_timeout_us(self.spec) or 0)
