"""spec.batching.rejectLateRequests: the queue timeout, its validation and the config.pbtxt it renders."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.build.children import config_map, deployment
from batchpilot.control.queue_policy import late_request_timeout_us, queue_timeout_us

PROFILE = {"points": [{"batchSize": 1, "latencyMs": 4.0}, {"batchSize": 16, "latencyMs": 20.0},
                      {"batchSize": 32, "latencyMs": 43.0}]}


def spec(batching: dict[str, Any] | None = None, **model: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({
        "model": {"name": "resnet", "repository": {"configMap": "files"}, "maxBatchSize": 32, "profile": PROFILE,
                  **model},
        "slo": {"latencyMs": 200}, "batching": {"rejectLateRequests": True, **(batching or {})}})


@pytest.mark.parametrize(("slo_ms", "full_ms", "want_us"), [
    (200.0, 43.0, 157_000),  # the latest start that still finishes a full batch within the SLO
    (200.0, 199.0, 20_000),  # never below a tenth of the SLO
    (200.0, 500.0, 20_000),  # a full batch slower than the SLO: still a tenth, not zero or negative
    (0.005, 0.0, 5),
])
def test_timeout_is_the_slo_less_a_full_batch(slo_ms: float, full_ms: float, want_us: int) -> None:
    assert late_request_timeout_us(slo_ms, full_ms) == want_us


def test_the_full_batch_time_comes_from_the_profile_at_max_batch_size() -> None:
    assert queue_timeout_us(spec()) == 157_000
    assert queue_timeout_us(spec(maxBatchSize=16)) == 180_000
    # between points: interpolated (batch 24 -> 31.5 ms)
    assert queue_timeout_us(spec(maxBatchSize=24)) == 168_500


@pytest.mark.parametrize("batching", [{"rejectLateRequests": False}, {"mode": "fixed", "rejectLateRequests": False}])
def test_off_unless_asked(batching: dict[str, Any]) -> None:
    assert queue_timeout_us(spec(batching)) is None
    assert "default_queue_policy" not in config_map("resnet", "ml", spec(batching))["data"]["config.pbtxt"]


@pytest.mark.parametrize("mode", ["auto", "fixed"])
def test_config_pbtxt_rejects_late_requests_inside_dynamic_batching(mode: str) -> None:
    text = config_map("resnet", "ml", spec({"mode": mode}))["data"]["config.pbtxt"]
    block = text[text.index("dynamic_batching {"):text.index("instance_group")]
    assert "default_queue_policy {" in block
    assert "timeout_action: REJECT" in block and "default_timeout_microseconds: 157000" in block


def test_turning_it_on_rolls_the_pods() -> None:
    on, off = deployment("r", "ml", spec(), 1), deployment("r", "ml", spec({"rejectLateRequests": False}), 1)
    annotations = [d["spec"]["template"]["metadata"]["annotations"] for d in (on, off)]
    assert annotations[0] != annotations[1]


@pytest.mark.parametrize(("batching", "model", "expected"), [
    ({"mode": "off"}, {}, "rejectLateRequests needs dynamic batching"),
    ({}, {"profile": None}, "spec.model.profile"),
    ({}, {"maxBatchSize": 0}, "spec.model.maxBatchSize > 0"),
])
def test_refused_where_it_cannot_apply(batching: dict[str, Any], model: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        spec(batching, **model)
