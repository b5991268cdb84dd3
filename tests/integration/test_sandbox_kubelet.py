"""The sandbox kubelet on a real API server: Triton pods run, get loopback IPs, serve, queue for GPUs, go away.

The kubelet runs as its own process (the CLI), on its own node and scheduler name, so other sandbox nodes
sharing the session's control plane neither take these pods nor report on them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes.config import new_client_from_config

from batchpilot.adapters.kube import Kube, PodPlacement, placement
from batchpilot_sandbox.cluster.controlplane import ControlPlane
from batchpilot_sandbox.gpu_emulator import model_configmap
from batchpilot_sandbox.kubelet.kube_client import KubeClient, is_already_exists, is_not_found
from batchpilot_sandbox.process import tail
from support import processes_with, wait_for

NODE = "kubelet-test-gpu"
SCHEDULER = "kubelet-test-scheduler"
NAMESPACE = "kubelet-test"
GPUS = 2
Obj = dict[str, Any]
CONFIG_PBTXT = """backend: "python"
max_batch_size: 32
dynamic_batching { max_queue_delay_microseconds: 1000 }
instance_group [{ kind: KIND_CPU, count: 1 }]
"""


@dataclass
class Kubelet:
    proc: subprocess.Popen[bytes]
    workdir: Path
    log: Path
    api: KubeClient


def start_kubelet(kubeconfig: Path, workdir: Path, node: str, scheduler: str) -> Kubelet:
    log = workdir / "kubelet.log"
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "batchpilot_sandbox.kubelet",
        f"--kubeconfig={kubeconfig}",
        f"--node-name={node}",
    ]
    argv += [f"--gpus={GPUS}", f"--workdir={workdir}", f"--scheduler-name={scheduler}", "--backoff-base=1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    api = KubeClient(kubeconfig)

    def node_ready() -> bool:
        assert proc.poll() is None, f"kubelet exited with {proc.returncode}:\n{tail(log, 40)}"
        try:
            conditions = api.read_node(node)["status"]["conditions"]
        except Exception:
            return False
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    wait_for(f"node {node} Ready", node_ready, 60, lambda: tail(log, 40))
    return Kubelet(proc, workdir, log, api)


def stop_kubelet(kubelet: Kubelet, node: str) -> None:
    """SIGTERM the kubelet and drop its Node, leaving the shared control plane as it was."""
    if kubelet.proc.poll() is None:
        kubelet.proc.send_signal(signal.SIGTERM)
        kubelet.proc.wait(timeout=60)
    try:
        kubelet.api.request("DELETE", f"/api/v1/nodes/{node}")
    except Exception as exc:
        if not is_not_found(exc):
            raise
    kubelet.api.close()


def ensure_namespace(api: KubeClient) -> None:
    try:
        api.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    except Exception as exc:
        if not is_already_exists(exc):
            raise


def triton_processes(marker: str) -> list[int]:
    """PIDs of tritonserver or its Python stubs whose command line mentions marker (our workdir)."""
    return processes_with("tritonserver", marker) + processes_with("triton_python_backend_stub", marker)


@pytest.fixture(scope="module")
def kubelet(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubelet]:
    kubelet = start_kubelet(control_plane.kubeconfig, tmp_path_factory.mktemp("kubelet"), NODE, SCHEDULER)
    try:
        ensure_namespace(kubelet.api)
        yield kubelet
        kubelet.api.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}")
    finally:
        stop_kubelet(kubelet, NODE)


def deployment(replicas: int) -> Obj:
    labels = {"app": "emulator"}
    container = {
        "name": "triton",
        "image": "nvcr.io/nvidia/tritonserver:24.08-py3",
        "command": ["tritonserver"],
        "args": [
            "--model-repository=/models",
            "--model-control-mode=explicit",
            "--load-model=emulator",
            "--strict-readiness=true",
            "--metrics-config=summary_latencies=true",
        ],
        "ports": [{"name": "http", "containerPort": 8000}, {"name": "metrics", "containerPort": 8002}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8000}, "periodSeconds": 1},
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "volumeMounts": [
            {"name": "model", "mountPath": "/models/emulator/1"},
            {"name": "config", "mountPath": "/models/emulator/config.pbtxt", "subPath": "config.pbtxt"},
        ],
    }
    volumes = [
        {"name": "model", "configMap": {"name": "emulator-model"}},
        {"name": "config", "configMap": {"name": "emulator-config"}},
    ]
    spec = {"schedulerName": SCHEDULER, "terminationGracePeriodSeconds": 10, "containers": [container]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "emulator", "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {**spec, "volumes": volumes}},
        },
    }


def pods(api: KubeClient) -> list[Obj]:
    items: list[Obj] = api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods").get("items") or []
    return items


def is_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def unschedulable(pod: Obj) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable":
            return c
    return None


def infer(ip: str) -> list[float]:
    body = {"inputs": [{"name": "INPUT", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    request = urllib.request.Request(
        f"http://{ip}:8000/v2/models/emulator/infer", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        data: list[float] = json.loads(resp.read())["outputs"][0]["data"]
        return data


def test_triton_pod_serves_queues_for_gpus_and_goes_away(kubelet: Kubelet, control_plane: ControlPlane) -> None:
    api, base = kubelet.api, f"/api/v1/namespaces/{NAMESPACE}/configmaps"
    api.request("POST", base, model_configmap("emulator-model", NAMESPACE, time_scale=2.0))
    config = {"metadata": {"name": "emulator-config"}, "data": {"config.pbtxt": CONFIG_PBTXT}}
    api.request("POST", base, config)
    deployments = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
    created = time.monotonic()
    api.request("POST", deployments, deployment(replicas=1))

    pod = wait_for(
        "one Running, Ready pod",
        lambda: next(iter(p for p in pods(api) if is_ready(p)), None),
        90,
        lambda: tail(kubelet.log, 40),
    )
    ready_after_s = time.monotonic() - created
    status = pod["status"]
    assert status["phase"] == "Running" and pod["spec"]["nodeName"] == NODE
    assert status["podIP"].startswith("127.0.0.") and status["podIP"] != "127.0.0.1"
    assert status["containerStatuses"][0]["ready"] and status["containerStatuses"][0]["restartCount"] == 0
    assert infer(status["podIP"]) == [1.0, 2.0, 3.0, 4.0]
    print(f"pod Ready {ready_after_s:.1f}s after the Deployment was created, at {status['podIP']}")

    api.request(
        "PATCH", f"{deployments}/emulator", {"spec": {"replicas": GPUS + 1}}, "application/merge-patch+json"
    )

    def gpus_full() -> tuple[list[Obj], Obj] | None:
        current = pods(api)
        ready = [p for p in current if is_ready(p)]
        waiting = [c for p in current if (c := unschedulable(p))]
        return (ready, waiting[0]) if len(current) == GPUS + 1 and len(ready) == GPUS and waiting else None

    ready, condition = wait_for(f"{GPUS} Ready pods and 1 Unschedulable", gpus_full, 90, lambda: tail(kubelet.log, 40))
    assert condition["message"] == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    ips = {p["status"]["podIP"] for p in ready}
    assert len(ips) == GPUS, f"pod IPs must be unique: {ips}"
    for ip in ips:
        assert infer(ip) == [1.0, 2.0, 3.0, 4.0]
    pending = [p for p in pods(api) if unschedulable(p)]
    assert pending[0]["status"]["phase"] == "Pending" and not pending[0]["spec"].get("nodeName")
    # What the control loop reads of the same pods through the operator's own adapter (one list call).
    listed = Kube(new_client_from_config(str(control_plane.kubeconfig))).list_pods(NAMESPACE, "app=emulator")
    assert placement(listed) == PodPlacement(sorted(ips), 1)

    api.request("DELETE", f"{deployments}/emulator", {"propagationPolicy": "Background"})
    wait_for("all pods deleted", lambda: not pods(api), 60, lambda: tail(kubelet.log, 40))
    assert triton_processes(str(kubelet.workdir)) == []
    assert list((kubelet.workdir / "pods").iterdir()) == []


def test_pods_die_with_a_killed_kubelet(control_plane: ControlPlane, tmp_path: Path) -> None:
    """Even SIGKILL of the kubelet (no cleanup code runs) takes its pods' processes down."""
    node, scheduler = "kubelet-kill-test", "kubelet-kill-scheduler"
    kubelet = start_kubelet(control_plane.kubeconfig, tmp_path / "kubelet", node, scheduler)
    try:
        ensure_namespace(kubelet.api)
        container = {"name": "sleep", "image": "busybox", "command": ["sleep", "3600"]}
        pod = {
            "metadata": {"name": "sleeper"},
            "spec": {"schedulerName": scheduler, "containers": [container]},
        }
        kubelet.api.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod)

        def running_pid() -> int | None:
            live = kubelet.api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/sleeper")
            state = (live.get("status") or {}).get("containerStatuses", [{}])[0].get("state", {})
            cid = state.get("running") and live["status"]["containerStatuses"][0]["containerID"]
            return int(cid.rsplit("-", 1)[1]) if cid else None

        pid = wait_for("sleeper running", running_pid, 30, lambda: tail(kubelet.log, 40))
        assert Path(f"/proc/{pid}").exists()
        os.kill(kubelet.proc.pid, signal.SIGKILL)
        kubelet.proc.wait(timeout=10)
        wait_for(f"pid {pid} to exit", lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 10)
    finally:
        try:
            path = f"/api/v1/namespaces/{NAMESPACE}/pods/sleeper"
            kubelet.api.request("DELETE", path, {"gracePeriodSeconds": 0})
        except Exception as exc:
            if not is_not_found(exc):
                raise
        finally:
            stop_kubelet(kubelet, node)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


RECORDER = """import signal, sys, time
path = sys.argv[1]
def stop(*_):
    with open(path, "a") as f:
        f.write(f"sigterm {time.time()}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
with open(path, "a") as f:
    f.write("started\\n")
while True:
    time.sleep(0.1)
"""


def test_pre_stop_hooks_run_before_sigterm(kubelet: Kubelet, tmp_path: Path) -> None:
    """As a real kubelet: a deleted pod's preStop hooks (exec, sleep) finish before its processes get SIGTERM,
    which is what lets clients drop a terminating pod before its server stops (scale-downs fail no request)."""
    exec_log, sleep_log = tmp_path / "exec.log", tmp_path / "sleep.log"
    hook = {"exec": {"command": ["sh", "-c", f"echo prestop >> {exec_log}"]}}
    containers = [
        {"name": "exec-hook", "image": "python", "command": [sys.executable, "-c", RECORDER, str(exec_log)],
         "lifecycle": {"preStop": hook}},
        {"name": "sleep-hook", "image": "python", "command": [sys.executable, "-c", RECORDER, str(sleep_log)],
         "lifecycle": {"preStop": {"sleep": {"seconds": 2}}}},
    ]
    pod = {"metadata": {"name": "hooks"},
           "spec": {"schedulerName": SCHEDULER, "terminationGracePeriodSeconds": 20, "containers": containers}}
    path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    kubelet.api.request("POST", path, pod)
    started = lambda: exec_log.exists() and sleep_log.exists() and "started" in sleep_log.read_text()  # noqa: E731
    wait_for("both containers started", started, 60, lambda: tail(kubelet.log, 40))
    deleted = time.time()
    kubelet.api.request("DELETE", f"{path}/hooks")
    wait_for("the pod gone", lambda: not any(p["metadata"]["name"] == "hooks" for p in pods(kubelet.api)), 60,
             lambda: tail(kubelet.log, 40))
    assert [line.split()[0] for line in exec_log.read_text().splitlines()] == ["started", "prestop", "sigterm"]
    sigterm_at = float(sleep_log.read_text().splitlines()[-1].split()[1])
    assert sigterm_at - deleted >= 2.0, "SIGTERM came before the preStop sleep ended"
