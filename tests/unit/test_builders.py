"""The pure renderers: spec -> Deployment, Service, ConfigMap (config.pbtxt) and status conditions."""

from __future__ import annotations

import pytest

from batchpilot.adapters.promql import ServiceQueries, escape_label_value
from batchpilot.api.parse import SpecError, parse_spec
from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.build import status
from batchpilot.build.children import CONFIG_HASH_ANNOTATION, children, deployment
from batchpilot.build.config_pbtxt import render_config_pbtxt
from batchpilot.control.types import Decision, History, Observation
from batchpilot.reconcile import desired_replicas, owned_by

BASE = {"model": {"name": "resnet", "repository": {"configMap": "resnet-files"}}, "slo": {"latencyMs": 50}}


def spec(**overrides: object) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({**BASE, **overrides})


def test_children_are_config_service_deployment_with_shared_labels() -> None:
    cm, svc, dep = children("resnet", "ml", spec(), replicas=2)
    assert [m["kind"] for m in (cm, svc, dep)] == ["ConfigMap", "Service", "Deployment"]
    selector = {"batchpilot.dev/inferenceservice": "resnet"}
    assert svc["spec"]["selector"] == selector
    assert dep["spec"]["selector"]["matchLabels"] == selector
    assert dep["spec"]["template"]["metadata"]["labels"].items() >= selector.items()
    assert {p["port"] for p in svc["spec"]["ports"]} == {8000, 8001, 8002}
    assert dep["spec"]["replicas"] == 2


def test_triton_runs_explicit_model_control_with_summary_latencies_and_gpus() -> None:
    dep = deployment("resnet", "ml", spec(runtime={"gpus": 2}), replicas=1)
    pod = dep["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["tritonserver"]
    for arg in ("--model-control-mode=explicit", "--load-model=resnet", "--strict-readiness=true",
                "--metrics-port=8002", "--metrics-config=summary_latencies=true"):
        assert arg in container["args"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_config_pbtxt_carries_batching_and_its_hash_rolls_the_pods() -> None:
    s = spec(model={**BASE["model"], "maxBatchSize": 16},  # type: ignore[dict-item]
             batching={"maxQueueDelayMicroseconds": 500, "preferredBatchSizes": [8, 16], "instanceCount": 2})
    text = render_config_pbtxt(s.model, s.batching)
    assert 'name: "resnet"' in text and "max_batch_size: 16" in text
    assert "max_queue_delay_microseconds: 500" in text and "preferred_batch_size: [ 8, 16 ]" in text
    assert "count: 2" in text

    def config_hash(sp: InferenceServiceSpec) -> str:
        return str(deployment("r", "ml", sp, 1)["spec"]["template"]["metadata"]["annotations"][
            CONFIG_HASH_ANNOTATION])

    assert config_hash(s) != config_hash(spec())


def test_no_dynamic_batching_without_batching() -> None:
    s = spec(model={**BASE["model"], "maxBatchSize": 0})  # type: ignore[dict-item]
    assert "dynamic_batching" not in render_config_pbtxt(s.model, s.batching)


def test_owner_reference_makes_the_custom_resource_the_controller() -> None:
    owner = {"apiVersion": "batchpilot.dev/v1alpha1", "kind": "InferenceService",
             "metadata": {"name": "resnet", "uid": "u-1"}}
    owned = owned_by(children("resnet", "ml", spec(), 1)[0], owner)
    ref = owned["metadata"]["ownerReferences"][0]
    assert (ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == ("u-1", True, True)


@pytest.mark.parametrize(("live", "expected"), [(None, 1), (3, 3), (0, 1), (9, 4)])
def test_reconcile_keeps_the_loops_replicas_within_bounds(live: int | None, expected: int) -> None:
    assert desired_replicas(live, spec()) == expected


def test_bad_spec_names_the_field_and_value() -> None:
    with pytest.raises(SpecError) as e:
        parse_spec({**BASE, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}})
    assert "spec.autoscaling" in str(e.value) and "minReplicas (5)" in str(e.value)
    with pytest.raises(SpecError, match=r"spec\.slo\.latencyMs.*got -1"):
        parse_spec({**BASE, "slo": {"latencyMs": -1}})


def test_promql_label_values_cannot_break_out_of_the_matcher() -> None:
    hostile = 'x"} or vector(1) or {a="'
    assert escape_label_value(hostile) == 'x\\"} or vector(1) or {a=\\"'
    q = ServiceQueries("ns", hostile, "m", 30).latency_ms(95)
    assert q.count('"') - q.count('\\"') == 8  # 4 matchers, each one quoted value


def test_conditions_keep_their_transition_time_until_the_status_flips() -> None:
    first = status.condition(None, "SLOMet", True, "WithinSLO", "ok", 1, 100.0)
    same = status.condition([first], "SLOMet", True, "WithinSLO", "ok", 1, 200.0)
    flipped = status.condition([same], "SLOMet", False, "SLOBreached", "bad", 1, 300.0)
    assert same["lastTransitionTime"] == first["lastTransitionTime"] == status.rfc3339(100.0)
    assert flipped["lastTransitionTime"] == status.rfc3339(300.0)


def test_a_restarted_operator_remembers_when_it_last_acted() -> None:
    decided = status.last_decision(Observation(at=0, replicas=1, ready_replicas=1),
                                   Decision(2, "ScaleUp", "m"), 1_700_000_000.0)
    assert status.resumed_history({"lastDecision": decided}).last_scale_at == 1_700_000_000.0
    assert status.resumed_history({}) == History()
