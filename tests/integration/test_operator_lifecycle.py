"""The operator on a real API server: kubectl apply an InferenceService, get serving Triton pods; delete it,
and every child (processes too) is gone."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml

from batchpilot_sandbox.cluster.stack import Sandbox
from batchpilot_sandbox.demo.sample import SampleService
from batchpilot_sandbox.process import free_port, tail
from support import http_status, infer, processes_with, wait_for

SAMPLE = SampleService(name="lifecycle", namespace="it-lifecycle", model="emulator", max_replicas=2)


def get(sandbox: Sandbox, *args: str) -> Any:
    out = sandbox.kubectl("get", "-n", SAMPLE.namespace, "-o", "json", *args, check=False)
    return json.loads(out) if out else None


def operator_log(sandbox: Sandbox) -> str:
    return "operator log:\n" + tail(sandbox.logs / "operator.log", 40) + "\nkubelet log:\n" + \
        tail(sandbox.logs / "kubelet.log", 20)


def test_apply_serves_and_delete_cleans_up(sandbox: Sandbox) -> None:
    sandbox.kubectl("apply", "-f", "-", stdin=SAMPLE.yaml())
    isvc = get(sandbox, "inferenceservice", SAMPLE.name)
    uid = isvc["metadata"]["uid"]

    deployment = wait_for("the Deployment", lambda: get(sandbox, "deployment", SAMPLE.name), 60,
                          lambda: operator_log(sandbox))
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("InferenceService", uid, True)
    assert deployment["spec"]["replicas"] == SAMPLE.min_replicas
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--model-control-mode=explicit" in args and "--metrics-config=summary_latencies=true" in args
    assert get(sandbox, "service", SAMPLE.name)["spec"]["ports"][0]["port"] == 8000

    selector = f"batchpilot.dev/inferenceservice={SAMPLE.name}"

    def ready_pod() -> dict[str, Any] | None:
        pods = (get(sandbox, "pods", "-l", selector) or {}).get("items", [])
        for pod in pods:
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            if pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True":
                return dict(pod)
        return None

    pod = wait_for("a Running, Ready Triton pod", ready_pod, 180, lambda: operator_log(sandbox))
    replica_sets = get(sandbox, "replicasets", "-l", selector)["items"]
    assert [rs["metadata"]["ownerReferences"][0]["name"] for rs in replica_sets] == [SAMPLE.name]
    ip = pod["status"]["podIP"]
    assert ip.startswith("127.") and ip != "127.0.0.1"
    assert http_status(f"http://{ip}:8000/v2/health/ready") == 200
    assert http_status(f"http://{ip}:8000/v2/models/{SAMPLE.model}/ready") == 200
    assert infer(f"{ip}:8000", SAMPLE.model) == [1.0, 2.0, 3.0, 4.0]
    # the trailing space ends the address: 127.0.0.5 is not 127.0.0.50 (another sandbox may run a pod there)
    assert processes_with("tritonserver", f"--http-address={ip} ")

    status = wait_for("status from the operator", lambda: (get(sandbox, "inferenceservice", SAMPLE.name)
                                                          or {}).get("status", {}).get("selector"), 60)
    assert status == selector
    url = get(sandbox, "inferenceservice", SAMPLE.name)["status"]["url"]
    service = get(sandbox, "service", SAMPLE.name)
    assert url == (f"http://{SAMPLE.name}.{SAMPLE.namespace}.svc:{service['spec']['ports'][0]['port']}"
                   f"/v2/models/{SAMPLE.model}/infer")
    assert service["spec"]["ports"][0]["name"] == "http"
    # What the user applied is what the API server holds: the operator never writes spec.
    live = get(sandbox, "inferenceservice", SAMPLE.name)
    assert live["spec"]["slo"] == {"latencyMs": SAMPLE.latency_ms, "percentile": 95}
    diff = sandbox.kubectl("diff", "-f", "-", stdin=yaml.safe_dump(SAMPLE.inference_service()), check=False)
    assert diff == "", diff

    sandbox.kubectl("delete", "inferenceservice", "-n", SAMPLE.namespace, SAMPLE.name, "--wait=true")

    def all_gone() -> bool:
        return all(not (get(sandbox, kind, "-l", selector) or {}).get("items")
                   for kind in ("deployments", "replicasets", "pods", "services", "configmaps"))

    wait_for("Deployment, ReplicaSet, Pods, Service and ConfigMap to be deleted", all_gone, 120,
             lambda: operator_log(sandbox))
    wait_for("the pod's tritonserver to exit", lambda: not processes_with("tritonserver", f"--http-address={ip} "),
             60)
    assert http_status(f"http://{ip}:8000/v2/health/ready") is None


@contextmanager
def hung_http_server() -> Iterator[tuple[str, threading.Event]]:
    """A server that accepts connections and never answers: each query the operator sends it waits out its
    timeout. Yields its URL and an event set at each connection (cleared by the caller)."""
    connected = threading.Event()
    held: list[socket.socket] = []
    listener = socket.create_server(("127.0.0.1", free_port()))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)
            connected.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", connected
    finally:
        stop.set()
        thread.join(5)
        for conn in [*held, listener]:
            conn.close()


def test_a_service_deleted_mid_tick_is_gone_once_the_tick_ends(sandbox: Sandbox) -> None:
    """A tick running when its service is deleted holds kopf's finalizer until kopf sees the tick end; kopf looked
    again only after 60 s by default, so `kubectl delete --wait` hung a minute (CI, the real node's test). The tick
    here waits on a Prometheus that never answers (the reader's 5 s timeout), and the delete lands inside it."""
    sample = SampleService(name="mid-tick", namespace="it-mid-tick", model="emulator", max_replicas=1)
    with hung_http_server() as (url, connected):
        manifests = sample.manifests()
        manifests[-1]["spec"]["prometheus"] = {"url": url}
        sandbox.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(manifests))
        try:
            wait_for("a tick querying the hung Prometheus", connected.is_set, 60, lambda: operator_log(sandbox))
            connected.clear()
            wait_for("the next tick's query", connected.is_set, 60, lambda: operator_log(sandbox))
            started = time.monotonic()
            # kubectl fails past 30 s: half kopf's default 60 s re-check, and far above a tick's 5 s query
            sandbox.kubectl("delete", "inferenceservice", "-n", sample.namespace, sample.name, "--wait=true",
                            "--timeout=30s")
            print(f"deleted {time.monotonic() - started:.1f} s after a tick began its query")
        finally:
            sandbox.kubectl("delete", "namespace", sample.namespace, "--wait=false", check=False)
