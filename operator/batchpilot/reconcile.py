"""Bring an InferenceService's children to the state its spec describes (idempotent)."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException

from batchpilot.adapters.kube import HANDOVER_MANAGER, Kube
from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.build.children import Manifest, children
from batchpilot.build.names import ChildNames
from batchpilot.control.types import Tuning


def owned_by(manifest: Manifest, owner: dict[str, Any]) -> Manifest:
    """The manifest with a controller owner reference, so deleting the owner deletes it."""
    meta = manifest["metadata"]
    ref = {
        "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True,
    }
    return {**manifest, "metadata": {**meta, "ownerReferences": [ref]}}


POD_MONITOR_CRD = "podmonitors.monitoring.coreos.com"


def edited_by_others(meta: dict[str, Any], field_manager: str) -> bool:
    """Whether someone other than Batchpilot and Kubernetes' own controllers wrote a child since Batchpilot last
    applied it (from managedFields): only then is a repair due; status updates and our own applies are not drift."""
    entries = meta.get("managedFields") or []
    ours = max((e.get("time") or "" for e in entries if e.get("manager") == field_manager), default="")
    return any(e.get("manager") not in (field_manager, HANDOVER_MANAGER)
               and not str(e.get("manager", "")).startswith("kube-")
               and e.get("subresource") != "status" and (e.get("time") or "") >= ours for e in entries)


def desired_replicas(live: int | None, spec: InferenceServiceSpec) -> int:
    """Replicas are the control loop's: keep the live count (or the manual spec.replicas), clamped into the
    spec's bounds."""
    bounds = spec.autoscaling
    start = spec.replicas if spec.replicas is not None else (bounds.min_replicas if live is None else live)
    if spec.autoscaling.mode == "external" and live is not None:
        return live  # the HPA's count, whatever Batchpilot's bounds say
    return max(bounds.min_replicas, min(bounds.max_replicas, start))


def tuned(status: dict[str, Any], spec: InferenceServiceSpec) -> Tuning | None:
    """What the control loop applied (status.batching), kept within what auto mode and the spec's bounds allow."""
    batching = spec.batching
    applied = status.get("batching") or {}
    delay = applied.get("maxQueueDelayMicroseconds")
    if batching.mode != "auto" or delay is None:
        return None
    instances = int(applied.get("instanceCount") or batching.instance_count)
    if batching.max_instance_count is None or not 1 <= instances <= batching.max_instance_count:
        instances = batching.instance_count
    delay = min(batching.max_queue_delay_microseconds, max(batching.min_queue_delay_microseconds, int(delay)))
    return Tuning(delay, instances)


def hand_over_replicas(kube: Kube, name: str, namespace: str, replicas: int) -> None:
    """Before the Deployment is applied without replicas (autoscaling.mode external), a second field manager
    claims the live count, so the field is not removed (and reset to 1) when Batchpilot's apply drops it. Without
    force: once an HPA has written the count it owns it, the claim conflicts (409) and is skipped."""
    claim = {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": ChildNames(name).deployment, "namespace": namespace},
             "spec": {"replicas": replicas}}
    try:
        kube.apply(claim, field_manager=HANDOVER_MANAGER, force=False)
    except ApiException as e:
        if e.status != 409:
            raise


def reconcile(kube: Kube, owner: dict[str, Any], spec: InferenceServiceSpec, fetcher_image: str) -> int:
    """Apply every child; returns the replica count the Deployment was applied with (autoscaling.mode external:
    the live count, which the Deployment is applied without, so the HPA keeps owning it)."""
    name, namespace = owner["metadata"]["name"], owner["metadata"]["namespace"]
    live = kube.deployment(namespace, name)
    replicas = desired_replicas(live.replicas if live else None, spec)
    applied = None if spec.autoscaling.mode == "external" else replicas
    if applied is None and live is not None:
        hand_over_replicas(kube, name, namespace, live.replicas)
    for manifest in children(name, namespace, spec, applied, tuned(owner.get("status") or {}, spec),
                             fetcher_image=fetcher_image,
                             pod_monitor_crd=kube.has_crd(POD_MONITOR_CRD)):
        kube.apply(owned_by(manifest, owner))
    return replicas
