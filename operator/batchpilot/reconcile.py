"""Bring an InferenceService's children to the state its spec describes (idempotent)."""

from __future__ import annotations

from typing import Any

from batchpilot.adapters.kube import Kube
from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.build.batching import Tuning
from batchpilot.build.children import Manifest, children


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
    return any(e.get("manager") != field_manager and not str(e.get("manager", "")).startswith("kube-")
               and e.get("subresource") != "status" and (e.get("time") or "") >= ours for e in entries)


def desired_replicas(live: int | None, spec: InferenceServiceSpec) -> int:
    """Replicas are the control loop's: keep the live count (or the manual spec.replicas), clamped into the
    spec's bounds."""
    bounds = spec.autoscaling
    start = spec.replicas if spec.replicas is not None else (bounds.min_replicas if live is None else live)
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


def reconcile(kube: Kube, owner: dict[str, Any], spec: InferenceServiceSpec, fetcher_image: str) -> int:
    """Apply every child; returns the replica count the Deployment was applied with."""
    name, namespace = owner["metadata"]["name"], owner["metadata"]["namespace"]
    live = kube.deployment(namespace, name)
    replicas = desired_replicas(live.replicas if live else None, spec)
    for manifest in children(name, namespace, spec, replicas, tuned(owner.get("status") or {}, spec),
                             fetcher_image=fetcher_image,
                             pod_monitor_crd=kube.has_crd(POD_MONITOR_CRD)):
        kube.apply(owned_by(manifest, owner))
    return replicas
