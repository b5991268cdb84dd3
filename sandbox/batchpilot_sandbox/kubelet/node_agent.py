"""Register the sandbox Node and keep it Ready: a Lease renewal and a Ready heartbeat every ~10 s.

kube-controller-manager's node lifecycle controller marks a node NotReady (and later evicts its pods) when
both the Lease in kube-node-lease and the Ready condition go stale, as a real kubelet would let them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from batchpilot_sandbox.kubelet.kube_client import KubeClient, Obj, is_already_exists, is_not_found

LOG = logging.getLogger(__name__)
GPU = "nvidia.com/gpu"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
KUBELET_VERSION = "v1.32.0-batchpilot-sandbox"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """MicroTime as Leases want it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class NodeSpec:
    """What the sandbox node offers; resource values are Kubernetes quantities."""

    name: str
    gpus: int
    cpu: str = "16"
    memory: str = "64Gi"
    pods: int = 110
    address: str = "127.0.0.1"
    labels: dict[str, str] = field(default_factory=dict)

    def all_labels(self) -> dict[str, str]:
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "nvidia.com/gpu.present": "true",
            "batchpilot.dev/sandbox": "true",
            **self.labels,
        }

    def resources(self) -> dict[str, str]:
        return {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods), GPU: str(self.gpus)}


def ready_conditions(spec: NodeSpec, since: str) -> list[Obj]:
    now = now_rfc3339()
    pressure = [
        ("MemoryPressure", "KubeletHasSufficientMemory"),
        ("DiskPressure", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "KubeletHasSufficientPID"),
    ]
    conditions: list[Obj] = [
        {
            "type": kind,
            "status": "False",
            "reason": reason,
            "message": f"sandbox kubelet on {spec.name}",
            "lastHeartbeatTime": now,
            "lastTransitionTime": since,
        }
        for kind, reason in pressure
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "sandbox kubelet is posting ready status",
            "lastHeartbeatTime": now,
            "lastTransitionTime": since,
        }
    )
    return conditions


def node_status(spec: NodeSpec, since: str) -> Obj:
    return {
        "capacity": spec.resources(),
        "allocatable": spec.resources(),
        "conditions": ready_conditions(spec, since),
        "addresses": [
            {"type": "InternalIP", "address": spec.address},
            {"type": "Hostname", "address": spec.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": "",
            "osImage": "batchpilot sandbox",
            "containerRuntimeVersion": "sandbox://host-processes",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


class NodeAgent:
    """Owns the Node object and its Lease; `run` heartbeats until `stop`."""

    def __init__(self, api: KubeClient, spec: NodeSpec, period_s: float = 10.0) -> None:
        self.api = api
        self.spec = spec
        self.period_s = period_s
        self.since = now_rfc3339()
        self.uid = ""
        self._stop = threading.Event()

    def register(self) -> Obj:
        """Create the Node (or adopt an existing one with this name), then post status and the Lease."""
        labels = self.spec.all_labels()
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.spec.name, "labels": labels}}
        try:
            self.api.create_node(body)
        except Exception as exc:
            if not is_already_exists(exc):
                raise
            self.api.patch_node(self.spec.name, {"metadata": {"labels": self.spec.all_labels()}})
        self.uid = self.api.read_node(self.spec.name)["metadata"]["uid"]
        self.heartbeat()
        return self.api.read_node(self.spec.name)

    def heartbeat(self) -> None:
        self.api.patch_node_status(self.spec.name, node_status(self.spec, self.since))
        self._renew_lease()

    def _renew_lease(self) -> None:
        spec = {
            "holderIdentity": self.spec.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": now_micro(),
        }
        try:
            self.api.patch_lease(LEASE_NAMESPACE, self.spec.name, {"spec": spec})
        except Exception as exc:
            if not is_not_found(exc):
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.spec.name, "uid": self.uid}
            # owned by the Node, as the kubelet's: deleting the Node garbage-collects the Lease
            metadata = {"name": self.spec.name, "namespace": LEASE_NAMESPACE, "ownerReferences": [owner]}
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": metadata,
                "spec": spec,
            }
            self.api.create_lease(LEASE_NAMESPACE, lease)

    def run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.heartbeat()
            except Exception:  # the API server may be restarting; the next beat retries
                LOG.warning("node heartbeat failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
