"""The operator's own Prometheus metrics: what it saw, decided and did."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LABELS = ["namespace", "inferenceservice"]

desired_replicas = Gauge("batchpilot_desired_replicas", "Replicas the control loop wants.", LABELS)
ready_replicas = Gauge("batchpilot_ready_replicas", "Replicas whose Triton is ready.", LABELS)
observed_latency_ms = Gauge("batchpilot_observed_latency_ms", "Latency at the SLO percentile.", LABELS)
slo_latency_ms = Gauge("batchpilot_slo_latency_ms", "The SLO's latency target.", LABELS)
decisions = Counter("batchpilot_decisions_total", "Control-loop decisions by reason.", [*LABELS, "reason"])
loop_errors = Counter("batchpilot_loop_errors_total", "Control-loop ticks that failed.", LABELS)
queue_delay_us = Gauge("batchpilot_queue_delay_microseconds", "Queue delay applied to the pods (auto mode).",
                       LABELS)
instance_count = Gauge("batchpilot_instance_count", "Model instances per pod applied to the pods (auto mode).",
                       LABELS)
loop_seconds = Histogram("batchpilot_loop_duration_seconds", "Time of one control-loop tick.", LABELS)


def record_tick(namespace: str, name: str, slo_ms: float, desired: int, ready: int, latency_ms: float | None,
                reason: str) -> None:
    """One control tick of one service."""
    labels = (namespace, name)
    desired_replicas.labels(*labels).set(desired)
    ready_replicas.labels(*labels).set(ready)
    slo_latency_ms.labels(*labels).set(slo_ms)
    if latency_ms is not None:
        observed_latency_ms.labels(*labels).set(latency_ms)
    decisions.labels(*labels, reason).inc()


def serve(port: int, address: str) -> None:
    if port:
        start_http_server(port, addr=address)
