"""Argo CD's health check of an InferenceService, as Argo CD's own tests run a resource customization: every
case of health_test.yaml through health.lua in a real Lua 5.1 interpreter, on objects captured live in the
sandbox (tests/integration/test_runtime_failures.py writes them with BATCHPILOT_CAPTURE_ARGOCD=1)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from argocd_health import CHECK, health

CASES = yaml.safe_load((CHECK / "health_test.yaml").read_text())["tests"]


def load(path: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((CHECK / path).read_text())
    return obj


@pytest.mark.parametrize("case", CASES, ids=[c["inputPath"] for c in CASES])
def test_health_of_captured_objects(case: dict[str, Any]) -> None:
    verdict = health(load(case["inputPath"]))
    assert verdict["status"] == case["healthStatus"]["status"], verdict


def test_every_testdata_file_is_a_case() -> None:
    files = {f"testdata/{p.name}" for p in (CHECK / "testdata").glob("*.yaml")}
    assert files == {c["inputPath"] for c in CASES}


def test_a_spec_edit_not_acted_on_yet_is_progressing() -> None:
    obj = load("testdata/healthy.yaml")
    edited = copy.deepcopy(obj)
    edited["metadata"]["generation"] = obj["status"]["observedGeneration"] + 1
    assert health(obj)["status"] == "Healthy"
    assert health(edited) == {"status": "Progressing",
                              "message": f"Waiting for the operator to act on generation {edited['metadata']['generation']}"}


def test_a_retried_apply_is_progressing_with_its_reason() -> None:
    obj = copy.deepcopy(load("testdata/healthy.yaml"))
    for c in obj["status"]["conditions"]:
        if c["type"] == "Reconciling":
            c.update(status="True", reason="ApiUnavailable", message="the API server answered 503")
    assert health(obj) == {"status": "Progressing", "message": "ApiUnavailable: the API server answered 503"}
