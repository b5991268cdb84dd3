"""The operator's model refuses what the CRD's rules refuse (each rule has its pydantic twin), and the apply body
survives the API server's YAML reading. The API server's side: tests/integration/test_bad_input.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from batchpilot.adapters.kube import apply_body
from batchpilot.api.parse import SpecError, parse_spec

BASE: dict[str, Any] = {"model": {"name": "m", "repository": {"configMap": "m-files"}}, "slo": {"latencyMs": 50}}


def with_runtime(**runtime: Any) -> dict[str, Any]:
    return {**BASE, "runtime": runtime}


@pytest.mark.parametrize(("runtime", "says"), [
    pytest.param({"serviceAccountName": "my_sa"}, "serviceAccountName", id="object name with an underscore"),
    pytest.param({"tolerations": [{"value": "x"}]}, "without key must use operator Exists", id="keyless Equal"),
    pytest.param({"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}, "Exists takes no value",
                 id="Exists with a value"),
    pytest.param({"tolerations": [{"key": "k", "tolerationSeconds": 5}]}, "NoExecute only",
                 id="tolerationSeconds without NoExecute"),
    pytest.param({"nodeSelector": {"gpu type": "h100"}}, "not a label key", id="nodeSelector key"),
    pytest.param({"nodeSelector": {"gpu": "h100 80gb"}}, "nodeSelector", id="nodeSelector value"),
    pytest.param({"resources": {"limits": {"gpu": 1}}}, "not a resource a Triton pod takes", id="unknown resource"),
    pytest.param({"resources": {"requests": {"hugepages-2Mi": 0}}}, "not a resource", id="hugepages"),
    pytest.param({"resources": {"limits": {"nvidia.com/gpu": "500m"}}}, "must be a whole number", id="half a GPU"),
    pytest.param({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}}, "must be <= limits.cpu",
                 id="request above limit"),
    pytest.param({"resources": {"requests": {"nvidia.com/gpu": 1}}}, "needs an equal limits.nvidia.com/gpu",
                 id="GPU request without limit"),
    pytest.param({"resources": {"limits": {"memory": -1}}}, "greater than or equal to 0", id="negative quantity"),
    pytest.param({"env": [{"name": "A", "value": "1"}, {"name": "A"}]}, "given twice: A", id="env name twice"),
    pytest.param({"imagePullSecrets": [{"name": "s"}, {"name": "s"}]}, "given twice: s", id="pull secret twice"),
])
def test_the_model_refuses_what_the_crd_refuses(runtime: dict[str, Any], says: str) -> None:
    with pytest.raises(SpecError, match=says.replace(".", r"\.")):
        parse_spec(with_runtime(**runtime))


def test_preferred_batch_sizes_fit_the_models_batch() -> None:
    with pytest.raises(SpecError, match=r"preferredBatchSizes \[64\] must be <= spec.model.maxBatchSize \(32\)"):
        parse_spec({**BASE, "batching": {"preferredBatchSizes": [4, 64]}})
    parse_spec({**BASE, "model": {**BASE["model"], "maxBatchSize": 0}, "batching": {"preferredBatchSizes": [64]}})


def test_whole_gpus_and_matching_requests_are_served() -> None:
    spec = parse_spec(with_runtime(resources={"requests": {"cpu": "500m", "nvidia.com/gpu": "2"},
                                              "limits": {"cpu": 1, "nvidia.com/gpu": 2, "memory": "2Gi"}},
                                   tolerations=[{"operator": "Exists"}], nodeSelector={"nvidia.com/gpu.product": "H100"}))
    assert spec.runtime.gpus == 2


@pytest.mark.parametrize("value", ["hello \U0001f680", "tab\tand\nnewline", "c1 \x85 \x9f and \u2028", "quote \" \\"])
def test_the_apply_body_reads_back_the_same_as_yaml(value: str) -> None:
    manifest = {"kind": "ConfigMap", "data": {"k": value}}
    body = apply_body(manifest)
    assert yaml.safe_load(body.decode()) == manifest
    assert json.loads(body) == manifest
