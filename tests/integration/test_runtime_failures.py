"""Runtime failures in the sandbox become the Ready condition's reason and message, and a Warning Event:
a model that fails to load in Triton, GPU pods that stay Pending, a model fetch and a Triton that crash-loop.
Argo CD's health check (integrations/argocd) judges each live object as the README says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from argocd_health import captured, health
from batchpilot_sandbox.cluster.stack import Sandbox
from batchpilot_sandbox.demo.sample import SampleService
from batchpilot_sandbox.process import tail
from support import processes_with, release_namespace, wait_for

TENSORS = '''
    @staticmethod
    def auto_complete_config(config):
        config.add_input({"name": "INPUT", "data_type": "TYPE_FP32", "dims": [4]})
        config.add_output({"name": "OUTPUT", "data_type": "TYPE_FP32", "dims": [4]})
        return config
'''
BROKEN_MODEL = f'''
class TritonPythonModel:
{TENSORS}
    def initialize(self, args):
        raise RuntimeError("cannot open weights: model.plan not found")
'''
CRASHING_MODEL = f'''
import os
import signal


class TritonPythonModel:
    """A backend that takes the server down while loading, as a segfaulting C++ backend would."""
{TENSORS}
    def initialize(self, args):
        parent = os.getppid()
        with open(f"/proc/{{parent}}/comm") as comm:
            if comm.read().strip() == "tritonserver":
                os.kill(parent, signal.SIGSEGV)
        os._exit(1)
'''
WAIT_S = 240


def manifests(name: str, files: dict[str, str] | None = None, replicas: int = 1,
              **spec: Any) -> list[dict[str, Any]]:
    """Namespace, model ConfigMap and an InferenceService named as its namespace; files replace the emulator's
    model files, spec entries are merged into the sample's top-level spec entries."""
    sample = SampleService(name=name, namespace=name, model=name, with_profile=False, min_replicas=replicas,
                           max_replicas=replicas)
    namespace, config_map, isvc = sample.manifests()
    if files is not None:
        config_map["data"] = files
    for key, value in spec.items():
        isvc["spec"][key] = {**isvc["spec"].get(key, {}), **value}
    return [namespace, config_map, isvc]


def kube_json(sandbox: Sandbox, namespace: str, *args: str) -> Any:
    out = sandbox.kubectl("get", "-n", namespace, "-o", "json", *args, check=False)
    return json.loads(out) if out else None


def ready_condition(sandbox: Sandbox, name: str) -> dict[str, Any]:
    isvc = kube_json(sandbox, name, "inferenceservice", name) or {}
    return next((c for c in isvc.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})


def pods(sandbox: Sandbox, name: str) -> list[dict[str, Any]]:
    items = (kube_json(sandbox, name, "pods", "-l", f"batchpilot.dev/inferenceservice={name}") or {})
    return list(items.get("items", []))


def warning_events(sandbox: Sandbox, name: str, reason: str) -> list[dict[str, Any]]:
    events = kube_json(sandbox, name, "events", "--field-selector",
                       f"involvedObject.kind=InferenceService,involvedObject.name={name},reason={reason}") or {}
    return [e for e in events.get("items", []) if e["type"] == "Warning"]


def diagnosis(sandbox: Sandbox, name: str) -> str:
    statuses = [p["status"] for p in pods(sandbox, name)]
    return (f"Ready condition: {ready_condition(sandbox, name)}\npod statuses: {yaml.safe_dump(statuses)}\n"
            f"operator log:\n{tail(sandbox.logs / 'operator.log', 30)}\n"
            f"kubelet log:\n{tail(sandbox.logs / 'kubelet.log', 20)}")


def await_reason(sandbox: Sandbox, name: str, reason: str, saying: str = "") -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        condition = ready_condition(sandbox, name)
        return condition if condition.get("reason") == reason and saying in condition["message"] else None

    condition = wait_for(f"Ready reason {reason} on {name}" + (f" saying {saying!r}" if saying else ""), reached,
                         WAIT_S, lambda: diagnosis(sandbox, name))
    print(f"{name}: Ready={condition['status']} {condition['reason']}: {condition['message']}")
    return condition


def argo_cd_says(sandbox: Sandbox, name: str, status: str, testdata: str) -> None:
    """health.lua (real Lua 5.1) on the live InferenceService; the object is kept as testdata when capturing."""
    obj = kube_json(sandbox, name, "inferenceservice", name)
    captured(obj, testdata)
    verdict = health(obj)
    assert verdict["status"] == status, (verdict, obj.get("status"))


@pytest.fixture
def apply(sandbox: Sandbox) -> Iterator[Any]:
    """Applies a service's manifests; deletes its namespace afterwards, pods included, so GPUs are free again."""
    namespaces: list[str] = []

    def run(objects: list[dict[str, Any]]) -> None:
        namespaces.append(objects[0]["metadata"]["name"])
        sandbox.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))

    yield run
    for namespace in namespaces:
        release_namespace(sandbox, namespace)
        # Nothing of a crash-looping pod outlives it (Triton's backend stubs included).
        wait_for(f"the processes of the pods in {namespace} to exit",
                 lambda ns=namespace: not processes_with(f"/pods/{ns}_"), 120)


def test_model_that_fails_to_load(sandbox: Sandbox, apply: Any) -> None:
    name = "rf-load"
    apply(manifests(name, {"model.py": BROKEN_MODEL}))
    condition = await_reason(sandbox, name, "ModelLoadFailed")
    assert condition["status"] == "False"
    pod = pods(sandbox, name)[0]["metadata"]["name"]
    assert f"model {name} failed to load on pod {pod}: " in condition["message"]
    assert "RuntimeError: cannot open weights: model.plan not found" in condition["message"]
    wait_for("a ModelLoadFailed Warning Event", lambda: warning_events(sandbox, name, "ModelLoadFailed"), 60)
    argo_cd_says(sandbox, name, "Degraded", "degraded_model_load")


def test_gpu_pods_that_stay_pending(sandbox: Sandbox, apply: Any) -> None:
    name = "rf-gpus"
    apply(manifests(name, runtime={"resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                                                 "limits": {"memory": "512Mi", "nvidia.com/gpu": 5}}}))
    condition = await_reason(sandbox, name, "Unschedulable")
    assert condition["status"] == "False"
    assert condition["message"] == (
        "0/1 replicas ready; 1 pod Pending: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")
    wait_for("an Unschedulable Warning Event", lambda: warning_events(sandbox, name, "Unschedulable"), 60)
    [pending] = pods(sandbox, name)

    # The operator reports the pod and leaves it alone: after further control ticks it is the same pod.
    seen = kube_json(sandbox, name, "inferenceservice", name)["status"]["observed"]["at"]
    wait_for("a later control tick", lambda: kube_json(sandbox, name, "inferenceservice", name)["status"]
             ["observed"]["at"] != seen, 60)
    [still] = pods(sandbox, name)
    assert still["metadata"]["uid"] == pending["metadata"]["uid"]
    assert not still["metadata"].get("deletionTimestamp") and still["status"]["phase"] == "Pending"
    assert ready_condition(sandbox, name)["reason"] == "Unschedulable"
    argo_cd_says(sandbox, name, "Progressing", "progressing_unschedulable")


def test_some_replicas_pending_for_gpus(sandbox: Sandbox, apply: Any) -> None:
    name = "rf-some-gpus"
    apply(manifests(name, replicas=2, runtime={"resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                                                             "limits": {"memory": "512Mi", "nvidia.com/gpu": 3}}}))
    condition = await_reason(sandbox, name, "ReplicasReady", "Pending")
    assert condition["status"] == "True"
    assert condition["message"] == (
        "1/2 replicas ready; 1 pod Pending: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")
    argo_cd_says(sandbox, name, "Healthy", "healthy_some_pending")


def test_model_fetch_that_keeps_failing(sandbox: Sandbox, apply: Any) -> None:
    name = "rf-fetch"
    objects = manifests(name, model={"repository": {"storageUri": "https://127.0.0.1:1/missing.tar.gz"}})
    apply([objects[0], objects[2]])
    condition = await_reason(sandbox, name, "ModelFetchFailed")
    assert condition["status"] == "False"
    pod = pods(sandbox, name)[0]["metadata"]["name"]
    assert f"init container fetch-model of pod {pod} failed (exit code " in condition["message"]
    assert "127.0.0.1:1" in condition["message"], condition  # the fetcher's own last line (FallbackToLogsOnError)
    wait_for("a ModelFetchFailed Warning Event", lambda: warning_events(sandbox, name, "ModelFetchFailed"), 60)
    argo_cd_says(sandbox, name, "Degraded", "degraded_model_fetch")


def test_triton_that_crash_loops(sandbox: Sandbox, apply: Any) -> None:
    name = "rf-crash"
    apply(manifests(name, {"model.py": CRASHING_MODEL}))
    condition = await_reason(sandbox, name, "CrashLoopBackOff")
    assert condition["status"] == "False"
    pod = pods(sandbox, name)[0]["metadata"]["name"]
    assert f"container triton of pod {pod} failed (exit code 139 (SIGSEGV)" in condition["message"]
    wait_for("a CrashLoopBackOff Warning Event", lambda: warning_events(sandbox, name, "CrashLoopBackOff"), 60)
    argo_cd_says(sandbox, name, "Degraded", "degraded_crash_loop")


def test_argo_cd_health_of_a_new_a_ready_a_paused_and_a_stalled_service(sandbox: Sandbox, apply: Any) -> None:
    name = "rf-argo"
    namespace, config_map, isvc = manifests(name)
    apply([namespace, config_map])
    created = json.loads(sandbox.kubectl("apply", "-o", "json", "-f", "-", stdin=yaml.safe_dump(isvc)))
    captured(created, "progressing_no_status")  # as the API server answered the apply: no status yet
    assert health(created)["status"] == "Progressing"
    await_reason(sandbox, name, "ReplicasReady")
    argo_cd_says(sandbox, name, "Healthy", "healthy")
    sandbox.kubectl("patch", "inferenceservice", name, "-n", name, "--type=merge", "-p", '{"spec":{"paused":true}}')
    wait_for("the paused spec acted on", lambda: kube_json(sandbox, name, "inferenceservice", name)["status"].get(
        "observedGeneration") == 2, 60)
    argo_cd_says(sandbox, name, "Suspended", "suspended")

    # A quota that forbids the Deployment: the operator cannot apply the children until an admin lifts it.
    stalled = "rf-argo-quota"
    namespace, config_map, isvc = manifests(stalled)
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-deployments", "namespace": stalled},
             "spec": {"hard": {"count/deployments.apps": "0"}}}
    apply([namespace, quota, config_map, isvc])

    def stalled_true() -> bool:
        status = (kube_json(sandbox, stalled, "inferenceservice", stalled) or {}).get("status") or {}
        return any(c["type"] == "Stalled" and c["status"] == "True" for c in status.get("conditions") or [])

    wait_for("Stalled=True under a quota of 0 Deployments", stalled_true, 60, lambda: diagnosis(sandbox, stalled))
    argo_cd_says(sandbox, stalled, "Degraded", "degraded_stalled")
