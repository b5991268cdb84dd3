"""Read a service's pods as `PodHealth`: what the kubelet and the scheduler report, plus Triton's own reasons.

Triton is asked only about pods whose Triton container runs but is not ready (loading, or a model that
failed to load: with --exit-on-error=false the server stays up to say why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchpilot.adapters.triton import repository_index
from batchpilot.build.pod_health import ContainerHealth, ModelHealth, PodHealth

TRITON_CONTAINER = "triton"
Index = Callable[[str], list[dict[str, Any]] | None]


def _container(status: dict[str, Any], init: bool) -> ContainerHealth:
    state, last = status.get("state") or {}, (status.get("lastState") or {}).get("terminated") or {}
    waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
    return ContainerHealth(
        name=status["name"], init=init, image=status.get("image") or "", ready=bool(status.get("ready")),
        restarts=int(status.get("restartCount") or 0), running="running" in state,
        waiting_reason=waiting.get("reason"), waiting_message=waiting.get("message"),
        exit_code=terminated.get("exitCode"), terminated_reason=terminated.get("reason"),
        terminated_message=terminated.get("message"),
        last_exit_code=last.get("exitCode"), last_reason=last.get("reason"), last_message=last.get("message"),
    )


def pod_health(pod: dict[str, Any], index: Index = repository_index) -> PodHealth:
    """One pod (as the API serves it, camelCase) -> PodHealth; `index` asks Triton at the pod's IP."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled") or {}
    unschedulable = None
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        unschedulable = scheduled.get("message") or "no node fits the pod"
    containers = tuple([_container(s, True) for s in status.get("initContainerStatuses") or []] +
                       [_container(s, False) for s in status.get("containerStatuses") or []])
    ready = (conditions.get("Ready") or {}).get("status") == "True"
    phase = status.get("phase") or "Pending"
    terminating = bool(meta.get("deletionTimestamp"))
    triton_running = any(c.name == TRITON_CONTAINER and c.running for c in containers if not c.init)
    models = None
    if phase == "Running" and not ready and not terminating and triton_running and status.get("podIP"):
        found = index(status["podIP"])
        if found is not None:
            models = tuple(ModelHealth(str(m["name"]), str(m.get("state") or ""), str(m.get("reason") or ""))
                           for m in found)
    return PodHealth(name=meta.get("name") or "", phase=phase, ready=ready, terminating=terminating,
                     unschedulable=unschedulable, containers=containers, models=models)


def pods_health(pods: list[dict[str, Any]], index: Index = repository_index) -> list[PodHealth]:
    """A service's pods (as listed, camelCase) as PodHealth, sorted by name."""
    return sorted((pod_health(p, index) for p in pods), key=lambda p: p.name)
