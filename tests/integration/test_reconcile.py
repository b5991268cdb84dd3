"""Reconcile on a real API server: idempotent, repairs drift, rolls out spec edits without touching the loop's
replicas, honours `kubectl scale`, adds a PodMonitor where its CRD exists, and shows the story in `kubectl get`.

The service's pods select a node label no node has, so they stay Pending: these tests are about the objects the
operator writes, not about serving (test_operator_lifecycle.py covers that).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import config as kube_config

from batchpilot.adapters.kube import Kube
from batchpilot.api.parse import parse_spec
from batchpilot.reconcile import reconcile
from batchpilot_sandbox.cluster.stack import Sandbox
from support import wait_for

NAMESPACE = "it-reconcile"
NAME = "recon"
KINDS = ("deployment", "service", "configmap", "poddisruptionbudget")
POD_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "podmonitors.monitoring.coreos.com"},
    "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
             "names": {"kind": "PodMonitor", "plural": "podmonitors", "singular": "podmonitor", "listKind":
                       "PodMonitorList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batchpilot.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": "m", "repository": {"configMap": "m-files"}, "backend": "python"},
            "slo": {"latencyMs": 100},
            "runtime": {"nodeSelector": {"batchpilot.dev/test": "no-such-node"}},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 5},
            **spec,
        },
    }


def get(sandbox: Sandbox, kind: str, name: str = NAME) -> Any:
    out = sandbox.kubectl("get", "-n", NAMESPACE, kind, name, "-o", "json", check=False)
    return json.loads(out) if out else None


def apply(sandbox: Sandbox, obj: dict[str, Any]) -> None:
    sandbox.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(obj))


@pytest.fixture(scope="module")
def service(sandbox: Sandbox) -> Iterator[Sandbox]:
    sandbox.kubectl("create", "namespace", NAMESPACE, check=False)
    apply(sandbox, manifest())
    for kind in KINDS:
        wait_for(f"the {kind}", lambda k=kind: get(sandbox, k, NAME if k != "configmap" else f"{NAME}-triton-config"),
                 90)
    yield sandbox
    sandbox.kubectl("delete", "inferenceservice", "-n", NAMESPACE, NAME, "--wait=true", check=False)


def versions(sandbox: Sandbox) -> dict[str, str]:
    names = {"configmap": f"{NAME}-triton-config"}
    return {k: get(sandbox, k, names.get(k, NAME))["metadata"]["resourceVersion"] for k in KINDS}


def test_a_second_reconcile_changes_nothing(service: Sandbox) -> None:
    kube = Kube(kube_config.new_client_from_config(str(service.kubeconfig)))
    owner = get(service, "inferenceservice")
    spec = parse_spec(owner["spec"])
    reconcile(kube, owner, spec, "fetcher:test")
    before = versions(service)
    reconcile(kube, owner, spec, "fetcher:test")
    assert versions(service) == before


def test_status_and_conditions_carry_the_generation(service: Sandbox) -> None:
    def conditions() -> list[dict[str, Any]] | None:
        live = get(service, "inferenceservice")
        status = live.get("status") or {}
        found = status.get("conditions") or []
        ok = status.get("observedGeneration") == live["metadata"]["generation"] and len(found) == 6
        return found if ok else None

    found = wait_for("status with six conditions", conditions, 60)
    assert [c["type"] for c in found] == ["Ready", "MetricsAvailable", "Autoscaling", "SLOMet", "Stalled",
                                          "Reconciling"]
    assert [(c["status"], c["reason"]) for c in found[4:]] == [("False", "Reconciled")] * 2
    generation = get(service, "inferenceservice")["metadata"]["generation"]
    assert all(c["observedGeneration"] == generation for c in found)
    ready = next(c for c in found if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["message"]
    header = service.kubectl("get", "bpis", "-n", NAMESPACE).splitlines()[0].split()
    assert header == ["NAME", "READY", "DESIRED", "REPLICAS-BY", "LATENCY-MS", "SLO-MS", "DELAY-US", "BATCH",
                      "STATUS", "AGE"]


def test_drift_on_children_is_repaired(service: Sandbox) -> None:
    service.kubectl("patch", "deployment", "-n", NAMESPACE, NAME, "--type=json", "-p", json.dumps([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "someone/else:1"}]))
    wait_for("the Deployment's image restored",
             lambda: get(service, "deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
             != "someone/else:1", 60)
    uid = get(service, "service")["metadata"]["uid"]
    service.kubectl("delete", "service", "-n", NAMESPACE, NAME)
    wait_for("the Service recreated", lambda: (get(service, "service") or {}).get("metadata", {}).get("uid")
             not in (None, uid), 60)
    service.kubectl("patch", "configmap", "-n", NAMESPACE, f"{NAME}-triton-config", "--type=merge", "-p",
                    json.dumps({"data": {"config.pbtxt": "garbage"}}))
    wait_for("config.pbtxt restored", lambda: "garbage" not in get(service, "configmap", f"{NAME}-triton-config")[
        "data"]["config.pbtxt"], 60)


def test_a_spec_edit_rolls_out_and_keeps_the_loops_replicas(service: Sandbox) -> None:
    service.kubectl("scale", "deployment", "-n", NAMESPACE, NAME, "--replicas=3")  # as the control loop would
    before = get(service, "deployment")["spec"]["template"]["metadata"]["annotations"]["batchpilot.dev/config-hash"]
    apply(service, manifest(batching={"mode": "fixed", "maxQueueDelayMicroseconds": 500}))

    def rolled() -> dict[str, Any] | None:
        dep = get(service, "deployment")
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        return dep if annotations["batchpilot.dev/config-hash"] != before else None

    dep = wait_for("a new pod template", rolled, 60)
    assert dep["spec"]["replicas"] == 3
    config = get(service, "configmap", f"{NAME}-triton-config")["data"]["config.pbtxt"]
    assert "max_queue_delay_microseconds: 500" in config


def test_kubectl_scale_pins_replicas(service: Sandbox) -> None:
    service.kubectl("scale", "inferenceservice", "-n", NAMESPACE, NAME, "--replicas=2")
    assert get(service, "inferenceservice")["spec"]["replicas"] == 2
    wait_for("the Deployment at 2", lambda: get(service, "deployment")["spec"]["replicas"] == 2, 60)

    def autoscaling_reason() -> str:
        conditions = (get(service, "inferenceservice").get("status") or {}).get("conditions") or []
        return next((c["reason"] for c in conditions if c["type"] == "Autoscaling"), "")

    wait_for("the Autoscaling condition to say ManualReplicas", lambda: autoscaling_reason() == "ManualReplicas", 60)
    scale = json.loads(service.kubectl("get", "--raw",
                                       f"/apis/batchpilot.dev/v1alpha1/namespaces/{NAMESPACE}/inferenceservices/"
                                       f"{NAME}/scale"))
    assert scale["spec"]["replicas"] == 2 and scale["status"]["selector"] == f"batchpilot.dev/inferenceservice={NAME}"


def test_a_pod_monitor_appears_once_its_crd_exists(service: Sandbox) -> None:
    assert get(service, "podmonitor", f"{NAME}-triton") is None  # no CRD yet: kubectl knows no such kind
    service.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(POD_MONITOR_CRD))
    service.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/podmonitors.monitoring.coreos.com")
    apply(service, manifest(slo={"latencyMs": 120}))  # any spec edit reconciles
    monitor = wait_for("the PodMonitor", lambda: get(service, "podmonitor", f"{NAME}-triton"), 60)
    assert monitor["spec"]["selector"]["matchLabels"] == {"batchpilot.dev/inferenceservice": NAME}
    assert monitor["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"


def test_a_child_the_api_server_refuses_stalls_the_service_until_the_spec_is_fixed(service: Sandbox) -> None:
    """affinity passes through the CRD as written; a malformed one is refused when the Deployment is applied: a
    Warning Event and status Stalled=True (reason, the API server's message, the generation), kept by the control
    loop's ticks beside its own conditions. Fixing the spec clears it."""
    good = manifest()
    good["metadata"]["name"] = "bad-affinity"
    apply(service, good)

    def conditions() -> dict[str, dict[str, Any]]:
        live = get(service, "inferenceservice", "bad-affinity")
        status = live.get("status") or {}
        if status.get("observedGeneration") != live["metadata"]["generation"]:
            return {}
        return {c["type"]: c for c in status.get("conditions") or []}

    def observed_at() -> str | None:
        return ((get(service, "inferenceservice", "bad-affinity").get("status") or {}).get("observed") or {}).get("at")

    wait_for("the control loop's conditions", lambda: "SLOMet" in conditions(), 60)
    apply(service, {**good, "spec": manifest(runtime={"affinity": {"nodeAffinity": "nonsense"}})["spec"]})

    def refused() -> str:
        return service.kubectl("get", "events", "-n", NAMESPACE, "--field-selector",
                               "involvedObject.name=bad-affinity,reason=ReconcileFailed", "-o",
                               "jsonpath={.items[*].message}", check=False)

    message = wait_for("a ReconcileFailed Event", refused, 60)
    assert "affinity" in message, message
    stalled = wait_for("Stalled=True", lambda: (c := conditions().get("Stalled")) and c["status"] == "True" and c,
                       60)
    assert stalled["reason"] == "ChildInvalid" and "spec.template.spec.affinity" in stalled["message"]
    assert stalled["observedGeneration"] == 2
    for tick in range(2):
        at = observed_at()
        wait_for(f"control tick {tick + 1} after the refusal", lambda a=at: observed_at() not in (None, a), 30)
    ticked = conditions()
    assert ticked["Stalled"] == stalled and {"Ready", "MetricsAvailable", "Autoscaling", "SLOMet"} <= ticked.keys()
    apply(service, good)
    cleared = wait_for("Stalled=False", lambda: (c := conditions().get("Stalled")) and c["status"] == "False" and c,
                       60)
    assert cleared["reason"] == "Reconciled" and cleared["observedGeneration"] == 3
    service.kubectl("delete", "inferenceservice", "-n", NAMESPACE, "bad-affinity", check=False)


def test_kubectl_explain_tells_what_a_field_does(service: Sandbox) -> None:
    def explain(field: str) -> str:
        return " ".join(service.kubectl("explain", f"inferenceservice.{field}").split())  # kubectl wraps lines

    assert "fetched by an init container before Triton starts" in explain("spec.model.repository.storageUri")
    assert "fallback: go to fallbackReplicas" in explain("spec.autoscaling.metricsOutage.policy")
