"""The five configurations `bench.compare_real` runs on the sandbox, as pure manifest builders.

Every configuration serves the same sample (batchpilot_sandbox/demo/sample.py: the H100 ResNet-50 profile slowed 10x,
maxBatchSize 4, SLO p95 200 ms, 1..4 replicas) in its own namespace:

- batchpilot: Batchpilot plans replicas; batching `fixed` at the peers' static setting, so only the replica
  plan differs from the peers'.
- keda-rate: KEDA's Prometheus trigger on the request rate, metricType AverageValue = the per-replica capacity.
- keda-latency: the same trigger on the worst pod's p95 (Triton's summary), metricType Value = the SLO.
- keda-queue-compute: NVIDIA's Triton autoscaling recipe through the same trigger: the recording rule
  `triton:queue_compute:ratio` = rate(nv_inference_queue_duration_us[1m]) /
  clamp_min(rate(nv_inference_compute_infer_duration_us[1m]), 1) per pod (triton-inference-server/tutorials,
  Deployment/Kubernetes/TensorRT-LLM_Autoscaling_and_Load_Balancing/triton-metrics_prometheus-rule.yaml),
  which their HPA targets as a Pods metric at averageValue 1000m (chart/templates/horizontal-pod-autoscaler
  .yaml). A KEDA trigger returns one value, so the per-pod ratio is averaged over the pods and targeted with
  metricType Value 1: the HPA then wants ceil(ready x average / 1), what the Pods AverageValue target computes.
- batching-only: Batchpilot with `autoscaling.mode: external` and batching auto, under keda-rate's ScaledObject.

For the peers the InferenceService is `autoscaling.mode: external` (Batchpilot never writes replicas, so it does
not fight the HPA) with batching fixed at the same static setting.

KEDA and the HPA run at their documented defaults: the ScaledObject sets no pollingInterval (30 s,
keda.sh/docs/latest/reference/scaledobject-spec "pollingInterval"), no advanced.horizontalPodAutoscalerConfig
(so KEDA's HPA has no behavior: kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale: sync period
15 s, tolerance 0.1, scale-down stabilization 300 s); kube-controller-manager runs without HPA flags.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from batchpilot.adapters.promql import ServiceQueries
from batchpilot_sandbox.demo.sample import SampleService

PEER_RATE_WINDOW_S = 60.0
"""The peers' rate() window, seconds: NVIDIA's recording rule uses [1m], and so does the rate a user writes
for KEDA here (Batchpilot reads its own window, BATCHPILOT_METRICS_WINDOW_SECONDS, 15 s in the sandbox)."""
AUTO_MAX_DELAY_US = 10_000
"""Batching-only's upper bound for the queue delay it tunes (bench/sim_compare.py gives Batchpilot the same)."""
MIN_REPLICAS = 1
MAX_REPLICAS = 4
"""The sandbox's 4 emulated GPUs, one per replica."""


@dataclass(frozen=True)
class Trigger:
    """One KEDA Prometheus trigger: the query, its metricType and threshold."""

    query: str
    metric_type: str
    """"AverageValue" (the HPA wants ceil(value / threshold)) or "Value" (ceil(ready x value / threshold))."""
    threshold: float

    def label(self, unit: str) -> str:
        return f"{self.metric_type} {self.threshold:g}{unit}"


@dataclass(frozen=True)
class Config:
    """One configuration of the comparison."""

    key: str
    """Policy name in the report (the simulator's family name where it models it)."""
    setting: str
    """What its threshold is, for the report."""
    sample: SampleService
    trigger: Trigger | None
    """None: Batchpilot owns the replicas (no ScaledObject)."""
    sim_family: str | None
    """The simulator's model of it (bench.compare_sim), None where it has none."""


def queries(sample: SampleService) -> ServiceQueries:
    """The peers' queries, on the same series (labels set by the sandbox's Prometheus relabelling) as
    Batchpilot's own, with the peers' window."""
    return ServiceQueries(sample.namespace, sample.name, sample.model, PEER_RATE_WINDOW_S)


def rate_trigger(sample: SampleService, capacity: float) -> Trigger:
    """Answered requests/s (successes and failures) over the pods, AverageValue = one replica's capacity."""
    return Trigger(queries(sample).answered_rate(), "AverageValue", round(capacity, 1))


def latency_trigger(sample: SampleService) -> Trigger:
    """The worst pod's p95 from Triton's summary, ms, Value = the SLO."""
    return Trigger(queries(sample).latency_ms(95), "Value", sample.latency_ms)


def queue_compute_trigger(sample: SampleService) -> Trigger:
    """NVIDIA's triton:queue_compute:ratio per pod, averaged over the pods, Value = 1 (their 1000m)."""
    sel, w = queries(sample).selector, f"{PEER_RATE_WINDOW_S:g}s"
    per_pod = (f"rate(nv_inference_queue_duration_us{{{sel}}}[{w}]) / "
               f"clamp_min(rate(nv_inference_compute_infer_duration_us{{{sel}}}[{w}]), 1)")
    return Trigger(f"avg({per_pod})", "Value", 1.0)


def configs(namespace_prefix: str, queue_delay_us: int, capacity: float) -> list[Config]:
    """The five configurations; each sample in its own namespace `<prefix>-<key>`."""
    base = SampleService(min_replicas=MIN_REPLICAS, max_replicas=MAX_REPLICAS, batching_mode="fixed",
                         max_queue_delay_us=queue_delay_us)

    def sample(key: str, **changes: Any) -> SampleService:
        return replace(base, namespace=f"{namespace_prefix}-{key}", **changes)

    rate_s, latency_s, qc_s = sample("keda-rate"), sample("keda-latency"), sample("keda-queue-compute")
    only_s = sample("batching-only", batching_mode="auto", max_queue_delay_us=max(queue_delay_us, AUTO_MAX_DELAY_US))
    rate = rate_trigger(rate_s, capacity)
    return [
        Config("batchpilot", f"batching fixed {queue_delay_us} us", sample("batchpilot"), None, "batchpilot"),
        Config("keda-rate", rate.label(" req/s"), rate_s, rate, "keda-rate"),
        Config("keda-latency", latency_trigger(latency_s).label(" ms"), latency_s, latency_trigger(latency_s),
               "keda-latency"),
        Config("keda-queue-compute", queue_compute_trigger(qc_s).label(""), qc_s, queue_compute_trigger(qc_s),
               "hpa-queue-compute"),
        Config("batching-only", f"batching auto <= {only_s.max_queue_delay_us} us + {rate.label(' req/s')}", only_s, rate_trigger(only_s, capacity),
               None),
    ]


def inference_service(config: Config) -> list[dict[str, Any]]:
    """Namespace, model ConfigMap and InferenceService; `autoscaling.mode: external` when a trigger owns the
    replicas."""
    manifests = config.sample.manifests()
    if config.trigger is not None:
        manifests[-1]["spec"]["autoscaling"]["mode"] = "external"
    return manifests


def scaled_object(config: Config, prometheus_url: str) -> dict[str, Any] | None:
    """KEDA's ScaledObject on the InferenceService's Deployment (named as the service), at KEDA's defaults
    except the bounds; None for Batchpilot."""
    if config.trigger is None:
        return None
    t, s = config.trigger, config.sample
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": s.name, "namespace": s.namespace},
        "spec": {
            "scaleTargetRef": {"name": s.name}, "minReplicaCount": s.min_replicas,
            "maxReplicaCount": s.max_replicas,
            "triggers": [{"type": "prometheus", "metricType": t.metric_type, "metadata": {
                "serverAddress": prometheus_url, "query": t.query, "threshold": f"{t.threshold:g}"}}],
        },
    }
