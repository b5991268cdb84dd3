"""KEDA as a real peer in the sandbox: its Prometheus scaler reads the sandbox's Prometheus, its metrics API
server answers `external.metrics.k8s.io` through kube-apiserver's aggregation layer, and the HPA controller
of kube-controller-manager scales a Deployment that the sandbox kubelet runs.

The numbers: a trigger whose query reads 300 with threshold 100 becomes an HPA External AverageValue target
of 100, so the HPA wants ceil(300 / 100) = 3 replicas (kubernetes `pkg/controller/podautoscaler/
replica_calculator.go`, GetExternalPerPodMetricReplicas; see FACTS.md "How the peers decide"). On a real
Triton series: 8 successful inferences summed over the pods, threshold 4 -> ceil(8 / 4) = 2 replicas (a new
pod's counter starts at 0, so the sum, and the decision, stay put once scaled).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from batchpilot.adapters.kube import FIELD_MANAGER
from batchpilot.build.names import ChildNames
from batchpilot_sandbox.cluster.keda import EXTERNAL_METRICS_PATH, Keda
from batchpilot_sandbox.cluster.stack import Sandbox
from batchpilot_sandbox.demo.sample import SampleService
from batchpilot_sandbox.gpu_emulator import model_configmap
from batchpilot_sandbox.process import tail
from support import infer, release_namespace, wait_for

NAMESPACE = "it-keda"
NAME = "worker"
QUERY_VALUE = 300
THRESHOLD = 100
WANT_REPLICAS = 3  # ceil(QUERY_VALUE / THRESHOLD)
HPA_SYNC_S = 15  # kube-controller-manager's default --horizontal-pod-autoscaler-sync-period
POLLING_S = 5  # the ScaledObject's pollingInterval (KEDA's default is 30 s)


@pytest.fixture(scope="module")
def keda(sandbox: Sandbox) -> Iterator[Keda]:
    """KEDA started against the shared sandbox; fails with the component's log when it cannot start."""
    with Keda(sandbox.control_plane, sandbox.config.workdir / "keda") as k:
        sandbox.kubectl("create", "namespace", NAMESPACE, check=False)
        try:
            yield k
        finally:
            # ScaledObjects carry KEDA's finalizer: delete them while KEDA still runs, then the namespace.
            sandbox.kubectl("delete", "scaledobjects.keda.sh", "--all", "-n", NAMESPACE, "--wait=true",
                            "--timeout=60s", check=False)
            release_namespace(sandbox, NAMESPACE)


TRITON = "triton"
TRITON_CONFIG = """backend: "python"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 1000 }
instance_group [{ kind: KIND_CPU, count: 1 }]
"""
INFERENCES = 8
TRITON_THRESHOLD = 4
TRITON_REPLICAS = 2  # ceil(INFERENCES / TRITON_THRESHOLD)


def deployment(name: str, pod_spec: dict[str, Any] | None = None,
               annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """One replica of pod_spec (default: a host `sleep`) that the sandbox kubelet runs."""
    labels = {"app": name}
    spec = pod_spec or {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels, "annotations": annotations or {}},
                              "spec": {"terminationGracePeriodSeconds": 2, **spec}}},
    }


def triton_pod_spec() -> dict[str, Any]:
    """Triton with the GPU emulator model "emulator" (from ConfigMaps), one GPU, ready when the model is."""
    container = {
        "name": "triton", "image": "nvcr.io/nvidia/tritonserver:24.08-py3", "command": ["tritonserver"],
        "args": ["--model-repository=/models", "--model-control-mode=explicit", "--load-model=emulator",
                 "--strict-readiness=true"],
        "ports": [{"name": "http", "containerPort": 8000}, {"name": "metrics", "containerPort": 8002}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8000}, "periodSeconds": 1},
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "volumeMounts": [
            {"name": "model", "mountPath": "/models/emulator/1"},
            {"name": "config", "mountPath": "/models/emulator/config.pbtxt", "subPath": "config.pbtxt"},
        ],
    }
    volumes = [{"name": "model", "configMap": {"name": "emulator-model"}},
               {"name": "config", "configMap": {"name": "emulator-config"}}]
    return {"containers": [container], "volumes": volumes}


def scaled_object(name: str, prometheus_url: str, query: str, threshold: int,
                  namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"name": name}, "minReplicaCount": 1, "maxReplicaCount": 5,
            "pollingInterval": POLLING_S,
            "triggers": [{"type": "prometheus", "metadata": {
                "serverAddress": prometheus_url, "query": query, "threshold": str(threshold)}}],
        },
    }


def ready_replicas(sandbox: Sandbox, name: str, want: int) -> bool:
    deploy = get(sandbox, "deployment", name)
    return bool(deploy and deploy["spec"]["replicas"] == want and deploy["status"].get("readyReplicas") == want)


def external_values(sandbox: Sandbox, hpa: dict[str, Any]) -> list[float]:
    """What the external metrics API serves for the HPA's (first) metric, read as the HPA controller does."""
    external = hpa["spec"]["metrics"][0]["external"]["metric"]
    selector = urllib.parse.quote(",".join(f"{k}={v}" for k, v in external["selector"]["matchLabels"].items()))
    path = f"{EXTERNAL_METRICS_PATH}/namespaces/{NAMESPACE}/{external['name']}?labelSelector={selector}"
    return [float(v["value"]) for v in json.loads(sandbox.kubectl("get", "--raw", path))["items"]]


def get(sandbox: Sandbox, kind: str, name: str, namespace: str = NAMESPACE) -> Any:
    out = sandbox.kubectl("get", "-n", namespace, kind, name, "-o", "json", check=False)
    return json.loads(out) if out else None


def report(sandbox: Sandbox, keda: Keda) -> str:
    """What to print when the HPA does not get there: HPA, ScaledObject, Events and KEDA's logs."""
    return "\n".join([
        sandbox.kubectl("get", "hpa,scaledobject,deploy,pods", "-n", NAMESPACE, "-o", "wide", check=False),
        sandbox.kubectl("describe", "hpa", "-n", NAMESPACE, check=False),
        sandbox.kubectl("get", "events", "-n", NAMESPACE, check=False),
        "keda-operator log:\n" + tail(keda.logs / "keda-operator.log", 20),
        "keda-adapter log:\n" + tail(keda.logs / "keda-adapter.log", 20),
    ])


def test_the_external_metrics_api_answers_through_the_aggregation_layer(sandbox: Sandbox, keda: Keda) -> None:
    discovery = json.loads(sandbox.kubectl("get", "--raw", EXTERNAL_METRICS_PATH))
    assert discovery["groupVersion"] == "external.metrics.k8s.io/v1beta1"
    apiservice = json.loads(sandbox.kubectl("get", "apiservice", "v1beta1.external.metrics.k8s.io", "-o", "json"))
    available = {c["type"]: c["status"] for c in apiservice["status"]["conditions"]}
    assert available == {"Available": "True"}, apiservice["status"]


def test_hpa_from_a_scaled_object_scales_the_deployment(sandbox: Sandbox, keda: Keda) -> None:
    sandbox.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([
        deployment(NAME),
        scaled_object(NAME, sandbox.prometheus_url, f"vector({QUERY_VALUE})", THRESHOLD),
    ]))
    detail = lambda: report(sandbox, keda)  # noqa: E731
    hpa = wait_for("KEDA to create the HPA keda-hpa-worker", lambda: get(sandbox, "hpa", f"keda-hpa-{NAME}"),
                   30, detail)
    metric = hpa["spec"]["metrics"][0]
    assert metric["type"] == "External"
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": str(THRESHOLD)}

    # The HPA reads the same value through kube-apiserver -> keda-adapter -> keda-operator -> Prometheus.
    assert external_values(sandbox, hpa) == [QUERY_VALUE]

    wait_for(f"the HPA to scale {NAME} to {WANT_REPLICAS} ready replicas",
             lambda: ready_replicas(sandbox, NAME, WANT_REPLICAS),
             2 * HPA_SYNC_S + 2 * POLLING_S + 30, detail)

    def settled() -> bool:
        """The next HPA sync sees 300 over 3 replicas = 100 per replica, on target: no further change."""
        status = get(sandbox, "hpa", f"keda-hpa-{NAME}")["status"]
        current = (status.get("currentMetrics") or [{}])[0].get("external", {}).get("current", {})
        return status["desiredReplicas"] == WANT_REPLICAS and current.get("averageValue") == str(THRESHOLD)

    wait_for("the HPA to settle at 100 per replica", settled, HPA_SYNC_S + 10, detail)
    assert get(sandbox, "deployment", NAME)["spec"]["replicas"] == WANT_REPLICAS


def test_hpa_scales_triton_on_its_own_request_counter(sandbox: Sandbox, keda: Keda) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"config.pbtxt": TRITON_CONFIG},
              "metadata": {"name": "emulator-config", "namespace": NAMESPACE}}
    query = f'sum(nv_inference_request_success{{namespace="{NAMESPACE}",model="emulator"}})'
    scrape = {"prometheus.io/scrape": "true"}
    sandbox.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([
        model_configmap("emulator-model", NAMESPACE), config,
        deployment(TRITON, triton_pod_spec(), scrape),
        scaled_object(TRITON, sandbox.prometheus_url, query, TRITON_THRESHOLD),
    ]))
    detail = lambda: report(sandbox, keda)  # noqa: E731
    wait_for("one ready Triton pod", lambda: ready_replicas(sandbox, TRITON, 1), 90, detail)
    pods = json.loads(sandbox.kubectl("get", "pods", "-n", NAMESPACE, "-l", f"app={TRITON}", "-o", "json"))
    pod_ip = pods["items"][0]["status"]["podIP"]
    for _ in range(INFERENCES):
        assert infer(f"{pod_ip}:8000", "emulator") == [1.0, 2.0, 3.0, 4.0]
    hpa = wait_for(f"KEDA to create the HPA keda-hpa-{TRITON}", lambda: get(sandbox, "hpa", f"keda-hpa-{TRITON}"),
                   30, detail)
    wait_for(f"{query} to read {INFERENCES} through the external metrics API",
             lambda: external_values(sandbox, hpa) == [INFERENCES], 30, detail)

    wait_for(f"the HPA to scale {TRITON} to {TRITON_REPLICAS} ready replicas on {query}",
             lambda: ready_replicas(sandbox, TRITON, TRITON_REPLICAS),
             2 * HPA_SYNC_S + 2 * POLLING_S + 60, detail)
    status = get(sandbox, "hpa", f"keda-hpa-{TRITON}")["status"]
    assert status["desiredReplicas"] == TRITON_REPLICAS


EXTERNAL = SampleService(name="external", namespace="it-keda-external", max_replicas=4)
EXTERNAL_REPLICAS = 2  # ceil(200 / 100): the HPA's count, which Batchpilot's own plan (idle: 1) would not run


def test_batching_only_mode_leaves_the_replicas_to_keda_and_never_writes_them(sandbox: Sandbox, keda: Keda) -> None:
    """autoscaling.mode external: a ScaledObject on the InferenceService's Deployment owns the count; the
    operator applies the Deployment without replicas, never scales it, and reports ExternalReplicas."""
    ns, deploy = EXTERNAL.namespace, ChildNames(EXTERNAL.name).deployment
    manifests = EXTERNAL.manifests()
    manifests[-1]["spec"]["autoscaling"]["mode"] = "external"
    sandbox.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(manifests))
    try:
        wait_for("the operator to create the Deployment", lambda: get(sandbox, "deployment", deploy, ns), 60)
        sandbox.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(
            scaled_object(deploy, sandbox.prometheus_url, f"vector({EXTERNAL_REPLICAS * 100})", 100, ns)))

        def detail() -> str:
            return "\n".join([sandbox.kubectl("get", "hpa,deploy,pods,inferenceservice", "-n", ns, "-o", "wide",
                                               check=False),
                               sandbox.kubectl("get", "events", "-n", ns, check=False),
                               "operator log:\n" + tail(sandbox.logs / "operator.log", 20)])

        def scaled() -> bool:
            d = get(sandbox, "deployment", deploy, ns)
            return bool(d and d["spec"]["replicas"] == EXTERNAL_REPLICAS and
                        d["status"].get("readyReplicas") == EXTERNAL_REPLICAS)

        wait_for(f"the HPA to scale the Triton Deployment to {EXTERNAL_REPLICAS} ready", scaled,
                 2 * HPA_SYNC_S + 2 * POLLING_S + 90, detail)

        def reported() -> dict[str, Any] | None:
            status = get(sandbox, "inferenceservice", EXTERNAL.name, ns).get("status") or {}
            autoscaling = next((c for c in status.get("conditions") or [] if c["type"] == "Autoscaling"), {})
            ok = autoscaling.get("reason") == "ExternalReplicas" and status.get("replicas") == EXTERNAL_REPLICAS
            return status if ok else None

        status = wait_for("status to say ExternalReplicas at the HPA's count", reported, 60, detail)
        autoscaling = next(c for c in status["conditions"] if c["type"] == "Autoscaling")
        assert "owned by an HPA or KEDA" in autoscaling["message"]
        # Several control ticks later the HPA's count stands, and the operator never wrote replicas: it is in
        # none of the operator's managedFields entries (apply or the scale subresource), and no scaling Event.
        time.sleep(3 * 5 + 5)
        live = json.loads(sandbox.kubectl("get", "deployment", "-n", ns, deploy, "-o", "json",
                                          "--show-managed-fields"))
        assert live["spec"]["replicas"] == EXTERNAL_REPLICAS
        ours = [e for e in live["metadata"]["managedFields"] if e.get("manager") == FIELD_MANAGER]
        assert ours, "the operator applied the Deployment"
        assert not any("f:replicas" in json.dumps(e.get("fieldsV1", {}).get("f:spec", {})) for e in ours), ours
        events = sandbox.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.kind=InferenceService",
                                 "-o", "json")
        reasons = {e["reason"] for e in json.loads(events)["items"]}
        assert not reasons & {"ScaleUp", "ScaleDown", "Panic", "ManualReplicas"}, reasons
    finally:
        sandbox.kubectl("delete", "scaledobjects.keda.sh", "--all", "-n", ns, "--wait=true", "--timeout=60s",
                        check=False)
        release_namespace(sandbox, ns)
