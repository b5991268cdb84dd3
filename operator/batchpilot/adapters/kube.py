"""Kubernetes I/O for the operator: server-side apply of children, Deployment reads and scaling."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from batchpilot.api.spec import GROUP, PLURAL, VERSION

FIELD_MANAGER = "batchpilot"
HANDOVER_MANAGER = "batchpilot-handover"
"""Holds a Deployment's replicas while they pass from Batchpilot's apply to an HPA (autoscaling.mode external):
without it, dropping the field from the apply would reset the count to 1 (server-side apply's ownership
transfer, as in Kubernetes' 'Server-Side Apply: transferring ownership')."""


@dataclass(frozen=True)
class PodPlacement:
    """A service's pods as the control loop needs them each tick."""

    ready_ips: list[str]
    """IPs of the Ready pods not being deleted, sorted."""
    unschedulable: int
    """Pods whose PodScheduled condition is False with reason Unschedulable: no node has room for them."""


def placement(pods: list[dict[str, Any]]) -> PodPlacement:
    """Which of a service's pods (as listed) serve, and how many the scheduler could not place."""
    ips, unschedulable = [], 0
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp"):
            continue
        conditions = status.get("conditions") or []
        if any(c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
               for c in conditions):
            unschedulable += 1
        elif status.get("podIP") and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            ips.append(str(status["podIP"]))
    return PodPlacement(sorted(ips), unschedulable)


_NOT_YAML_PRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")
"""Characters YAML 1.1 does not take raw (C1 controls, line separators, surrogates, non-characters)."""


def apply_body(manifest: dict[str, Any]) -> bytes:
    """The body of a server-side apply: JSON, read by the API server as YAML (application/apply-patch+yaml).

    The client's own json.dumps escapes a character beyond the BMP (an emoji in an env value) as a UTF-16
    surrogate pair, which YAML refuses ("found invalid Unicode character escape code"); so characters stay raw
    UTF-8, and only those YAML cannot take raw are escaped (as \\uXXXX, which JSON and YAML read alike)."""
    text = json.dumps(manifest, ensure_ascii=False)
    return _NOT_YAML_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()


def load_kube_config() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


@dataclass(frozen=True)
class DeploymentState:
    replicas: int
    ready_replicas: int
    updated_replicas: int
    observed_generation: int
    generation: int


class Kube:
    def __init__(self, api: client.ApiClient | None = None) -> None:
        self.api = api or load_kube_config()
        self.apps = client.AppsV1Api(self.api)
        self._dynamic: DynamicClient | None = None
        self._dynamic_lock = threading.Lock()

    @property
    def dynamic(self) -> DynamicClient:
        # One client per process, built under a lock: concurrent handler threads would race on its discovery cache.
        with self._dynamic_lock:
            if self._dynamic is None:
                self._dynamic = DynamicClient(self.api)
            return self._dynamic

    def apply(self, manifest: dict[str, Any], dry_run: bool = False, field_manager: str = FIELD_MANAGER,
              force: bool = True) -> dict[str, Any]:
        """Server-side apply with Batchpilot's field manager; idempotent. dry_run: the API server checks and
        admits it (dryRun=All) without storing it. force False: a field another manager owns with another value
        is a 409 Conflict, not taken over."""
        try:
            resource = self.dynamic.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
        except ResourceNotFoundError:  # a CRD installed since discovery was cached
            self.dynamic.resources.invalidate_cache()
            resource = self.dynamic.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
        meta = manifest["metadata"]
        result = resource.server_side_apply(
            body=apply_body(manifest), name=meta["name"], namespace=meta.get("namespace"),
            field_manager=field_manager, force_conflicts=force, **({"dry_run": "All"} if dry_run else {}),
        )
        return dict(result.to_dict())

    def has_crd(self, name: str) -> bool:
        """Whether the CustomResourceDefinition (plural.group) is installed."""
        try:
            client.ApiextensionsV1Api(self.api).read_custom_resource_definition(name)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    def inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The InferenceService as stored, None when it is gone or being deleted."""
        try:
            obj = cast(dict[str, Any], client.CustomObjectsApi(self.api).get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name))
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return None if obj["metadata"].get("deletionTimestamp") else obj

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch an InferenceService's status subresource (lists, e.g. conditions, are replaced whole)."""
        client.CustomObjectsApi(self.api).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status})

    def deployment(self, namespace: str, name: str) -> DeploymentState | None:
        try:
            d = self.apps.read_namespaced_deployment(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        s = d.status or client.V1DeploymentStatus()
        generation = d.metadata.generation if d.metadata else 0
        return DeploymentState(
            replicas=(d.spec.replicas if d.spec else 0) or 0,
            ready_replicas=s.ready_replicas or 0,
            updated_replicas=s.updated_replicas or 0,
            observed_generation=s.observed_generation or 0,
            generation=generation or 0,
        )

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods matching selector as the API serves them (camelCase): one list call per tick, which the
        placement below and the pods' health in status (adapters/pods.py) both read."""
        listed = client.CoreV1Api(self.api).list_namespaced_pod(namespace, label_selector=selector,
                                                                _request_timeout=10)
        return [self.api.sanitize_for_serialization(p) for p in listed.items]

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.apps.patch_namespaced_deployment_scale(
            name, namespace, {"spec": {"replicas": replicas}}, field_manager=FIELD_MANAGER)
