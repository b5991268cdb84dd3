"""The sandbox's stand-in for kube-scheduler: binds pending pods to the one node when they fit.

Fit is judged like the real scheduler's resource filter (requests of bound, unfinished pods against the
node's allocatable cpu, memory, nvidia.com/gpu and pod count) plus nodeSelector; taints and affinity are
not modelled (the node has no taints). Messages copy the real scheduler's so tools reading them still work.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes.utils import parse_quantity

from batchpilot_sandbox.kubelet.kube_client import KubeClient, Obj, is_not_found
from batchpilot_sandbox.kubelet.node_agent import GPU, now_rfc3339

LOG = logging.getLogger(__name__)
SCHEDULER_NAME = "default-scheduler"
RESOURCES = ("cpu", "memory", GPU)
TERMINAL_PHASES = ("Succeeded", "Failed")


def quantity(value: Any) -> float:
    return float(parse_quantity(value))


def _container_requests(container: Mapping[str, Any]) -> dict[str, float]:
    """Requests, falling back to limits (the API server defaults requests to limits when only those are set)."""
    resources = container.get("resources") or {}
    merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    return {name: quantity(merged[name]) for name in RESOURCES if name in merged}


def pod_requests(pod: Mapping[str, Any]) -> dict[str, float]:
    """Effective requests: sum over containers, or the largest init container if that is larger."""
    spec = pod.get("spec") or {}
    total = dict.fromkeys(RESOURCES, 0.0)
    for container in spec.get("containers") or []:
        for name, value in _container_requests(container).items():
            total[name] += value
    for container in spec.get("initContainers") or []:
        for name, value in _container_requests(container).items():
            total[name] = max(total[name], value)
    return total


def wants_scheduling(pod: Mapping[str, Any], scheduler_name: str = SCHEDULER_NAME) -> bool:
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    return (
        not spec.get("nodeName")
        and spec.get("schedulerName", SCHEDULER_NAME) == scheduler_name
        and not meta.get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase", "Pending") == "Pending"
    )


def occupies_node(pod: Mapping[str, Any], node_name: str) -> bool:
    """Bound here and not finished: its requests still count, terminating or not."""
    return (pod.get("spec") or {}).get("nodeName") == node_name and (pod.get("status") or {}).get(
        "phase"
    ) not in TERMINAL_PHASES


def unschedulable_message(
    pod: Mapping[str, Any],
    node_labels: Mapping[str, str],
    allocatable: Mapping[str, Any],
    bound: Sequence[Mapping[str, Any]],
) -> str | None:
    """Why pod does not fit the node next to the bound pods, in kube-scheduler's words; None if it fits."""
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    if any(node_labels.get(k) != v for k, v in selector.items()):
        return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    reasons = []
    if len(bound) + 1 > quantity(allocatable.get("pods", "110")):
        reasons.append("1 Too many pods")
    want = pod_requests(pod)
    for name in RESOURCES:
        if want[name] <= 0:
            continue
        used = sum(pod_requests(p)[name] for p in bound)
        if used + want[name] > quantity(allocatable.get(name, "0")):
            reasons.append(f"1 Insufficient {name}")
    if not reasons:
        return None
    return f"0/1 nodes are available: {', '.join(sorted(reasons))}."


def queue_order(pod: Mapping[str, Any]) -> tuple[int, str, str]:
    """Higher priority first, then oldest first, as the scheduler's default queue sort."""
    meta = pod.get("metadata") or {}
    priority = int((pod.get("spec") or {}).get("priority") or 0)
    return (-priority, meta.get("creationTimestamp", ""), meta.get("name", ""))


def pod_event(pod: Mapping[str, Any], reason: str, message: str, kind: str, component: str) -> Obj:
    meta = pod["metadata"]
    now = now_rfc3339()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class Scheduler:
    """One pass per kubelet tick: bind what fits, mark the rest Unschedulable once per distinct reason."""

    def __init__(self, api: KubeClient, node_name: str, scheduler_name: str = SCHEDULER_NAME) -> None:
        self.api = api
        self.node_name = node_name
        self.scheduler_name = scheduler_name  # another name isolates a second sandbox node (tests)
        self._posted: dict[str, str] = {}  # pod uid -> last Unschedulable message posted

    def schedule(self, pods: Sequence[Obj], node: Obj) -> list[Obj]:
        """Bind pending pods that fit; returns the pods bound in this pass."""
        labels = node["metadata"].get("labels") or {}
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        bound = [p for p in pods if occupies_node(p, self.node_name)]
        newly_bound = []
        pending = sorted((p for p in pods if wants_scheduling(p, self.scheduler_name)), key=queue_order)
        live = {p["metadata"]["uid"] for p in pending}
        self._posted = {uid: msg for uid, msg in self._posted.items() if uid in live}
        for pod in pending:
            message = unschedulable_message(pod, labels, allocatable, bound)
            try:
                if message is None:
                    self._bind(pod)
                    bound.append(pod)
                    newly_bound.append(pod)
                elif self._posted.get(pod["metadata"]["uid"]) != message:
                    self._mark_unschedulable(pod, message)
            except Exception as exc:
                if not is_not_found(exc):  # deleted meanwhile: nothing to do
                    LOG.warning("scheduling %s failed: %s", pod["metadata"]["name"], exc)
        return newly_bound

    def _bind(self, pod: Obj) -> None:
        meta = pod["metadata"]
        self.api.bind_pod(pod, self.node_name)
        self._posted.pop(meta["uid"], None)
        message = f"Successfully assigned {meta['namespace']}/{meta['name']} to {self.node_name}"
        self._event(pod, "Scheduled", message, "Normal")

    def _mark_unschedulable(self, pod: Obj, message: str) -> None:
        meta = pod["metadata"]
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": now_rfc3339(),
        }
        self.api.patch_pod_status(meta["namespace"], meta["name"], {"conditions": [condition]})
        self._posted[meta["uid"]] = message
        self._event(pod, "FailedScheduling", message, "Warning")

    def _event(self, pod: Obj, reason: str, message: str, kind: str) -> None:
        try:
            self.api.create_event(
                pod["metadata"]["namespace"], pod_event(pod, reason, message, kind, self.scheduler_name)
            )
        except Exception as exc:  # events are advisory
            LOG.debug("event %s for %s not posted: %s", reason, pod["metadata"]["name"], exc)
