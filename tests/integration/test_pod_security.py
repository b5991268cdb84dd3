"""Pod Security "restricted": the operator's own pod (as the Helm chart renders it) and the Triton pods the
builders render are admitted in a namespace that enforces the restricted profile on the local API server.

PodSecurity admission enforces on Pods only; on a Deployment it merely warns (and only with a `warn` label). So
each pod template is sent as a Pod with dryRun=All (a refusal is a 403 naming the checks it fails), and each
Deployment too, whose create must come back without a `Warning` header. A deliberately loosened pod is refused
first, so a namespace that enforced nothing could not make these tests pass.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchpilot.api.parse import parse_spec
from batchpilot.build.children import deployment
from batchpilot_sandbox.cluster.controlplane import ControlPlane
from batchpilot_sandbox.paths import helm_binary
from support import kubectl_run

NAMESPACE = "it-restricted"
KUBE_VERSION = "1.33.0"
CHART = Path(__file__).resolve().parents[2] / "charts" / "batchpilot"
LEVEL = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
         "pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/warn-version": "latest"}
SPEC = {"model": {"name": "resnet", "backend": "onnxruntime", "maxBatchSize": 8}, "slo": {"latencyMs": 50}}
REPOSITORIES = [
    pytest.param({"configMap": "resnet-files"}, id="configMap"),
    pytest.param({"storageUri": "s3://models/vision/resnet", "credentialsSecret": "s3-creds"},
                 id="storageUri-with-fetch-model"),
    pytest.param({"pvc": {"claimName": "models", "subPath": "resnet"}}, id="pvc"),
]


@pytest.fixture(scope="module")
def restricted(control_plane: ControlPlane) -> Path:
    """A namespace enforcing (and warning on) Pod Security "restricted", latest version."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": LEVEL}}
    done = kubectl_run(control_plane.kubeconfig, "apply", "-f", "-", stdin=json.dumps(namespace))
    assert done.returncode == 0, done.stderr
    return control_plane.kubeconfig


def admission(kubeconfig: Path, manifest: dict[str, Any]) -> str:
    """What the API server says to creating manifest in the namespace (dryRun=All): "" when it admits it with
    no warning, else its refusal or its warnings."""
    out = kubectl_run(kubeconfig, "create", "--dry-run=server", "-n", NAMESPACE, "-o", "name", "-f", "-",
                      stdin=json.dumps(manifest))
    warnings = [line for line in out.stderr.splitlines() if line.startswith("Warning:")]
    if out.returncode != 0:
        return f"refused: {out.stderr.strip()}"
    return "\n".join(warnings)


def as_pod(workload: dict[str, Any]) -> dict[str, Any]:
    """The Pod a Deployment's template makes (what PodSecurity enforces on)."""
    template = workload["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{workload['metadata']['name']}-pod", "labels": template["metadata"]["labels"]},
            "spec": template["spec"]}


def operator_deployment(*sets: str) -> dict[str, Any]:
    """The operator's Deployment as `helm template` renders it (namespace moved to the restricted one)."""
    out = subprocess.run([str(helm_binary()), "template", "bp", str(CHART), "-n", NAMESPACE,
                          "--kube-version", KUBE_VERSION, *[f"--set={s}" for s in sets]], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    [found] = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "Deployment"]
    return dict(found)


def triton_deployment(repository: dict[str, Any], **runtime: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec["model"]["repository"] = repository
    if runtime:
        spec["runtime"] = runtime
    rendered = deployment("resnet", NAMESPACE, parse_spec(spec), replicas=1)
    rendered["spec"]["replicas"] = 1
    return rendered


def test_the_namespace_refuses_a_pod_without_the_restricted_settings(restricted: Path) -> None:
    """The control: the Triton pod with its securityContexts removed is refused, naming what it lacks, and its
    Deployment is created with a warning."""
    loosened = triton_deployment({"storageUri": "s3://models/vision/resnet", "credentialsSecret": "s3-creds"})
    pod_spec = loosened["spec"]["template"]["spec"]
    pod_spec.pop("securityContext")
    for container in pod_spec["containers"] + pod_spec["initContainers"]:
        container.pop("securityContext")
    said = admission(restricted, as_pod(loosened))
    assert said.startswith("refused:") and 'violates PodSecurity "restricted:latest"' in said, said
    for check in ("allowPrivilegeEscalation != false", "unrestricted capabilities", "runAsNonRoot != true",
                  "seccompProfile"):
        assert check in said, said
    warned = admission(restricted, loosened)
    assert warned.startswith("Warning: would violate PodSecurity \"restricted:latest\""), warned


@pytest.mark.parametrize("repository", REPOSITORIES)
def test_triton_pods_are_admitted_under_restricted(restricted: Path, repository: dict[str, Any]) -> None:
    rendered = triton_deployment(repository)
    assert admission(restricted, as_pod(rendered)) == ""
    assert admission(restricted, rendered) == ""


def test_triton_pods_with_gpus_and_a_service_account_are_admitted(restricted: Path) -> None:
    rendered = triton_deployment({"storageUri": "https://models.example/resnet.tar.gz"},
                                 resources={"limits": {"nvidia.com/gpu": 1}}, serviceAccountName="triton",
                                 env=[{"name": "LOG_VERBOSE", "value": "1"}])
    assert admission(restricted, as_pod(rendered)) == ""


@pytest.mark.parametrize("sets", [pytest.param((), id="defaults"),
                                  pytest.param(("verbose=true", "fetcherImage=fetcher:1"), id="tuned")])
def test_the_operator_pod_from_the_chart_is_admitted_under_restricted(restricted: Path, sets: tuple[str, ...]) -> None:
    rendered = operator_deployment(*sets)
    assert admission(restricted, as_pod(rendered)) == ""
    assert admission(restricted, rendered) == ""
