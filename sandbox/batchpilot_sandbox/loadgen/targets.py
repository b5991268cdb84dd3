"""Where the load generator sends requests: the ready pods of one InferenceService."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchpilot.build.names import HTTP_PORT, SERVICE_LABEL


def ready_pod_targets(pods: Sequence[dict[str, Any]], port: int = HTTP_PORT) -> list[str]:
    """ "podIP:port" of the pods that are Ready, have a podIP and are not being deleted (sorted)."""
    found = []
    for pod in pods:
        status = pod.get("status") or {}
        ip = status.get("podIP")
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        if ip and ready and not (pod.get("metadata") or {}).get("deletionTimestamp"):
            found.append(f"{ip}:{port}")
    return sorted(found)


class PodTargets:
    """Callable listing an InferenceService's ready pods; keeps one API client across calls."""

    def __init__(
        self, kubeconfig: Path | str, namespace: str, inferenceservice: str, port: int = HTTP_PORT
    ) -> None:
        from kubernetes import client, config  # here, so runs with fixed targets skip the slow import

        self._api_client = config.new_client_from_config(config_file=str(kubeconfig))
        self._core = client.CoreV1Api(self._api_client)
        self.namespace, self.inferenceservice, self.port = namespace, inferenceservice, port

    def __call__(self) -> list[str]:
        resp: Any = self._core.list_namespaced_pod(
            self.namespace,
            label_selector=f"{SERVICE_LABEL}={self.inferenceservice}",
            _preload_content=False,
            _request_timeout=(3.0, 10.0),
        )
        return ready_pod_targets(json.loads(resp.data).get("items", []), self.port)

    def close(self) -> None:
        self._api_client.close()


def discover_targets(kubeconfig: Path | str, namespace: str, inferenceservice: str) -> list[str]:
    """ "podIP:8000" of the ready pods labelled batchpilot.dev/inferenceservice=<inferenceservice>."""
    lister = PodTargets(kubeconfig, namespace, inferenceservice)
    try:
        return lister()
    finally:
        lister.close()
