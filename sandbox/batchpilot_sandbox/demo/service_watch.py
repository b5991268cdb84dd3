"""Samples an InferenceService's replicas and status once a second, on a thread (demo and closed-loop tests)."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchpilot.api.spec import GROUP, PLURAL, VERSION
from batchpilot_sandbox.kubelet.kube_client import KubeClient


@dataclass(frozen=True)
class ServiceSample:
    at: float
    """Unix time."""
    replicas: int
    """Desired replicas of the Deployment."""
    ready_replicas: int
    observed_latency_ms: float | None
    """status.observed.latencyMs: what the operator read from Prometheus."""
    reason: str
    """status.lastDecision.reason, '' before the first action."""
    metrics_available: str
    """Status of the MetricsAvailable condition: True, False, Unknown, or '' before the first tick."""
    avg_batch_size: float | None = None
    """status.observed.avgBatchSize: inferences per model execution."""
    queue_delay_us: int | None = None
    """status.batching.maxQueueDelayMicroseconds: the queue delay the pods run (auto mode)."""
    instance_count: int | None = None
    """status.batching.instanceCount: model instances per pod (auto mode)."""
    arrival_rate: float | None = None
    """status.observed.arrivalRate: the request rate the operator read from Prometheus."""


class ServiceWatch:
    def __init__(self, kubeconfig: Path, namespace: str, name: str, period_s: float = 1.0) -> None:
        self.api = KubeClient(kubeconfig)
        self.namespace, self.name, self.period_s = namespace, name, period_s
        self.samples: list[ServiceSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="service-watch", daemon=True)

    def __enter__(self) -> ServiceWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(10)
        self.api.close()

    def sample(self) -> ServiceSample:
        ns = self.namespace
        deployment = self.api.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{self.name}")
        isvc = self.api.request("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{self.name}")
        status = isvc.get("status") or {}
        return ServiceSample(
            at=time.time(),
            replicas=int(deployment["spec"].get("replicas") or 0),
            ready_replicas=int((deployment.get("status") or {}).get("readyReplicas") or 0),
            observed_latency_ms=(status.get("observed") or {}).get("latencyMs"),
            reason=(status.get("lastDecision") or {}).get("reason", ""),
            metrics_available=next((c["status"] for c in status.get("conditions") or []
                                    if c.get("type") == "MetricsAvailable"), ""),
            avg_batch_size=(status.get("observed") or {}).get("avgBatchSize"),
            queue_delay_us=(status.get("batching") or {}).get("maxQueueDelayMicroseconds"),
            instance_count=(status.get("batching") or {}).get("instanceCount"),
            arrival_rate=(status.get("observed") or {}).get("arrivalRate"),
        )

    def latest(self) -> ServiceSample | None:
        return self.samples[-1] if self.samples else None

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a missed sample is a gap, not a crash
                self.samples.append(self.sample())
            self._stop.wait(self.period_s)
