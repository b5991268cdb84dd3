"""Pure renderers: an InferenceService spec -> the Deployment, Service and ConfigMap it owns."""

from __future__ import annotations

import hashlib
from typing import Any

from batchpilot.api.spec import GPU_RESOURCE, InferenceServiceSpec
from batchpilot.build.config_pbtxt import render_config_pbtxt
from batchpilot.build.names import (
    CLAIM_PATH,
    FETCH_CONTAINER,
    GRPC_PORT,
    HTTP_PORT,
    METRICS_PORT,
    MODEL_REPOSITORY,
    ChildNames,
)
from batchpilot.control.queue_policy import queue_timeout_us
from batchpilot.control.types import Tuning

Manifest = dict[str, Any]
CONFIG_HASH_ANNOTATION = "batchpilot.dev/config-hash"
DEFAULT_FETCHER_IMAGE = "batchpilot/batchpilot:0.1.0"
"""Image of the init container that fetches storageUri models (the operator's own image has the fetcher)."""
PRE_STOP_SECONDS = 5


def _meta(name: str, namespace: str, names: ChildNames) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": names.labels}


def config_map(name: str, namespace: str, spec: InferenceServiceSpec, tuning: Tuning | None = None) -> Manifest:
    """The model's config.pbtxt; with the loop's tuning when there is one, so new pods start tuned."""
    names = ChildNames(name)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(names.config_map, namespace, names),
        "data": {"config.pbtxt": render_config_pbtxt(spec.model, spec.batching, tuning, queue_timeout_us(spec))},
    }


def service(name: str, namespace: str) -> Manifest:
    names = ChildNames(name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(names.service, namespace, names),
        "spec": {
            "selector": names.selector,
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }


def pod_disruption_budget(name: str, namespace: str) -> Manifest:
    """At most one Triton pod evicted at a time by voluntary disruptions (node drains)."""
    names = ChildNames(name)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(names.pod_disruption_budget, namespace, names),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": names.selector}},
    }


def pod_monitor(name: str, namespace: str) -> Manifest:
    """Prometheus Operator PodMonitor for Triton's metrics port (rendered only where its CRD exists)."""
    names = ChildNames(name)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _meta(names.pod_monitor, namespace, names),
        "spec": {
            "selector": {"matchLabels": names.selector},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "5s"}],
        },
    }


def _probe(path: str, period_s: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period_s, "failureThreshold": failures,
            "timeoutSeconds": 2}


_RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 1000,
}
"""Pod Security "restricted" for every container."""


def _repository(spec: InferenceServiceSpec, fetcher_image: str) -> tuple[list[Manifest], list[Manifest],
                                                                            list[Manifest]]:
    """Volumes, Triton's model mounts and init containers for spec.model.repository."""
    repo, model_dir = spec.model.repository, f"{MODEL_REPOSITORY}/{spec.model.name}"
    config_mount = {"name": "model-config", "mountPath": f"{model_dir}/config.pbtxt", "subPath": "config.pbtxt",
                    "readOnly": True}
    if repo.config_map is not None:
        volume: Manifest = {"name": "model-files", "configMap": {"name": repo.config_map}}
        return [volume], [config_mount, {"name": "model-files", "mountPath": f"{model_dir}/1", "readOnly": True}], []
    volume = {"name": "model-files", "emptyDir": {}}
    model_mount = {"name": "model-files", "mountPath": model_dir, "subPath": spec.model.name, "readOnly": True}
    if repo.pvc is not None:
        # The claim is mounted beside the model directory and linked into it (fetch/link.py): mounted as the
        # model directory, a claim without a config.pbtxt gives runc no mount point for the rendered one.
        claim = {"name": "model-claim", "persistentVolumeClaim": {"claimName": repo.pvc.claim_name, "readOnly": True}}
        claim_mount = {"name": "model-claim", "mountPath": CLAIM_PATH, "readOnly": True}
        if repo.pvc.sub_path:
            claim_mount["subPath"] = repo.pvc.sub_path
        links = _init(fetcher_image, ["--link", CLAIM_PATH, "--dest", model_dir], [claim_mount])
        return [volume, claim], [model_mount, claim_mount, config_mount], [links]
    assert repo.storage_uri is not None  # the API allows exactly one source
    fetch = _init(fetcher_image, ["--uri", repo.storage_uri, "--dest", model_dir], [])
    if repo.credentials_secret is not None:
        fetch["envFrom"] = [{"secretRef": {"name": repo.credentials_secret}}]
    return [volume], [model_mount, config_mount], [fetch]


def _init(fetcher_image: str, args: list[str], mounts: list[Manifest]) -> Manifest:
    """The fetch-model init container: `python3 -m batchpilot.fetch` with args, writing the model directory."""
    return {
        "name": FETCH_CONTAINER,
        "image": fetcher_image,
        "command": ["python3", "-m", "batchpilot.fetch", *args],
        # The whole volume, so the fetcher stages beside the model directory on the same filesystem.
        "volumeMounts": [{"name": "model-files", "mountPath": MODEL_REPOSITORY}, *mounts],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": _RESTRICTED,
        # The fetcher's last line (what failed, the fix) becomes the status message the Ready condition quotes.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _triton_container(spec: InferenceServiceSpec, model_mounts: list[Manifest]) -> dict[str, Any]:
    model, runtime = spec.model, spec.runtime
    container: Manifest = {
        "name": "triton",
        "image": runtime.image,
        "command": ["tritonserver"],
        "args": [
            f"--model-repository={MODEL_REPOSITORY}",
            "--model-control-mode=explicit",
            f"--load-model={model.name}",
            "--strict-readiness=true",
            # A model that fails to load leaves the server up and not ready, so its reason can be read.
            "--exit-on-error=false",
            f"--http-port={HTTP_PORT}",
            f"--grpc-port={GRPC_PORT}",
            f"--metrics-port={METRICS_PORT}",
            "--metrics-config=summary_latencies=true",
            "--exit-timeout-secs=30",
        ],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT},
            {"name": "grpc", "containerPort": GRPC_PORT},
            {"name": "metrics", "containerPort": METRICS_PORT},
        ],
        "resources": runtime.resources.to_wire(),
        "startupProbe": _probe("/v2/health/live", 2, 300),
        "readinessProbe": _probe("/v2/health/ready", 2, 2),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
        # Endpoints drop the pod first; Triton then finishes in-flight requests (--exit-timeout-secs).
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "volumeMounts": model_mounts,
        "securityContext": _RESTRICTED,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if runtime.env:
        container["env"] = [e.to_wire() for e in runtime.env]
    return container


def _pod_spec(spec: InferenceServiceSpec, fetcher_image: str, config_map_name: str) -> Manifest:
    runtime = spec.runtime
    volumes, mounts, init = _repository(spec, fetcher_image)
    tolerations = [t.to_wire() for t in runtime.tolerations or []]
    if runtime.gpus:
        tolerations.insert(0, {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    pod: Manifest = {
        "containers": [_triton_container(spec, mounts)],
        "terminationGracePeriodSeconds": PRE_STOP_SECONDS + 35,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "model-config", "configMap": {"name": config_map_name}}, *volumes],
    }
    if init:
        pod["initContainers"] = init
    if tolerations:
        pod["tolerations"] = tolerations
    if runtime.node_selector:
        pod["nodeSelector"] = dict(runtime.node_selector)
    if runtime.affinity:
        pod["affinity"] = dict(runtime.affinity)
    if runtime.service_account_name:
        pod["serviceAccountName"] = runtime.service_account_name
    if runtime.image_pull_secrets:
        pod["imagePullSecrets"] = [s.to_wire() for s in runtime.image_pull_secrets]
    return pod


def deployment(name: str, namespace: str, spec: InferenceServiceSpec, replicas: int | None,
               fetcher_image: str = DEFAULT_FETCHER_IMAGE) -> Manifest:
    """The Triton Deployment; `replicas` comes from the control loop, never from a spec default; None leaves it
    out (autoscaling.mode external: the field is the HPA's, and server-side apply must not claim it)."""
    names = ChildNames(name)
    # From the spec alone: a live retune must not roll the pods, a spec change must.
    config = render_config_pbtxt(spec.model, spec.batching, queue_timeout_us=queue_timeout_us(spec))
    config_hash = hashlib.sha256(config.encode()).hexdigest()[:16]
    count = {} if replicas is None else {"replicas": replicas}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(names.deployment, namespace, names),
        "spec": {
            **count,
            "selector": {"matchLabels": names.selector},
            # Never below the ready count while rolling: one extra pod comes up before one goes.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": names.labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(METRICS_PORT),
                        "prometheus.io/path": "/metrics",
                        CONFIG_HASH_ANNOTATION: config_hash,
                    },
                },
                "spec": _pod_spec(spec, fetcher_image, names.config_map),
            },
        },
    }


def children(name: str, namespace: str, spec: InferenceServiceSpec, replicas: int | None,
             tuning: Tuning | None = None, *, fetcher_image: str = DEFAULT_FETCHER_IMAGE,
             pod_monitor_crd: bool = False) -> list[Manifest]:
    """Everything an InferenceService owns, in apply order (config before the pods that mount it)."""
    out = [config_map(name, namespace, spec, tuning), service(name, namespace),
           pod_disruption_budget(name, namespace), deployment(name, namespace, spec, replicas, fetcher_image)]
    if pod_monitor_crd:
        out.append(pod_monitor(name, namespace))
    return out
