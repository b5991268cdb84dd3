"""A real node (containerd + runc + kubelet + kube-scheduler) running the images `make image` built.

Opt-in through the `real_cluster` fixture: a control plane of its own (the shared one's other tests must not see
a second node or a real scheduler) and a RealNode. A component that cannot start fails the test, never skips it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from batchpilot.api.parse import parse_spec
from batchpilot.build.children import deployment
from batchpilot.build.names import ChildNames
from batchpilot_sandbox.cluster import real_node_config as cfg
from batchpilot_sandbox.cluster.controlplane import ControlPlane
from batchpilot_sandbox.cluster.kubectl import kubectl
from batchpilot_sandbox.cluster.real_node import RealNode, RealNodeConfig
from batchpilot_sandbox.demo.sample import SampleService
from batchpilot_sandbox.paths import helm_binary
from batchpilot_sandbox.process import free_port
from storage_servers import SECRET_KEY, moto_s3, s3_client, upload
from support import processes_with, wait_for

pytestmark = pytest.mark.e2e

TRITON_IMAGE = "batchpilot/tritonserver-cpu:0.7.0"
OPERATOR_IMAGE = "batchpilot/batchpilot:0.1.0"
BUCKET = "models"
CHART = Path(__file__).resolve().parents[2] / "charts" / "batchpilot"
MODEL = "add_one"
MODEL_PY = textwrap.dedent("""
    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            out = []
            for request in requests:
                x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", (x + 1).astype(np.float32))]))
            return out
""")
CONFIG_PBTXT = f"""name: "{MODEL}"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""
RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, RealNode]]:
    base = tmp_path_factory.mktemp("rn")
    with ControlPlane(base / "cp", service_account_tokens=True) as cp, \
            RealNode(RealNodeConfig(base / "node", cp.kubeconfig, gpus=2)) as node:
        yield cp, node


def triton_pod(http_port: int, s3_endpoint: str) -> dict[str, object]:
    """A hostNetwork Triton pod pinned to the real node by selector and toleration, laid out as the operator renders
    one (build/children.py): the fetch-model init container (the operator image) fills an emptyDir from S3, Triton
    mounts the model from it and config.pbtxt from a ConfigMap; restricted security context throughout."""
    model_dir = f"/models/{MODEL}"
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "triton", "namespace": "default"},
        "spec": {
            "hostNetwork": True,
            "nodeSelector": {cfg.NODE_LABEL: "true"},
            "tolerations": [{"key": cfg.NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "terminationGracePeriodSeconds": 5,
            "initContainers": [{
                "name": "fetch-model", "image": OPERATOR_IMAGE, "imagePullPolicy": "Never",
                "command": ["python3", "-m", "batchpilot.fetch", "--uri", f"s3://{BUCKET}/{MODEL}", "--dest", model_dir],
                "env": [{"name": "AWS_ENDPOINT_URL", "value": s3_endpoint},
                        {"name": "AWS_ACCESS_KEY_ID", "value": "test"},
                        {"name": "AWS_SECRET_ACCESS_KEY", "value": SECRET_KEY}],
                "securityContext": RESTRICTED,
                "volumeMounts": [{"name": "model-files", "mountPath": "/models"}],
            }],
            "containers": [{
                "name": "triton", "image": TRITON_IMAGE, "imagePullPolicy": "Never",
                "command": ["tritonserver"],
                "args": ["--model-repository=/models", "--model-control-mode=explicit", f"--load-model={MODEL}",
                         f"--http-port={http_port}", f"--grpc-port={free_port()}", f"--metrics-port={free_port()}",
                         "--allow-gpu-metrics=false"],
                "securityContext": RESTRICTED,
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": http_port}, "periodSeconds": 1},
                # As build/children.py mounts them: the model read-only, the rendered config over the empty
                # config.pbtxt the fetcher leaves as its mount point (runc cannot create one in a read-only mount).
                "volumeMounts": [
                    {"name": "model-files", "mountPath": model_dir, "subPath": MODEL, "readOnly": True},
                    {"name": "model-config", "mountPath": f"{model_dir}/config.pbtxt", "subPath": "config.pbtxt",
                     "readOnly": True},
                ],
            }],
            "volumes": [{"name": "model-files", "emptyDir": {}},
                        {"name": "model-config", "configMap": {"name": "add-one"}}],
        },
    }


def wait_ready(kubeconfig: Path, pod: str, namespace: str = "default", timeout_s: float = 120) -> None:
    """Wait for the pod's Ready condition; a timeout shows the pod's events and its containers' logs."""
    jsonpath = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    wait_for(f"pod {namespace}/{pod} Ready",
             lambda: kubectl(kubeconfig, "-n", namespace, "get", "pod", pod, "-o", jsonpath, check=False) == "True",
             timeout_s,
             lambda: kubectl(kubeconfig, "-n", namespace, "describe", "pod", pod, check=False)[-3000:]
             + kubectl(kubeconfig, "-n", namespace, "logs", pod, "--all-containers", "--tail=20", check=False))


def infer(node_ip: str, port: int, values: list[float]) -> list[float]:
    body = {"inputs": [{"name": "INPUT0", "shape": [1, len(values)], "datatype": "FP32", "data": values}]}
    req = urllib.request.Request(f"http://{node_ip}:{port}/v2/models/{MODEL}/infer", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return [float(v) for v in json.load(resp)["outputs"][0]["data"]]


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_fetched_model_answers_from_real_restricted_containers_and_delete_removes_them(
        real_cluster: tuple[ControlPlane, RealNode]) -> None:
    cp, node = real_cluster
    kc = cp.kubeconfig
    kubectl(kc, "create", "configmap", "add-one", f"--from-literal=config.pbtxt={CONFIG_PBTXT}")
    port = free_port()
    with moto_s3(node.layout.logs) as endpoint:
        upload(s3_client(endpoint), BUCKET, {f"{MODEL}/1/model.py": MODEL_PY.encode(),
                                             f"{MODEL}/config.pbtxt": b"shipped config: the fetcher drops it"})
        kubectl(kc, "apply", "-f", "-", stdin=json.dumps(triton_pod(port, endpoint)))
        wait_ready(kc, "triton")
    pod = json.loads(kubectl(kc, "get", "pod", "triton", "-o", "json"))
    fetch_log = kubectl(kc, "logs", "triton", "-c", "fetch-model")
    assert f"s3://{BUCKET}/{MODEL}" in fetch_log and SECRET_KEY not in fetch_log
    assert pod["spec"]["nodeName"] == node.name  # bound by kube-scheduler through selector and toleration
    assert pod["status"]["podIP"] == node.name
    assert infer(node.name, port, [1, 2, 3, 4]) == [2, 3, 4, 5]

    # A real runtime ran it: containerd has its task; the process is the image's user, without capabilities,
    # under the default seccomp filter, in the pod's memory cgroup with the 1Gi limit.
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    tasks = dict(line.split()[:2] for line in node.ctr("tasks", "ls").splitlines()[1:])
    pid = int(tasks[container_id])
    status = proc_status(pid)
    assert status["Uid"].split()[0] == "65532"
    assert int(status["CapEff"], 16) == 0
    assert status["Seccomp"] == "2"
    memory_cgroup = next(line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                         if ":memory:" in line)
    limit = Path("/sys/fs/cgroup/memory", memory_cgroup.lstrip("/"), "memory.limit_in_bytes").read_text()
    assert int(limit) == 1 << 30

    kubectl(kc, "delete", "pod", "triton", "--wait=true", "--timeout=60s")
    wait_for("the container's task to go", lambda: container_id not in node.ctr("tasks", "ls"), 30)
    wait_for("the Triton process to exit", lambda: not os.path.exists(f"/proc/{pid}"), 30)


def pvc_pod(http_port: int, claim: str, config_map: str) -> dict[str, object]:
    """The pod the operator renders for a model on a claim (build/children.py: the claim mounted read-only beside
    the model directory, the fetch-model init container laying it out as links, the rendered config.pbtxt mounted
    over its empty mount point), on the host network with this test's images, ports and CPU limits."""
    spec = parse_spec({"model": {"name": MODEL, "backend": "python", "maxBatchSize": 8,
                                 "repository": {"pvc": {"claimName": claim, "subPath": MODEL}}},
                       "slo": {"latencyMs": 200},
                       "runtime": {"image": TRITON_IMAGE, "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}})
    pod = deployment("pvc-model", "default", spec, 1, fetcher_image=OPERATOR_IMAGE)["spec"]["template"]["spec"]
    pod["volumes"][0]["configMap"]["name"] = config_map  # the test's config (the operator's ConfigMap: a name)
    (init,), (triton,) = pod["initContainers"], pod["containers"]
    init["imagePullPolicy"] = triton["imagePullPolicy"] = "Never"
    triton["args"] = [a for a in triton["args"] if not a.startswith(("--http-port", "--grpc-port", "--metrics-port"))]
    triton["args"] += [f"--http-port={http_port}", f"--grpc-port={free_port()}", f"--metrics-port={free_port()}",
                       "--allow-gpu-metrics=false"]
    triton["ports"] = []
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        triton[probe]["httpGet"]["port"] = http_port
    pod.update({"hostNetwork": True, "nodeSelector": {cfg.NODE_LABEL: "true"},
                "tolerations": [{"key": cfg.NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}]})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pvc-model", "namespace": "default"}, "spec": pod}


def test_a_model_on_a_claim_without_a_config_pbtxt_answers(real_cluster: tuple[ControlPlane, RealNode],
                                                          tmp_path: Path) -> None:
    """A read-only claim whose model directory has no config.pbtxt: mounted as the model directory, runc had no
    mount point for the rendered config ("read-only file system"); the links leave it one, and Triton loads the
    version folder through its link."""
    cp, node = real_cluster
    kc = cp.kubeconfig
    store = tmp_path / "store"  # the claim's volume: a hostPath PersistentVolume on the node (this host)
    (store / MODEL / "1").mkdir(parents=True)
    (store / MODEL / "1" / "model.py").write_text(MODEL_PY)
    for d in (store, store / MODEL, store / MODEL / "1"):
        d.chmod(0o755)
    (store / MODEL / "1" / "model.py").chmod(0o644)
    volume = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "model-store"},
              "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"], "storageClassName": "",
                       "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(store)}}}
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "model-store", "namespace": "default"},
             "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": "model-store",
                      "resources": {"requests": {"storage": "1Gi"}}}}
    kubectl(kc, "create", "configmap", "pvc-model-config", f"--from-literal=config.pbtxt={CONFIG_PBTXT}")
    kubectl(kc, "apply", "-f", "-", stdin=yaml.safe_dump_all([volume, claim]))
    port = free_port()
    try:
        kubectl(kc, "apply", "-f", "-", stdin=json.dumps(pvc_pod(port, "model-store", "pvc-model-config")))
        wait_ready(kc, "pvc-model")
        links = kubectl(kc, "logs", "pvc-model", "-c", "fetch-model")
        assert "linked 1 entry" in links and "versions 1" in links, links
        assert infer(node.name, port, [1, 2, 3, 4]) == [2, 3, 4, 5]
        assert sorted(p.name for p in (store / MODEL).iterdir()) == ["1"]  # the claim was only read
    finally:
        kubectl(kc, "delete", "pod", "pvc-model", "--wait=true", "--timeout=60s", check=False)
        kubectl(kc, "delete", "pvc", "model-store", "--wait=false", check=False)
        kubectl(kc, "delete", "pv", "model-store", "--wait=false", check=False)


POST_RENDERER = """#!{python}
# Harness only: the real node has no pod network, so the operator runs on the host network and reaches the API
# server on loopback rather than through the kubernetes Service's cluster IP.
import sys, yaml
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
for doc in docs:
    if doc["kind"] == "Deployment":
        pod = doc["spec"]["template"]["spec"]
        pod["hostNetwork"] = True
        pod["dnsPolicy"] = "ClusterFirstWithHostNet"
        for container in pod["containers"]:
            container.setdefault("env", []).extend([
                {{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"}},
                {{"name": "KUBERNETES_SERVICE_PORT", "value": "{port}"}}])
yaml.safe_dump_all(docs, sys.stdout)
"""
RELEASE, RELEASE_NS, SAMPLE_NS = "batchpilot", "batchpilot-system", "rn-demo"


def helm(kubeconfig: Path, *args: str) -> str:
    done = subprocess.run([str(helm_binary()), f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"helm {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def container_pid(node: RealNode, container_id: str) -> int:
    tasks = dict(line.split()[:2] for line in node.ctr("tasks", "ls").splitlines()[1:])
    return int(tasks[container_id])


def test_helm_installed_operator_runs_in_cluster_and_reconciles_pods_onto_the_real_node(
        real_cluster: tuple[ControlPlane, RealNode], tmp_path: Path) -> None:
    cp, node = real_cluster
    kc = cp.kubeconfig
    renderer = tmp_path / "host-network"
    renderer.write_text(POST_RENDERER.format(python=sys.executable, port=cp.server.rsplit(":", 1)[1]))
    renderer.chmod(0o755)
    toleration = {"key": cfg.NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}
    values = {"image": {"pullPolicy": "Never"}, "replicas": 1, "leaderElection": {"enabled": False},
              "metrics": {"port": free_port()}, "prometheusUrl": f"http://127.0.0.1:{free_port()}",
              "controlIntervalSeconds": 5, "nodeSelector": {cfg.NODE_LABEL: "true"}, "tolerations": [toleration]}
    (tmp_path / "values.json").write_text(json.dumps(values))
    helm(kc, "install", RELEASE, str(CHART), "-n", RELEASE_NS, "--create-namespace", "-f",
         str(tmp_path / "values.json"), "--post-renderer", str(renderer))
    try:
        operator_pod = wait_for("the operator pod", lambda: kubectl(
            kc, "-n", RELEASE_NS, "get", "pods", "-o", "jsonpath={.items[0].metadata.name}", check=False), 120,
            lambda: kubectl(kc, "-n", RELEASE_NS, "get", "events", check=False))
        wait_ready(kc, operator_pod, RELEASE_NS)
        pod = json.loads(kubectl(kc, "-n", RELEASE_NS, "get", "pod", operator_pod, "-o", "json"))
        assert pod["spec"]["nodeName"] == node.name
        assert pod["spec"]["serviceAccountName"] == RELEASE
        assert any(v["name"].startswith("kube-api-access-") for v in pod["spec"]["volumes"])  # its token
        pid = container_pid(node, pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://"))
        status = proc_status(pid)
        assert status["Uid"].split()[0] == "65532" and int(status["CapEff"], 16) == 0 and status["Seccomp"] == "2"
        root_mount = next(line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                          if line.split()[4] == "/")
        assert root_mount.split()[5].startswith("ro")  # readOnlyRootFilesystem, enforced by runc

        # The operator (in-cluster config, the chart's RBAC) renders the sample's children; its pod lands here.
        sample = SampleService(namespace=SAMPLE_NS)
        manifests = sample.manifests()
        manifests[-1]["spec"]["runtime"].update(
            {"image": TRITON_IMAGE, "nodeSelector": {cfg.NODE_LABEL: "true"}, "tolerations": [toleration]})
        kubectl(kc, "apply", "-f", "-", stdin=yaml.safe_dump_all(manifests))
        deployment = ChildNames(sample.name).deployment
        wait_for("the operator's Deployment", lambda: kubectl(
            kc, "-n", SAMPLE_NS, "get", "deployment", deployment, "-o", "name", check=False), 90,
            lambda: kubectl(kc, "-n", RELEASE_NS, "logs", operator_pod, "--tail=30", check=False))

        # Bound here by kube-scheduler (the spec's nodeSelector and toleration, an advertised nvidia.com/gpu).
        # Its containers cannot start yet: the node has no pod network (loopback CNI only), and containerd refuses
        # a pod sandbox without one ("failed to find network info for sandbox").
        def bound_pods() -> list[str]:
            pods = json.loads(kubectl(kc, "-n", SAMPLE_NS, "get", "pods", "-o", "json"))["items"]
            return [p["metadata"]["name"] for p in pods if p["spec"].get("nodeName") == node.name]

        wait_for("the service's pod bound to the real node", bound_pods, 120,
                 lambda: kubectl(kc, "-n", SAMPLE_NS, "describe", "pods", check=False)[-3000:])
        pod_spec = json.loads(kubectl(kc, "-n", SAMPLE_NS, "get", "deployment", deployment, "-o", "json"))
        assert pod_spec["spec"]["template"]["spec"]["containers"][0]["image"] == TRITON_IMAGE

        kubectl(kc, "-n", SAMPLE_NS, "delete", "inferenceservice", sample.name, "--wait=true", "--timeout=60s")
        wait_for("the service's pods to be removed", lambda: not bound_pods(), 90,
                 lambda: kubectl(kc, "-n", SAMPLE_NS, "get", "all", check=False))
    finally:
        kubectl(kc, "delete", "namespace", SAMPLE_NS, "--wait=false", check=False)
        helm(kc, "uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout=60s")


def test_stop_restores_the_host(real_cluster: tuple[ControlPlane, RealNode]) -> None:
    """Runs last: stops the node (the fixture's stop then has nothing left to do) and checks the host."""
    _, node = real_cluster
    snapshot = node.snapshot
    assert snapshot is not None
    created = [c for c in snapshot.absent_cgroups if c.exists()]
    assert created, "the kubelet made no kubepods cgroup: nothing for the restore to prove"
    pids = [p.pid for p in node.procs.values()]
    node.stop()
    assert all(not os.path.exists(f"/proc/{pid}") for pid in pids)
    assert processes_with(str(node.layout.containerd_socket)) == []  # containerd's shims too
    for name, value in snapshot.sysctls.items():
        assert Path("/proc/sys", *name.split(".")).read_text().strip() == value, name
    assert [p for p in snapshot.absent_paths if p.exists()] == []
    assert [c for c in snapshot.absent_cgroups if c.exists()] == []
    assert str(node.layout.workdir) not in Path("/proc/self/mountinfo").read_text()
