"""A failed reconcile shows in status, against the real API server: the kopf handler runs reconcile with a real
Kube, its status patch is written through the status subresource (as kopf does), and the stored conditions are
read back. The obstacles are real ones: someone else's Deployment of the same name with another selector (422,
immutable), a ResourceQuota allowing no Deployment (403), and an apply whose resourceVersion precondition is
stale (409). Removing the obstacle clears the failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from batchpilot.adapters.kube import Kube
from batchpilot.api.spec import GROUP, PLURAL, VERSION
from batchpilot.sandbox.controlplane import ControlPlane
from kopf_calls import call_reconcile_children
from support import install_crd, kubectl_run, wait_for

NAMESPACE = "it-reconcile-failures"
SPEC = {"model": {"name": "m", "repository": {"configMap": "m-files"}, "backend": "python"},
        "slo": {"latencyMs": 100}}


@pytest.fixture(scope="module")
def kube(control_plane: ControlPlane) -> Iterator[Kube]:
    install_crd(control_plane.kubeconfig, NAMESPACE)
    yield Kube(kube_config.new_client_from_config(str(control_plane.kubeconfig)))
    kubectl_run(control_plane.kubeconfig, "delete", "namespace", NAMESPACE, "--wait=false")


def create(kube: Kube, name: str) -> dict[str, Any]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": SPEC}
    return dict(client.CustomObjectsApi(kube.api).create_namespaced_custom_object(GROUP, VERSION, NAMESPACE,
                                                                                  PLURAL, body))


def reconcile_once(kube: Kube, name: str) -> tuple[dict[str, Any], BaseException | None]:
    """Run the handler on the stored object, write its status patch as kopf would, return the stored status."""
    api = client.CustomObjectsApi(kube.api)
    obj = api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    patch, _, raised = call_reconcile_children(kube, obj)
    api.patch_namespaced_custom_object_status(GROUP, VERSION, NAMESPACE, PLURAL, name,
                                              {"status": json.loads(json.dumps(patch["status"]))})
    stored = api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    assert stored["status"]["observedGeneration"] == stored["metadata"]["generation"]
    return stored["status"], raised


def pair(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"] if c["type"] in ("Stalled", "Reconciling")}


def assert_cleared(status: dict[str, Any]) -> None:
    for c in pair(status).values():
        assert (c["status"], c["reason"]) == ("False", "Reconciled"), c


def foreign_deployment(name: str) -> dict[str, Any]:
    labels = {"app": "someone-else"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "someone/else:1"}]}}}}


def test_a_child_refused_as_invalid_stalls_with_the_api_servers_message(kube: Kube) -> None:
    client.AppsV1Api(kube.api).create_namespaced_deployment(NAMESPACE, foreign_deployment("taken"))
    create(kube, "taken")
    status, raised = reconcile_once(kube, "taken")
    assert type(raised).__name__ == "PermanentError"
    stalled = pair(status)["Stalled"]
    assert (stalled["status"], stalled["reason"], stalled["observedGeneration"]) == ("True", "ChildInvalid", 1)
    assert 'Deployment.apps "taken" is invalid' in stalled["message"] and "field is immutable" in stalled["message"]
    assert pair(status)["Reconciling"]["status"] == "False"
    client.AppsV1Api(kube.api).delete_namespaced_deployment("taken", NAMESPACE, propagation_policy="Background")
    status, raised = reconcile_once(kube, "taken")
    assert raised is None
    assert_cleared(status)
    assert pair(status)["Stalled"]["lastTransitionTime"] >= stalled["lastTransitionTime"]


def test_a_quota_that_forbids_the_deployment_stalls_until_it_is_lifted(kube: Kube) -> None:
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-deployments"},
             "spec": {"hard": {"count/deployments.apps": "0"}}}
    core = client.CoreV1Api(kube.api)
    core.create_namespaced_resource_quota(NAMESPACE, quota)
    wait_for("the quota's status (kube-controller-manager)",
             lambda: (core.read_namespaced_resource_quota("no-deployments", NAMESPACE).status or {}).hard, 30)
    try:
        create(kube, "quota")
        status, raised = reconcile_once(kube, "quota")
    finally:
        core.delete_namespaced_resource_quota("no-deployments", NAMESPACE)
    assert type(raised).__name__ == "PermanentError"
    stalled = pair(status)["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "ChildForbidden")
    assert "exceeded quota: no-deployments" in stalled["message"]


class StaleWriter(Kube):
    """A Kube whose applies carry a resourceVersion precondition that no longer holds (what a writer racing
    another one sends): the API server answers 409 Conflict."""

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return super().apply({**manifest, "metadata": {**manifest["metadata"], "resourceVersion": "1"}})


def test_a_conflict_is_retried_and_says_so(kube: Kube) -> None:
    create(kube, "conflict")
    assert reconcile_once(kube, "conflict")[1] is None  # the children exist: a stale precondition now conflicts
    status, raised = reconcile_once(StaleWriter(kube.api), "conflict")
    assert isinstance(raised, ApiException) and raised.status == 409  # not a PermanentError: kopf retries it
    reconciling = pair(status)["Reconciling"]
    assert (reconciling["status"], reconciling["reason"], reconciling["observedGeneration"]) == ("True", "Conflict",
                                                                                                 1)
    assert "the object has been modified" in reconciling["message"]
    assert pair(status)["Stalled"]["status"] == "False"
    assert_cleared(reconcile_once(kube, "conflict")[0])


def test_the_stored_conditions_are_what_kubectl_shows(kube: Kube, control_plane: ControlPlane) -> None:
    """The pair passes the CRD's status schema and reads back whole (kubectl -o yaml)."""
    create(kube, "shown")
    reconcile_once(kube, "shown")
    done = kubectl_run(control_plane.kubeconfig, "get", "bpis", "-n", NAMESPACE, "shown", "-o", "yaml")
    conditions = yaml.safe_load(done.stdout)["status"]["conditions"]
    assert [c["type"] for c in conditions] == ["Stalled", "Reconciling"]
    assert all(set(c) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
               for c in conditions)
