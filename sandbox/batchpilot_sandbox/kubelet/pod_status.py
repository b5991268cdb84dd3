"""The pod status a kubelet posts, built from a pod worker's snapshot.

Conditions keep their lastTransitionTime from the live object while their status is unchanged, so an
unchanged pod yields an identical status and the kubelet can skip the patch.
"""

from __future__ import annotations

from typing import Any

from batchpilot_sandbox.kubelet.node_agent import now_rfc3339
from batchpilot_sandbox.kubelet.pod_runtime import HOST_IP, PodSnapshot

Obj = dict[str, Any]


def _condition(kind: str, ok: bool, previous: Obj | None, reason: str = "", message: str = "") -> Obj:
    status = "True" if ok else "False"
    since = previous["lastTransitionTime"] if previous and previous.get("status") == status else now_rfc3339()
    # None deletes a stale reason/message in the strategic merge patch once the condition turns True
    return {
        "type": kind,
        "status": status,
        "reason": None if ok else reason or None,
        "message": None if ok else message or None,
        "lastProbeTime": None,
        "lastTransitionTime": since,
    }


def pod_status(snapshot: PodSnapshot, pod_ip: str, live: Obj) -> Obj:
    """status for patching pods/status (strategic merge; PodScheduled is left to the binding)."""
    previous = {c["type"]: c for c in (live.get("status") or {}).get("conditions") or []}
    unready = [c.name for c in snapshot.containers if not c.ready]
    uninitialized = [
        c.name for c in snapshot.init_containers if c.state.get("terminated", {}).get("exitCode") != 0
    ]
    ready = not unready and snapshot.phase == "Running"
    not_ready_message = f"containers with unready status: [{' '.join(unready)}]"
    conditions = [
        _condition("PodReadyToStartContainers", True, previous.get("PodReadyToStartContainers")),
        _condition(
            "Initialized",
            snapshot.initialized,
            previous.get("Initialized"),
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(uninitialized)}]",
        ),
        _condition(
            "ContainersReady", ready, previous.get("ContainersReady"), "ContainersNotReady", not_ready_message
        ),
        _condition("Ready", ready, previous.get("Ready"), "ContainersNotReady", not_ready_message),
    ]
    status: Obj = {
        "phase": snapshot.phase,
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": snapshot.start_time,
        "conditions": conditions,
        "containerStatuses": [c.status() for c in snapshot.containers],
    }
    if snapshot.init_containers:
        status["initContainerStatuses"] = [c.status() for c in snapshot.init_containers]
    return status
