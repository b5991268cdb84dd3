"""storageUri end to end in the sandbox: the operator renders the fetch-model init container, the sandbox
kubelet runs the real fetcher against a real S3 API (moto_server) or an HTTPS site with a private CA, and the
real tritonserver serves what it fetched."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from batchpilot_sandbox.cluster import certs
from batchpilot_sandbox.cluster.stack import Sandbox
from batchpilot_sandbox.demo.sample import SampleService
from batchpilot_sandbox.gpu_emulator import model_files
from batchpilot_sandbox.kubelet.pod_layout import container_log
from batchpilot_sandbox.process import tail
from storage_servers import SECRET_AUTH, SECRET_KEY, Site, https_site, moto_s3, s3_client, tar_gz, upload
from support import infer, release_namespace, wait_for

MODEL = "emulator"
BUCKET = "models"
PREFIX = "vision/emulator"
ARCHIVE = "/private/emulator.tar.gz"
POD_WAIT_S = 240
Deploy = Callable[[str, str, dict[str, str]], None]


def model_directory() -> dict[str, bytes]:
    """The GPU emulator's model directory (version 1 as its ConfigMap holds it), plus a config.pbtxt that
    must not reach Triton: Batchpilot renders its own."""
    files = {f"1/{name}": text.encode() for name, text in model_files().items()}
    return {**files, "config.pbtxt": b'backend: "not-a-backend"\n'}


@pytest.fixture(scope="module")
def site(pki: certs.Pki) -> Iterator[Site]:
    """The model directory as a .tar.gz that needs SECRET_AUTH, over HTTPS with a certificate from pki's CA."""
    with https_site(pki, Site("", {ARCHIVE: tar_gz(model_directory())}, private={ARCHIVE})) as served:
        yield served


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto_server with the model directory under s3://BUCKET/PREFIX."""
    with moto_s3(tmp_path_factory.mktemp("moto")) as endpoint:
        upload(s3_client(endpoint), BUCKET, {f"{PREFIX}/{k}": v for k, v in model_directory().items()})
        yield endpoint


@pytest.fixture
def deploy(sandbox: Sandbox) -> Iterator[Deploy]:
    """Applies a namespace, a credentials Secret and an InferenceService (all named `name`) serving the model
    from a storageUri; deletes the namespace afterwards, pods included, so their GPUs are free again."""
    namespaces: list[str] = []

    def run(name: str, storage_uri: str, credentials: dict[str, str]) -> None:
        namespaces.append(name)
        sample = SampleService(name=name, namespace=name, model=MODEL, latency_ms=1000, max_batch_size=4,
                               with_profile=False, max_replicas=1)
        isvc = sample.inference_service()
        isvc["spec"]["model"]["repository"] = {"storageUri": storage_uri, "credentialsSecret": name}
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": name},
                  "type": "Opaque", "stringData": credentials}
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        sandbox.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([namespace, secret, isvc]))

    yield run
    for namespace in namespaces:
        release_namespace(sandbox, namespace)


def pods(sandbox: Sandbox, name: str) -> list[dict[str, Any]]:
    out = sandbox.kubectl("get", "pods", "-n", name, "-l", f"batchpilot.dev/inferenceservice={name}",
                          "-o", "json", check=False)
    return list(json.loads(out)["items"]) if out else []


def fetch_log(sandbox: Sandbox, name: str, pod: str) -> str:
    """What the fetch-model init container wrote (the sandbox's `kubectl logs -c fetch-model`)."""
    return container_log(sandbox.config.workdir / "kubelet", name, pod, "fetch-model").read_text()


def diagnosis(sandbox: Sandbox, name: str) -> str:
    lines = []
    for pod in pods(sandbox, name):
        statuses = pod["status"].get("initContainerStatuses", []) + pod["status"].get("containerStatuses", [])
        lines.append(f"pod {pod['metadata']['name']} {pod['status'].get('phase')}: "
                     + json.dumps({s["name"]: s["state"] for s in statuses}))
        try:
            lines.append("fetch-model log:\n" + fetch_log(sandbox, name, pod["metadata"]["name"])[-3000:])
        except FileNotFoundError as e:
            lines.append(str(e))
    return "\n".join([*lines, "operator log:", tail(sandbox.logs / "operator.log", 30),
                      "kubelet log:", tail(sandbox.logs / "kubelet.log", 30)])


def ready_pod(sandbox: Sandbox, name: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        for pod in pods(sandbox, name):
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            if pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True":
                return pod
        return None

    return wait_for(f"a Running, Ready Triton pod of {name}", ready, POD_WAIT_S, lambda: diagnosis(sandbox, name))


def assert_fetched_and_serving(sandbox: Sandbox, name: str, pod: dict[str, Any], secret: str) -> str:
    """The init container completed, its log says what landed (no credential in it), Triton answers; returns
    the fetch log."""
    [fetch] = pod["status"]["initContainerStatuses"]
    assert fetch["name"] == "fetch-model", fetch
    assert fetch["state"]["terminated"]["exitCode"] == 0, fetch
    assert fetch["state"]["terminated"]["reason"] == "Completed", fetch
    log = fetch_log(sandbox, name, pod["metadata"]["name"])
    assert "skipped config.pbtxt" in log and "done: 4 files," in log, log
    assert secret not in log, "a credential was printed"
    assert infer(f"{pod['status']['podIP']}:8000", MODEL) == [1.0, 2.0, 3.0, 4.0]
    return log


def test_s3_prefix_is_fetched_and_served(sandbox: Sandbox, s3_endpoint: str, deploy: Deploy) -> None:
    name = "su-s3"
    deploy(name, f"s3://{BUCKET}/{PREFIX}", {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_REGION": "us-east-1",
    })
    pod = ready_pod(sandbox, name)
    log = assert_fetched_and_serving(sandbox, name, pod, SECRET_KEY)
    assert f"endpoint {s3_endpoint}" in log, log


def test_https_archive_behind_a_private_ca_is_fetched_and_served(
    sandbox: Sandbox, site: Site, pki: certs.Pki, deploy: Deploy
) -> None:
    name = "su-https"
    deploy(name, f"{site.base}{ARCHIVE}", {"CA_BUNDLE": pki.ca_cert.read_text(), "HTTP_AUTHORIZATION": SECRET_AUTH})
    pod = ready_pod(sandbox, name)
    assert_fetched_and_serving(sandbox, name, pod, SECRET_AUTH)
    assert (ARCHIVE, SECRET_AUTH) in site.seen
