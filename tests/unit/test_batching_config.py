"""Pure edits of Triton's model config, the tuning kept within bounds, and the planner's batching choice."""

from __future__ import annotations

from typing import Any

import pytest

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.build.batching import instance_count, queue_delay_us, tuning_of, with_tuning
from batchpilot.build.children import CONFIG_HASH_ANNOTATION, config_map, deployment
from batchpilot.control.capacity import CapacityModel
from batchpilot.control.planner import delay_choices, plan
from batchpilot.control.types import Tuning
from batchpilot.reconcile import tuned

LIVE = {"name": "m", "max_batch_size": 4, "dynamic_batching": {"max_queue_delay_microseconds": "2000",
                                                               "preserve_ordering": False}}
PROFILE = [(1, 47.4), (2, 40.7), (4, 41.2)]


def spec(**batching: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({
        "model": {"name": "m", "repository": {"configMap": "f"}, "maxBatchSize": 4},
        "slo": {"latencyMs": 200}, "batching": batching})


def test_with_tuning_changes_only_the_delay_and_the_instance_count_and_copies() -> None:
    out = with_tuning(LIVE, Tuning(500, 1))
    assert queue_delay_us(out) == 500 and queue_delay_us(LIVE) == 2000
    assert out["dynamic_batching"]["preserve_ordering"] is False and out["name"] == "m"
    with pytest.raises(ValueError, match="no dynamic_batching"):
        with_tuning({"name": "m"}, Tuning(500, 1))
    assert queue_delay_us({"name": "m"}) is None and tuning_of({"name": "m"}) is None


def test_with_tuning_sets_the_count_of_the_one_instance_group_and_refuses_to_split_several() -> None:
    live = {**LIVE, "instance_group": [{"name": "m_0", "kind": "KIND_GPU", "count": 1, "gpus": [0]}]}
    out = with_tuning(live, Tuning(2000, 3))
    assert out["instance_group"] == [{"name": "m_0", "kind": "KIND_GPU", "count": 3, "gpus": [0]}]
    assert tuning_of(out) == Tuning(2000, 3) and instance_count(live) == 1
    assert instance_count(LIVE) == 1 and with_tuning(LIVE, Tuning(2000, 2))["instance_group"] == [{"count": 2}]
    two = {**LIVE, "instance_group": [{"count": 1, "kind": "KIND_GPU"}, {"count": 1, "kind": "KIND_CPU"}]}
    assert instance_count(two) == 2 and queue_delay_us(with_tuning(two, Tuning(100, 2))) == 100
    with pytest.raises(ValueError, match="2 instance groups"):
        with_tuning(two, Tuning(100, 3))


def test_tuning_is_clamped_to_the_bounds_and_only_in_auto_mode() -> None:
    status = {"batching": {"maxQueueDelayMicroseconds": 50_000, "instanceCount": 3}}
    assert tuned(status, spec(mode="auto", maxQueueDelayMicroseconds=10_000)) == Tuning(10_000, 1)
    assert tuned(status, spec(mode="auto", maxQueueDelayMicroseconds=100_000, maxInstanceCount=3)) == \
        Tuning(50_000, 3)
    assert tuned(status, spec(mode="auto", maxInstanceCount=2, instanceCount=2)) == Tuning(2000, 2)
    assert tuned({"batching": {"maxQueueDelayMicroseconds": 100}}, spec(instanceCount=2)) == Tuning(100, 2)
    assert tuned(status, spec(mode="fixed")) is None
    assert tuned({}, spec()) is None


def test_a_retune_rewrites_the_configmap_but_never_rolls_the_pods() -> None:
    s = spec(mode="auto", maxQueueDelayMicroseconds=10_000, maxInstanceCount=2)
    text = config_map("m", "ns", s, Tuning(250, 2))["data"]["config.pbtxt"]
    assert "max_queue_delay_microseconds: 250" in text and "instance_group [ { count: 2 } ]" in text
    assert "max_queue_delay_microseconds: 10000" in config_map("m", "ns", s)["data"]["config.pbtxt"]

    def config_hash(sp: InferenceServiceSpec) -> str:
        return str(deployment("m", "ns", sp, 1)["spec"]["template"]["metadata"]["annotations"][
            CONFIG_HASH_ANNOTATION])

    # The hash follows the spec's bounds, not the tuned delay: only a spec edit rolls the pods.
    assert config_hash(spec(mode="auto", maxQueueDelayMicroseconds=20_000)) != config_hash(s)
    assert config_hash(spec(mode="auto", maxQueueDelayMicroseconds=10_000)) == config_hash(s)
    off = config_map("m", "ns", spec(mode="off"))["data"]["config.pbtxt"]
    assert "dynamic_batching" not in off


def test_delay_choices_follow_the_mode() -> None:
    assert delay_choices(spec(mode="fixed", maxQueueDelayMicroseconds=300_000)) == [300_000]
    choices = delay_choices(spec(mode="auto", minQueueDelayMicroseconds=100, maxQueueDelayMicroseconds=5_000))
    assert choices[0] == 100 and choices[-1] == 5_000 and 1000 in choices


def test_a_poor_delay_is_shortened_and_a_current_one_kept_within_the_gain() -> None:
    model = CapacityModel.from_profile(PROFILE)
    s = spec(mode="auto", maxQueueDelayMicroseconds=300_000)
    best = plan(s, model, 20, 160, 0.85)
    assert (best.replicas, best.batching.queue_delay_us) == (1, 0) and best.prediction.latency_ms <= 160
    assert plan(s, model, 20, 160, 0.85, current_delay=100).batching.queue_delay_us == 100  # 0.1 ms more wait is noise


def test_the_api_refuses_crossed_delay_bounds() -> None:
    with pytest.raises(ValueError, match="minQueueDelayMicroseconds"):
        spec(mode="auto", minQueueDelayMicroseconds=5_000, maxQueueDelayMicroseconds=1_000)
