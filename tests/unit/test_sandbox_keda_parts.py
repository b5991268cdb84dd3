"""The pure parts of the KEDA harness: the aggregation objects kube-apiserver routes by, and the host address."""

from __future__ import annotations

import base64
import ipaddress

import pytest

from batchpilot_sandbox.cluster import keda


def test_apiservice_routes_to_the_endpoints_port_named_like_the_service_port() -> None:
    objects = {o["kind"]: o for o in keda.aggregation_objects("192.0.2.2", 6443, b"CA PEM")}
    service, endpoints, apiservice = objects["Service"], objects["Endpoints"], objects["APIService"]
    # kube-apiserver (aggregator routing) takes the Service port the APIService names, then the Endpoints
    # port of the same name: a mismatch reads as "no endpoints available".
    svc_port = next(p for p in service["spec"]["ports"] if p["port"] == apiservice["spec"]["service"]["port"])
    assert endpoints["subsets"][0]["ports"] == [{"name": svc_port["name"], "port": 6443}]
    assert endpoints["subsets"][0]["addresses"] == [{"ip": "192.0.2.2"}]
    assert "selector" not in service["spec"]  # else the endpoints controller would rewrite our Endpoints
    assert base64.b64decode(apiservice["spec"]["caBundle"]) == b"CA PEM"
    assert apiservice["metadata"]["name"] == keda.API_SERVICE == "v1beta1.external.metrics.k8s.io"


def test_host_ip_is_routable_or_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(keda.HOST_IP_ENV, raising=False)
    try:
        ip = ipaddress.ip_address(keda.routable_host_ip())
    except keda.KedaError as e:  # a host without a default route: the error names the way out
        assert keda.HOST_IP_ENV in str(e)
    else:
        assert not (ip.is_loopback or ip.is_link_local or ip.is_unspecified)
    monkeypatch.setenv(keda.HOST_IP_ENV, "198.51.100.7")
    assert keda.routable_host_ip() == "198.51.100.7"
