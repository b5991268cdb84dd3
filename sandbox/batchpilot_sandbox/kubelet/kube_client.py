"""The sandbox kubelet's only door to the API server: raw JSON dicts in and out.

Plain dicts keep manifests in their wire (camelCase) form and skip the client's pydantic models, which are
slow to (de)serialize and mis-handle some responses (pods/binding answers with a Status).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubernetes import config
from kubernetes.client.exceptions import ApiException

Obj = dict[str, Any]
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
TIMEOUT = (5.0, 30.0)  # connect, read


def http_status(exc: BaseException) -> int | None:
    """HTTP status of a failed API call, None for other errors (connection refused, timeouts)."""
    return int(exc.status) if isinstance(exc, ApiException) and exc.status else None


def is_not_found(exc: BaseException) -> bool:
    return http_status(exc) == 404


def is_already_exists(exc: BaseException) -> bool:
    return http_status(exc) == 409


class KubeClient:
    """The calls a kubelet makes, each returning the response body as a dict."""

    def __init__(self, kubeconfig: Path) -> None:
        self.api = config.new_client_from_config(config_file=str(kubeconfig))

    def close(self) -> None:
        self.api.close()

    def request(
        self,
        method: str,
        path: str,
        body: Obj | None = None,
        content_type: str = "application/json",
        **query: Any,
    ) -> Obj:
        """One API call with a JSON body; raises ApiException (see http_status) on a non-2xx answer."""
        params = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query.items()) or None,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.api.call_api(*params, _request_timeout=TIMEOUT)
        data = resp.read()
        if not 200 <= resp.status <= 299:
            raise ApiException.from_response(http_resp=resp, body=data.decode(errors="replace"), data=None)
        return json.loads(data) if data else {}

    # -- pods
    def list_pods(self) -> list[Obj]:
        items: list[Obj] = self.request("GET", "/api/v1/pods").get("items") or []
        return items

    def bind_pod(self, pod: Obj, node_name: str) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
        }
        self.request("POST", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding", body)

    def patch_pod_status(self, namespace: str, name: str, status: Obj) -> Obj:
        path = f"/api/v1/namespaces/{namespace}/pods/{name}/status"
        return self.request("PATCH", path, {"status": status}, STRATEGIC)

    def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """Final delete after the kubelet stopped the pod's processes (grace 0, only this incarnation)."""
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid},
        }
        self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body)

    # -- volume and env sources
    def read_configmap(self, namespace: str, name: str) -> Obj:
        return self.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")

    def read_secret(self, namespace: str, name: str) -> Obj:
        return self.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")

    # -- node and lease
    def read_node(self, name: str) -> Obj:
        return self.request("GET", f"/api/v1/nodes/{name}")

    def create_node(self, node: Obj) -> Obj:
        return self.request("POST", "/api/v1/nodes", node)

    def patch_node(self, name: str, patch: Obj) -> Obj:
        return self.request("PATCH", f"/api/v1/nodes/{name}", patch, MERGE)

    def patch_node_status(self, name: str, status: Obj) -> Obj:
        return self.request("PATCH", f"/api/v1/nodes/{name}/status", {"status": status}, STRATEGIC)

    def create_lease(self, namespace: str, lease: Obj) -> Obj:
        return self.request("POST", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases", lease)

    def patch_lease(self, namespace: str, name: str, patch: Obj) -> Obj:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        return self.request("PATCH", path, patch, MERGE)

    # -- events
    def create_event(self, namespace: str, event: Obj) -> None:
        self.request("POST", f"/api/v1/namespaces/{namespace}/events", event)
