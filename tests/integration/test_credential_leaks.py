"""Credentials stay in the fetcher's environment: with a credentialsSecret whose values are distinctive strings
that the store refuses, the fetch fails, the failure reaches the InferenceService's status and a Warning Event,
and none of those values appears in any Event, any status field (the InferenceService's and its pods'), the
operator's log, or the fetch-model container's log.

Two refusals, each by a real server: S3 (moto_server checking keys against its IAM: 403 InvalidAccessKeyId) and
an HTTPS site behind a private CA (401 for a wrong Authorization header). Each value carries a random marker,
searched case-insensitively, so a value printed in part or in upper case is caught too.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from batchpilot.build.names import FETCH_CONTAINER
from batchpilot_sandbox.cluster import certs
from batchpilot_sandbox.cluster.stack import Sandbox
from batchpilot_sandbox.demo.sample import SampleService
from batchpilot_sandbox.kubelet.pod_layout import container_log
from batchpilot_sandbox.process import tail
from storage_servers import Site, https_site, moto_s3
from support import release_namespace, wait_for

ARCHIVE = "/private/model.tar.gz"
FAILURE_WAIT_S = 120
MARKERS = {key: secrets.token_hex(6) for key in
           ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "HTTP_AUTHORIZATION")}
"""A random marker per credential, fresh each run (so no earlier run's output can match)."""
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": f"AKIA{MARKERS['AWS_ACCESS_KEY_ID'].upper()}",
    "AWS_SECRET_ACCESS_KEY": f"secret/{MARKERS['AWS_SECRET_ACCESS_KEY']}+must-not-leak",
    "AWS_SESSION_TOKEN": f"session-{MARKERS['AWS_SESSION_TOKEN']}-must-not-leak",
}
BEARER = f"Bearer bearer-{MARKERS['HTTP_AUTHORIZATION']}-must-not-leak"


@pytest.fixture(scope="module")
def site(pki: certs.Pki) -> Iterator[Site]:
    """An archive that needs storage_servers.SECRET_AUTH, which BEARER is not: every request gets 401."""
    with https_site(pki, Site("", {ARCHIVE: b"never served"}, private={ARCHIVE})) as served:
        yield served


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto_server that checks every request's key against its IAM, where S3_CREDENTIALS's key is unknown."""
    with moto_s3(tmp_path_factory.mktemp("moto"), authenticate=True) as endpoint:
        yield endpoint


def leaks(text: str) -> list[str]:
    """The credentials whose marker appears in text."""
    lowered = text.lower()
    return [key for key, marker in MARKERS.items() if marker in lowered]


class Failing:
    """One InferenceService (namespace, Secret and service all named `name`) whose fetch is refused."""

    def __init__(self, sandbox: Sandbox, name: str, storage_uri: str, credentials: dict[str, str]) -> None:
        self.sandbox, self.name = sandbox, name
        sample = SampleService(name=name, namespace=name, model="emulator", with_profile=False, max_replicas=1)
        isvc = sample.inference_service()
        isvc["spec"]["model"]["repository"] = {"storageUri": storage_uri, "credentialsSecret": name}
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": name},
                  "type": "Opaque", "stringData": credentials}
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        sandbox.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([namespace, secret, isvc]))

    def get(self, *args: str) -> Any:
        return json.loads(self.sandbox.kubectl("get", *args, "-n", self.name, "-o", "json"))

    def ready(self) -> dict[str, Any]:
        conditions = self.get("inferenceservice", self.name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "Ready"), {})

    def fetch_failed(self) -> dict[str, Any] | None:
        """The Warning Event the operator posts once the Ready condition says the fetch failed."""
        if self.ready().get("reason") != "ModelFetchFailed":
            return None
        return next((e for e in self.get("events")["items"] if e["reason"] == "ModelFetchFailed"), None)

    def evidence(self) -> dict[str, str]:
        """Everything the credentials must stay out of, by where it was read."""
        pods = self.get("pods")["items"]
        found = {
            "events": json.dumps(self.get("events")["items"]),
            "InferenceService status": json.dumps(self.get("inferenceservice", self.name).get("status")),
            "pod statuses": json.dumps([p["status"] for p in pods]),
            "operator log": (self.sandbox.logs / "operator.log").read_text(errors="replace"),
        }
        for pod in pods:
            log = container_log(self.sandbox.config.workdir / "kubelet", self.name, pod["metadata"]["name"],
                                FETCH_CONTAINER)
            found[f"{FETCH_CONTAINER} log of {pod['metadata']['name']}"] = log.read_text(errors="replace")
        return found

    def diagnosis(self) -> str:
        return (f"Ready: {self.ready()}\noperator log:\n{tail(self.sandbox.logs / 'operator.log', 30)}\n"
                f"kubelet log:\n{tail(self.sandbox.logs / 'kubelet.log', 20)}")

    def delete(self) -> None:
        release_namespace(self.sandbox, self.name)


def assert_refused_without_leaking(service: Failing, refusal: str) -> None:
    """Waits for the fetch failure to reach status and Events, then looks for every marker everywhere."""
    event = wait_for(f"a ModelFetchFailed Event for {service.name}", service.fetch_failed, FAILURE_WAIT_S,
                     service.diagnosis)
    assert refusal in event["message"] and refusal in service.ready()["message"], (event, service.ready())
    evidence = service.evidence()
    assert any(k.startswith(FETCH_CONTAINER) and "fetch failed:" in v for k, v in evidence.items()), evidence.keys()
    leaked = {where: keys for where, text in evidence.items() if (keys := leaks(text))}
    assert not leaked, f"credentials printed: {leaked}"


def test_a_refused_s3_key_is_reported_without_the_credentials(sandbox: Sandbox, s3_endpoint: str) -> None:
    service = Failing(sandbox, "leak-s3", "s3://models/vision/emulator",
                      {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint, "AWS_REGION": "us-east-1"})
    try:
        assert_refused_without_leaking(service, "access denied (InvalidAccessKeyId)")
    finally:
        service.delete()


def test_a_refused_authorization_header_is_reported_without_it(sandbox: Sandbox, site: Site,
                                                                pki: certs.Pki) -> None:
    service = Failing(sandbox, "leak-https", f"{site.base}{ARCHIVE}",
                      {"HTTP_AUTHORIZATION": BEARER, "CA_BUNDLE": pki.ca_cert.read_text()})
    try:
        assert_refused_without_leaking(service, "answered 401")
        assert (ARCHIVE, BEARER) in site.seen, "the fetcher never sent the Secret's header: nothing was tested"
    finally:
        service.delete()
