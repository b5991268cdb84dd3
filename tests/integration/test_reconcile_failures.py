"""A failed reconcile shows in status, against the real API server: the kopf handler runs reconcile with a real
Kube, its status patch is written through the status subresource (as kopf does), and the stored conditions are
read back. The obstacles are real ones: someone else's Deployment of the same name with another selector (422,
immutable), a ResourceQuota allowing no Deployment (403, retried until it is lifted), and an apply whose
resourceVersion precondition is stale (409). Removing the obstacle clears the failure. The child-repair handler
(a Deployment someone deleted is created again) writes its failures on the owner's status the same way.
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
from batchpilot.build.status import QUOTA_RETRY_S
from batchpilot_sandbox.cluster.controlplane import ControlPlane
from kopf_calls import call_reconcile_children, call_repair_child
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


def no_deployments_quota(kube: Kube, name: str) -> None:
    """A ResourceQuota allowing no Deployment in NAMESPACE, once the API server enforces it."""
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
             "spec": {"hard": {"count/deployments.apps": "0"}}}
    core = client.CoreV1Api(kube.api)
    core.create_namespaced_resource_quota(NAMESPACE, quota)
    wait_for("the quota's status (kube-controller-manager)",
             lambda: (core.read_namespaced_resource_quota(name, NAMESPACE).status or {}).hard, 30)


def has_deployment(kube: Kube, name: str) -> bool:
    try:
        client.AppsV1Api(kube.api).read_namespaced_deployment(name, NAMESPACE)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def test_a_quota_that_forbids_the_deployment_stalls_until_it_is_lifted(kube: Kube) -> None:
    no_deployments_quota(kube, "no-deployments")
    try:
        create(kube, "quota")
        status, raised = reconcile_once(kube, "quota")
    finally:
        client.CoreV1Api(kube.api).delete_namespaced_resource_quota("no-deployments", NAMESPACE)
    # Not a PermanentError: an admin lifts a quota without touching the spec, so kopf retries after the delay.
    assert type(raised).__name__ == "TemporaryError" and getattr(raised, "delay", None) == QUOTA_RETRY_S
    stalled = pair(status)["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "ChildForbidden")
    assert pair(status)["Reconciling"]["status"] == "False"  # kstatus: stalled, not in progress
    assert "exceeded quota: no-deployments" in stalled["message"]
    assert f"retrying every {QUOTA_RETRY_S:g} s" in stalled["message"]
    assert not has_deployment(kube, "quota")
    # The quota lifted: kopf's retry (the same handler on the stored, unchanged object) creates the Deployment.
    # The admission's quota cache may still hold the quota for a moment, so a refused retry is tried again.
    status = wait_for("a retry that applies once the quota is gone",
                      lambda: (done := reconcile_once(kube, "quota"))[1] is None and done[0], 30)
    assert_cleared(status)
    assert has_deployment(kube, "quota")
    assert pair(status)["Stalled"]["lastTransitionTime"] >= stalled["lastTransitionTime"]


def test_a_repair_the_api_server_refuses_is_written_on_the_owner(kube: Kube) -> None:
    """Someone deletes the Deployment while a quota forbids creating one: the repair handler cannot put it back,
    and the InferenceService's status says so (Stalled=True, ChildForbidden, the API server's message) instead
    of only the operator's log. Once the quota is lifted, the child's next event repairs it and clears the pair."""
    create(kube, "repaired")
    assert reconcile_once(kube, "repaired")[1] is None
    apps = client.AppsV1Api(kube.api)
    child = kube.api.sanitize_for_serialization(apps.read_namespaced_deployment("repaired", NAMESPACE))["metadata"]
    no_deployments_quota(kube, "no-repairs")
    try:
        apps.delete_namespaced_deployment("repaired", NAMESPACE, propagation_policy="Background")
        wait_for("the Deployment gone", lambda: not has_deployment(kube, "repaired"), 30)
        memo, raised = call_repair_child(kube, "DELETED", child)
        stored = client.CustomObjectsApi(kube.api).get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL,
                                                                                 "repaired")
    finally:
        client.CoreV1Api(kube.api).delete_namespaced_resource_quota("no-repairs", NAMESPACE)
    assert raised is None, raised  # the failure is on the owner, not only in kopf's log
    status = stored["status"]
    stalled = pair(status)["Stalled"]
    assert (stalled["status"], stalled["reason"], stalled["observedGeneration"]) == ("True", "ChildForbidden", 1)
    assert stalled["message"].startswith("repairing a child changed by someone else failed"), stalled
    assert 'deployments.apps "repaired" is forbidden: exceeded quota: no-repairs' in stalled["message"], stalled
    assert pair(status)["Reconciling"]["status"] == "False"
    # What the control loop's next tick keeps (it would otherwise write back the earlier, cleared pair).
    assert memo.reconcile_pairs[stored["metadata"]["uid"]] == [pair(status)["Stalled"], pair(status)["Reconciling"]]

    def repaired() -> dict[str, Any] | None:
        raised = call_repair_child(kube, "DELETED", child, memo)[1]
        assert raised is None, raised
        if not has_deployment(kube, "repaired"):
            return None  # the admission's quota cache still holds the quota
        return dict(client.CustomObjectsApi(kube.api).get_namespaced_custom_object(GROUP, VERSION, NAMESPACE,
                                                                                    PLURAL, "repaired")["status"])

    assert_cleared(wait_for("the repair once the quota is lifted", repaired, 30))


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
