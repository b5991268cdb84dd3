"""Prometheus finds annotated, running pods through a real API server and labels their series."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from prometheus_api_client import PrometheusConnect

from batchpilot.build.names import SERVICE_LABEL
from batchpilot_sandbox.cluster.controlplane import ControlPlane
from batchpilot_sandbox.cluster.prometheus import (
    FAST_DISCOVERY,
    TRITON_JOB,
    PrometheusServer,
    find_prometheus,
    render_config,
)
from batchpilot_sandbox.loadgen.cli import discover_targets
from support import metrics_stub, wait_for

pytestmark = pytest.mark.integration

SCRAPED_IP, PLAIN_IP = "127.0.0.218", "127.0.0.219"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The session's `control_plane` when conftest provides one, else one of our own."""
    try:
        shared = request.getfixturevalue("control_plane")
    except pytest.FixtureLookupError:
        shared = None
    if shared is not None:
        yield shared
        return
    with ControlPlane(tmp_path_factory.mktemp("k8s") / "control-plane") as own:
        yield own


def pod(name: str, annotations: dict[str, str], port: int) -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {SERVICE_LABEL: "resnet"}, "annotations": annotations},
        # No scheduler picks this name, so no kubelet ever runs these pods: the test writes their status.
        "spec": {
            "schedulerName": "nobody",
            "containers": [
                {
                    "name": "triton",
                    "image": "triton:test",
                    "ports": [{"containerPort": p} for p in (8000, 8001, port)],
                }
            ],
        },
    }


def running(core: client.CoreV1Api, namespace: str, name: str, ip: str) -> None:
    status = {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    core.patch_namespaced_pod_status(name, namespace, {"status": status})


def active_targets(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/targets?state=active", timeout=5) as resp:
        targets: list[dict[str, Any]] = json.load(resp)["data"]["activeTargets"]
    return [t for t in targets if t["labels"].get("job") == TRITON_JOB]


def test_kubernetes_sd_scrapes_annotated_running_pods(cluster: Any, tmp_path: Path) -> None:
    find_prometheus()
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    ns = f"prom-sd-{uuid.uuid4().hex[:6]}"
    namespace: Any = {"metadata": {"name": ns}}
    core.create_namespace(namespace)
    try:
        with metrics_stub(SCRAPED_IP, 5) as scraped, metrics_stub(PLAIN_IP, 9) as plain:
            port, plain_port = int(scraped.split(":")[1]), int(plain.split(":")[1])
            scrape = {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(port),
                "prometheus.io/path": "/metrics",
            }
            core.create_namespaced_pod(ns, pod("resnet-0", scrape, port))
            core.create_namespaced_pod(ns, pod("resnet-1", scrape, port))  # stays Pending, no IP
            core.create_namespaced_pod(ns, pod("plain", {}, plain_port))
            running(core, ns, "resnet-0", SCRAPED_IP)
            running(core, ns, "plain", PLAIN_IP)
            # The load generator wants every ready pod of the service, annotated for scraping or not.
            assert discover_targets(cluster.kubeconfig, ns, "resnet") == [
                f"{SCRAPED_IP}:8000",
                f"{PLAIN_IP}:8000",
            ]

            cfg = render_config(
                cluster.server,
                cluster.ca_file,
                cluster.client_cert,
                cluster.client_key,
                0.5,
                [],
                namespaces=[ns],
            )
            with PrometheusServer(tmp_path, cfg, extra_args=FAST_DISCOVERY) as prom:
                api = PrometheusConnect(prom.url)
                query = f'stub_requests_total{{job="{TRITON_JOB}"}}'
                (series,) = wait_for("a series from the annotated pod", lambda: api.custom_query(query), 60)
                labels = series["metric"]
                assert (labels["namespace"], labels["pod"], labels["inferenceservice"]) == (
                    ns,
                    "resnet-0",
                    "resnet",
                )
                assert labels["instance"] == scraped and series["value"][1] == "5"
                (target,) = active_targets(prom.url)  # three container ports, one target
                assert target["health"] == "up"

                core.delete_namespaced_pod("resnet-0", ns)
                wait_for("the deleted pod's target to go", lambda: not active_targets(prom.url), 30)
    finally:
        core.delete_namespace(ns)
        core.api_client.close()
