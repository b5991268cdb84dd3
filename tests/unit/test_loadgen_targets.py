"""Which pods the load generator targets, and what each request carries."""

from __future__ import annotations

import json
import random
from typing import Any

import aiohttp

from batchpilot_sandbox.loadgen.cli import InferInput
from batchpilot_sandbox.loadgen.runner import error_kind
from batchpilot_sandbox.loadgen.targets import ready_pod_targets


def pod(ip: str | None, ready: str = "True", deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"p-{ip}"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": ready}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "status": status}


def test_only_ready_pods_with_an_ip_that_stay_are_targets() -> None:
    pods = [
        pod("10.0.0.2"),
        pod("10.0.0.1"),
        pod(None),
        pod("10.0.0.3", ready="False"),
        pod("10.0.0.4", deleting=True),
        {"metadata": {"name": "bare"}},
    ]
    assert ready_pod_targets(pods) == ["10.0.0.1:8000", "10.0.0.2:8000"]
    assert ready_pod_targets(pods, port=9000) == ["10.0.0.1:9000", "10.0.0.2:9000"]


def test_infer_body_is_kserve_v2_json() -> None:
    body = json.loads(InferInput().body(random.Random(0)))
    (tensor,) = body["inputs"]
    assert (tensor["name"], tensor["shape"], tensor["datatype"]) == ("INPUT", [1, 4], "FP32")
    assert len(tensor["data"]) == 4 and all(isinstance(x, float) for x in tensor["data"])
    ints = json.loads(InferInput("IDS", (2, 3), "int64").body(random.Random(0)))["inputs"][0]
    assert (
        ints["datatype"] == "INT64"
        and len(ints["data"]) == 6
        and all(isinstance(x, int) for x in ints["data"])
    )


def test_errors_fall_in_kinds() -> None:
    assert error_kind(TimeoutError()) == "timeout"
    assert error_kind(aiohttp.ServerTimeoutError()) == "timeout"
    assert error_kind(ConnectionRefusedError()) == "connection"
    assert error_kind(aiohttp.ServerDisconnectedError()) == "connection"
    assert error_kind(aiohttp.ClientPayloadError()) == "other"
