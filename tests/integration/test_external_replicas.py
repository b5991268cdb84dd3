"""autoscaling.mode external against the real API server: the Deployment's replicas pass from Batchpilot's
server-side apply to an HPA without being reset, and once the HPA has written them Batchpilot never takes them
back (reconcile run directly with a real Kube; the HPA's write is an update of the scale subresource with
kube-controller-manager's field manager, as the HPA controller does)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from batchpilot.adapters.kube import FIELD_MANAGER, HANDOVER_MANAGER, Kube
from batchpilot.api.parse import parse_spec
from batchpilot.api.spec import GROUP, PLURAL, VERSION
from batchpilot.reconcile import reconcile
from batchpilot_sandbox.cluster.controlplane import ControlPlane
from support import install_crd, kubectl_run

NAMESPACE = "it-external-replicas"
NAME = "handover"


@pytest.fixture(scope="module")
def kube(control_plane: ControlPlane) -> Iterator[Kube]:
    install_crd(control_plane.kubeconfig, NAMESPACE)
    yield Kube(kube_config.new_client_from_config(str(control_plane.kubeconfig)))
    kubectl_run(control_plane.kubeconfig, "delete", "namespace", NAMESPACE, "--wait=false")


def owner(kube: Kube, **spec: Any) -> tuple[dict[str, Any], Any]:
    """The stored InferenceService with this spec (created or replaced: the children's owner must exist, or
    the garbage collector removes them) and its parsed spec."""
    body = {"model": {"name": "m", "repository": {"configMap": "m-files"}, "backend": "python"},
            "slo": {"latencyMs": 100},
            # no node runs these pods: only the API objects matter here
            "runtime": {"nodeSelector": {"batchpilot.dev/test": "no-such-node"}},
            **spec}
    api = client.CustomObjectsApi(kube.api)
    obj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
           "metadata": {"name": NAME, "namespace": NAMESPACE}, "spec": body}
    try:
        live = api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)
        obj["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        stored = api.replace_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME, obj)
    except ApiException as e:
        if e.status != 404:
            raise
        stored = api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, obj)
    return dict(stored), parse_spec(stored["spec"])


def replicas_and_owners(kube: Kube) -> tuple[int, set[str]]:
    d = client.AppsV1Api(kube.api).read_namespaced_deployment(NAME, NAMESPACE)
    owners = {e.manager for e in d.metadata.managed_fields or []
              if "f:replicas" in json.dumps((e.fields_v1 or {}).get("f:spec", {}))}
    return d.spec.replicas, owners


def test_switching_to_external_keeps_the_count_and_the_hpa_keeps_it_after(kube: Kube) -> None:
    obj, pinned = owner(kube, replicas=3, autoscaling={"maxReplicas": 8})
    assert reconcile(kube, obj, pinned, "fetcher:1") == 3
    assert replicas_and_owners(kube) == (3, {FIELD_MANAGER})

    obj, external = owner(kube, autoscaling={"maxReplicas": 8, "mode": "external"})
    assert reconcile(kube, obj, external, "fetcher:1") == 3
    count, owners = replicas_and_owners(kube)
    assert count == 3, "dropping replicas from the apply must not reset the Deployment to 1"
    assert FIELD_MANAGER not in owners and HANDOVER_MANAGER in owners

    # The HPA writes the count through the scale subresource (an update, kube-controller-manager's manager).
    client.AppsV1Api(kube.api).patch_namespaced_deployment_scale(
        NAME, NAMESPACE, {"spec": {"replicas": 6}}, field_manager="kube-controller-manager")
    for _ in range(2):  # reconciles later (a spec edit, a repair): the HPA's count stands
        assert reconcile(kube, obj, external, "fetcher:1") == 6
    count, owners = replicas_and_owners(kube)
    assert count == 6 and FIELD_MANAGER not in owners
