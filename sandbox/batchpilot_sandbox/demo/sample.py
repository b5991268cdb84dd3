"""The sample InferenceService the demo and the closed-loop tests serve: a GPU-emulating model in the sandbox.

The emulator runs the H100 ResNet-50 profile slowed down by `time_scale` (10x: a batch takes ~41-47 ms), with
`maxBatchSize` 4, so one sandbox replica saturates near 95 requests/s: a load step the CPU sandbox can offer
(~100-150/s) needs more than one replica, which is what the control loop must discover.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from batchpilot.api.spec import GROUP, KIND, VERSION
from batchpilot.sim.profile import profile_path
from batchpilot_sandbox.gpu_emulator import DEFAULT_PROFILE, model_configmap


@dataclass(frozen=True)
class SampleService:
    name: str = "resnet50"
    namespace: str = "demo"
    model: str = "resnet50"
    profile_name: str = DEFAULT_PROFILE
    time_scale: float = 10.0
    max_batch_size: int = 4
    latency_ms: float = 200.0
    min_replicas: int = 1
    max_replicas: int = 4
    scale_down_stabilization_seconds: int = 30
    batching_mode: str = "auto"
    max_queue_delay_us: int = 2000
    with_profile: bool = True
    """Seed the capacity model with the emulator's profile (as a user would with one measured offline)."""
    max_instance_count: int | None = None
    """spec.batching.maxInstanceCount (auto mode may then run more model instances per pod)."""
    overlap: float = 0.0
    """The emulator's overlap: 0, instances take turns on the emulated GPU; 1, they never contend."""

    @property
    def model_configmap_name(self) -> str:
        return f"{self.model}-model"

    def profile(self) -> dict[str, Any]:
        """spec.model.profile: the emulated GPU's curve, slowed by time_scale as the emulator runs it."""
        points = json.loads(profile_path(self.profile_name).read_text())["points"]
        return {"points": [{"batchSize": p["batch_size"], "latencyMs": round(p["latency_ms"] * self.time_scale, 3)}
                           for p in points]}

    def inference_service(self) -> dict[str, Any]:
        model: dict[str, Any] = {"name": self.model, "repository": {"configMap": self.model_configmap_name},
                                 "backend": "python", "maxBatchSize": self.max_batch_size}
        if self.with_profile:
            model["profile"] = self.profile()
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "model": model,
                "runtime": {"resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                                          "limits": {"memory": "512Mi", "nvidia.com/gpu": 1}}},
                "slo": {"latencyMs": self.latency_ms},
                "batching": self.batching(),
                "autoscaling": {"minReplicas": self.min_replicas, "maxReplicas": self.max_replicas,
                                "scaleDown": {"stabilizationSeconds": self.scale_down_stabilization_seconds}},
            },
        }

    def batching(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.batching_mode, "maxQueueDelayMicroseconds": self.max_queue_delay_us}
        if self.max_instance_count is not None:
            out["maxInstanceCount"] = self.max_instance_count
        return out

    def manifests(self) -> list[dict[str, Any]]:
        """Namespace, model ConfigMap and InferenceService, in apply order."""
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        model = model_configmap(self.model_configmap_name, self.namespace, self.profile_name, self.time_scale,
                                self.overlap)
        return [namespace, model, self.inference_service()]

    def yaml(self) -> str:
        return yaml.safe_dump_all(self.manifests(), sort_keys=False)
