"""Pure renderers: an InferenceService spec -> the Deployment, Service and ConfigMap it owns."""

from __future__ import annotations

import hashlib
from typing import Any

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.build.config_pbtxt import render_config_pbtxt
from batchpilot.build.names import GRPC_PORT, HTTP_PORT, METRICS_PORT, MODEL_REPOSITORY, ChildNames

Manifest = dict[str, Any]
CONFIG_HASH_ANNOTATION = "batchpilot.dev/config-hash"


def _meta(name: str, namespace: str, names: ChildNames) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": names.labels}


def config_map(name: str, namespace: str, spec: InferenceServiceSpec, queue_delay_us: int | None = None) -> Manifest:
    """The model's config.pbtxt; with the tuned queue delay when there is one, so new pods start tuned."""
    names = ChildNames(name)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(names.config_map, namespace, names),
        "data": {"config.pbtxt": render_config_pbtxt(spec.model, spec.batching, queue_delay_us)},
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


def _probe(path: str, period_s: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period_s, "failureThreshold": failures,
            "timeoutSeconds": 2}


def _triton_container(spec: InferenceServiceSpec) -> dict[str, Any]:
    model, runtime = spec.model, spec.runtime
    limits: dict[str, Any] = {"memory": runtime.memory}
    if runtime.gpus:
        limits["nvidia.com/gpu"] = runtime.gpus
    model_dir = f"{MODEL_REPOSITORY}/{model.name}"
    return {
        "name": "triton",
        "image": runtime.image,
        "command": ["tritonserver"],
        "args": [
            f"--model-repository={MODEL_REPOSITORY}",
            "--model-control-mode=explicit",
            f"--load-model={model.name}",
            "--strict-readiness=true",
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
        "resources": {"requests": {"cpu": runtime.cpu, "memory": runtime.memory}, "limits": limits},
        "startupProbe": _probe("/v2/health/ready", 2, 300),
        "readinessProbe": _probe("/v2/health/ready", 2, 2),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
        "volumeMounts": [
            {"name": "model-config", "mountPath": f"{model_dir}/config.pbtxt", "subPath": "config.pbtxt",
             "readOnly": True},
            {"name": "model-files", "mountPath": f"{model_dir}/1", "readOnly": True},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": 1000,
        },
    }


def deployment(name: str, namespace: str, spec: InferenceServiceSpec, replicas: int) -> Manifest:
    """The Triton Deployment; `replicas` comes from the control loop, never from a spec default."""
    names = ChildNames(name)
    # From the spec alone: a live retune must not roll the pods, a spec change must.
    config_hash = hashlib.sha256(render_config_pbtxt(spec.model, spec.batching).encode()).hexdigest()[:16]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(names.deployment, namespace, names),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": names.selector},
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
                "spec": {
                    "containers": [_triton_container(spec)],
                    "terminationGracePeriodSeconds": 40,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "volumes": [
                        {"name": "model-config", "configMap": {"name": names.config_map}},
                        {"name": "model-files", "configMap": {"name": spec.model.repository.config_map}},
                    ],
                },
            },
        },
    }


def children(name: str, namespace: str, spec: InferenceServiceSpec, replicas: int,
             queue_delay_us: int | None = None) -> list[Manifest]:
    """Everything an InferenceService owns, in apply order (config before the pods that mount it)."""
    return [config_map(name, namespace, spec, queue_delay_us), service(name, namespace),
            deployment(name, namespace, spec, replicas)]
