"""Names and labels of the objects an InferenceService owns: one place, so every layer agrees."""

from __future__ import annotations

from dataclasses import dataclass

from batchpilot.api.spec import GROUP

SERVICE_LABEL = f"{GROUP}/inferenceservice"
"""Pod label naming the InferenceService; Prometheus relabels it to the `inferenceservice` label."""
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
MODEL_REPOSITORY = "/models"
FETCH_CONTAINER = "fetch-model"
"""The init container that downloads a storageUri model, or lays out a claim's model directory as links."""
CLAIM_PATH = "/model-claim"
"""Where a pvc model's claim is mounted, read-only, beside the model directory (fetch/link.py)."""


@dataclass(frozen=True)
class ChildNames:
    """Names of the children of one InferenceService."""

    service_name: str

    @property
    def deployment(self) -> str:
        return self.service_name

    @property
    def service(self) -> str:
        return self.service_name

    def url(self, namespace: str, model: str) -> str:
        """The service's in-cluster inference endpoint (KServe v2 over HTTP)."""
        return f"http://{self.service}.{namespace}.svc:{HTTP_PORT}/v2/models/{model}/infer"

    @property
    def config_map(self) -> str:
        return f"{self.service_name}-triton-config"

    @property
    def pod_disruption_budget(self) -> str:
        return self.service_name

    @property
    def pod_monitor(self) -> str:
        return f"{self.service_name}-triton"

    @property
    def selector(self) -> dict[str, str]:
        return {SERVICE_LABEL: self.service_name}

    @property
    def labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "triton",
            "app.kubernetes.io/instance": self.service_name,
            "app.kubernetes.io/managed-by": "batchpilot",
            **self.selector,
        }

    @property
    def selector_string(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.selector.items())
