"""The pure renderers: spec -> Deployment, Service, ConfigMap (config.pbtxt) and status conditions."""

from __future__ import annotations

import pytest

from batchpilot.adapters.promql import ServiceQueries, escape_label_value
from batchpilot.api.parse import SpecError, parse_spec
from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.build import status
from batchpilot.build.children import CONFIG_HASH_ANNOTATION, children, deployment
from batchpilot.build.config_pbtxt import render_config_pbtxt
from batchpilot.control.types import Decision, History, Observation, Tuning
from batchpilot.reconcile import desired_replicas, edited_by_others, owned_by

BASE = {"model": {"name": "resnet", "repository": {"configMap": "resnet-files"}}, "slo": {"latencyMs": 50}}


def spec(**overrides: object) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({**BASE, **overrides})


def test_children_are_config_service_pdb_deployment_with_shared_labels() -> None:
    cm, svc, pdb, dep = children("resnet", "ml", spec(), replicas=2)
    assert [m["kind"] for m in (cm, svc, pdb, dep)] == ["ConfigMap", "Service", "PodDisruptionBudget", "Deployment"]
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"batchpilot.dev/inferenceservice":
                                                                                 "resnet"}}}
    selector = {"batchpilot.dev/inferenceservice": "resnet"}
    assert svc["spec"]["selector"] == selector
    assert dep["spec"]["selector"]["matchLabels"] == selector
    assert dep["spec"]["template"]["metadata"]["labels"].items() >= selector.items()
    assert {p["port"] for p in svc["spec"]["ports"]} == {8000, 8001, 8002}
    assert dep["spec"]["replicas"] == 2


def test_triton_runs_explicit_model_control_with_summary_latencies_and_gpus() -> None:
    dep = deployment("resnet", "ml", spec(runtime={"resources": {"limits": {"nvidia.com/gpu": 2}}}), replicas=1)
    pod = dep["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["tritonserver"]
    for arg in ("--model-control-mode=explicit", "--load-model=resnet", "--strict-readiness=true",
                "--metrics-port=8002", "--metrics-config=summary_latencies=true"):
        assert arg in container["args"]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": 2}}
    assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert container["securityContext"]["runAsNonRoot"] and container["securityContext"]["capabilities"] == {
        "drop": ["ALL"]}
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


def test_runtime_fields_reach_the_pod() -> None:
    runtime = {
        "resources": {"requests": {"cpu": "2"}}, "nodeSelector": {"nvidia.com/gpu.product": "H100"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}},
        "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "serviceAccountName": "triton", "imagePullSecrets": [{"name": "regcred"}],
    }
    pod = deployment("resnet", "ml", spec(runtime=runtime), 1)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert pod["tolerations"] == [runtime["tolerations"][0]]  # type: ignore[index]  # no GPU: no GPU toleration
    assert pod["affinity"] == runtime["affinity"]
    assert pod["containers"][0]["env"] == runtime["env"]
    assert (pod["serviceAccountName"], pod["imagePullSecrets"]) == ("triton", [{"name": "regcred"}])


def test_repository_sources_mount_the_model_directory() -> None:
    def pod_of(repository: dict[str, object]) -> dict[str, object]:
        s = spec(model={**BASE["model"], "repository": repository})  # type: ignore[dict-item]
        return dict(deployment("resnet", "ml", s, 1, fetcher_image="fetcher:1")["spec"]["template"]["spec"])

    cm = pod_of({"configMap": "files"})
    assert "initContainers" not in cm
    assert {m["mountPath"] for m in cm["containers"][0]["volumeMounts"]} == {  # type: ignore[index]
        "/models/resnet/config.pbtxt", "/models/resnet/1"}
    # A claim is mounted beside the model directory, which the init container fills with links to it: runc has
    # no mount point for the rendered config.pbtxt in a read-only claim that lacks one.
    pvc = pod_of({"pvc": {"claimName": "models", "subPath": "resnet"}})
    assert pvc["volumes"][1:] == [  # type: ignore[index]
        {"name": "model-files", "emptyDir": {}},
        {"name": "model-claim", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}]
    claim_mount = {"name": "model-claim", "mountPath": "/model-claim", "readOnly": True, "subPath": "resnet"}
    assert pvc["containers"][0]["volumeMounts"] == [  # type: ignore[index]
        {"name": "model-files", "mountPath": "/models/resnet", "subPath": "resnet", "readOnly": True}, claim_mount,
        {"name": "model-config", "mountPath": "/models/resnet/config.pbtxt", "subPath": "config.pbtxt",
         "readOnly": True}]
    (links,) = pvc["initContainers"]  # type: ignore[misc]
    assert links["image"] == "fetcher:1" and "envFrom" not in links
    assert links["command"][-4:] == ["--link", "/model-claim", "--dest", "/models/resnet"]
    assert links["volumeMounts"] == [{"name": "model-files", "mountPath": "/models"}, claim_mount]
    assert links["securityContext"]["runAsNonRoot"] and links["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    uri = pod_of({"storageUri": "s3://models/resnet", "credentialsSecret": "s3-creds"})
    fetch = uri["initContainers"][0]  # type: ignore[index]
    assert fetch["image"] == "fetcher:1" and fetch["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert fetch["command"][-4:] == ["--uri", "s3://models/resnet", "--dest", "/models/resnet"]
    assert uri["volumes"][1] == {"name": "model-files", "emptyDir": {}}  # type: ignore[index]
    assert fetch["volumeMounts"] == [{"name": "model-files", "mountPath": "/models"}]
    assert uri["containers"][0]["volumeMounts"][0]["subPath"] == "resnet"  # type: ignore[index]


@pytest.mark.parametrize("repository", [
    {}, {"configMap": "a", "pvc": {"claimName": "b"}}, {"configMap": "a", "credentialsSecret": "s"},
    {"storageUri": "http://insecure/model.tgz"}, {"storageUri": "s3://Bad_Bucket/x"},
    {"storageUri": "https://host/a b"}, {"storageUri": "ftp://host/x"},
])
def test_bad_repositories_are_refused(repository: dict[str, object]) -> None:
    with pytest.raises(SpecError, match=r"spec\.model\.repository"):
        parse_spec({**BASE, "model": {"name": "m", "repository": repository}})


def test_config_pbtxt_renders_platform_and_tensors() -> None:
    s = spec(model={"name": "r", "repository": {"configMap": "f"}, "platform": "onnxruntime_onnx",
                    "inputs": [{"name": "x", "dataType": "TYPE_FP32", "dims": [3, -1]}],
                    "outputs": [{"name": "y", "dataType": "TYPE_INT64", "dims": [1]}]})
    text = render_config_pbtxt(s.model, s.batching)
    assert 'platform: "onnxruntime_onnx"' in text and "backend" not in text
    assert 'input [\n  { name: "x" data_type: TYPE_FP32 dims: [ 3, -1 ] }\n]' in text
    assert 'output [\n  { name: "y" data_type: TYPE_INT64 dims: [ 1 ] }\n]' in text
    with pytest.raises(SpecError, match="backend .* or platform"):
        parse_spec({**BASE, "model": {**BASE["model"], "backend": "python", "platform": "onnxruntime_onnx"}})


def test_pod_monitor_only_where_its_crd_exists() -> None:
    assert [m["kind"] for m in children("r", "ml", spec(), 1, pod_monitor_crd=True)][-1] == "PodMonitor"
    assert "PodMonitor" not in [m["kind"] for m in children("r", "ml", spec(), 1)]


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


def test_reconcile_applies_a_manual_replica_pin_within_bounds() -> None:
    assert desired_replicas(1, spec(replicas=3)) == 3
    assert desired_replicas(2, spec(autoscaling={"minReplicas": 2}, replicas=1)) == 2


def test_external_mode_applies_the_deployment_without_replicas_and_keeps_the_live_count() -> None:
    external = spec(autoscaling={"mode": "external", "maxReplicas": 4})
    assert "replicas" not in deployment("resnet", "ml", external, None)["spec"]
    assert deployment("resnet", "ml", spec(), 2)["spec"]["replicas"] == 2
    assert desired_replicas(9, external) == 9  # the HPA's count, even above Batchpilot's maxReplicas
    assert desired_replicas(None, external) == 1


def test_external_mode_and_a_replica_pin_are_refused_together() -> None:
    with pytest.raises(SpecError, match=r"spec\.replicas \(3\).*autoscaling\.mode external"):
        parse_spec({**BASE, "replicas": 3, "autoscaling": {"mode": "external"}})


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
    retuned = status.last_decision(Observation(at=0, replicas=1, ready_replicas=1, queue_delay_us=2000),
                                   Decision(1, "ProbingInstances", "m"), 1_700_000_000.0, Tuning(2000, 2))
    assert retuned["batching"] == {"from": {"maxQueueDelayMicroseconds": 2000, "instanceCount": 1},
                                   "to": {"maxQueueDelayMicroseconds": 2000, "instanceCount": 2}}
    assert "batching" not in decided
    resumed = status.resumed_history({"lastDecision": retuned, "lastScaleTime": status.rfc3339(1_699_999_000.0)})
    assert (resumed.last_scale_at, resumed.last_retune_at) == (1_699_999_000.0, 1_700_000_000.0)
    assert status.resumed_history({"lastDecision": retuned}).last_scale_at is None


def test_api_errors_show_the_api_servers_message() -> None:
    body = '{"kind":"Status","message":"Deployment.apps \\"r\\" is invalid: spec.template.spec.affinity: bad"}'
    assert status.api_error(body) == 'Deployment.apps "r" is invalid: spec.template.spec.affinity: bad'
    assert status.api_error(b"not json") == "not json"
    assert status.api_error(None) == ""


@pytest.mark.parametrize(("code", "message", "permanent"), [
    (422, "Deployment.apps is invalid", True), (403, "forbidden", True),
    (500, "failed to create typed patch object (ns/r; apps/v1, Kind=Deployment): .spec...: expected map", True),
    (500, "etcdserver: request timed out", False), (503, "unavailable", False), (409, "conflict", False),
])
def test_only_errors_about_the_object_are_final(code: int, message: str, permanent: bool) -> None:
    assert status.refused_for_good(code, message) is permanent


def test_only_writes_by_others_since_our_apply_are_drift() -> None:
    ours = {"manager": "batchpilot", "operation": "Apply", "time": "2026-11-23T10:00:00Z"}
    status = {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
              "time": "2026-11-23T10:05:00Z"}
    revision = {"manager": "kube-controller-manager", "operation": "Update", "time": "2026-11-23T10:05:00Z"}
    edit = {"manager": "kubectl-edit", "operation": "Update", "time": "2026-11-23T10:06:00Z"}
    old_edit = {**edit, "time": "2026-11-23T09:00:00Z"}
    assert not edited_by_others({"managedFields": [ours, status, revision]}, "batchpilot")
    assert edited_by_others({"managedFields": [ours, status, edit]}, "batchpilot")
    assert not edited_by_others({"managedFields": [old_edit, ours]}, "batchpilot")  # already repaired
    assert edited_by_others({"managedFields": [edit]}, "batchpilot")


def test_a_tick_yields_all_four_conditions_at_the_generation() -> None:
    obs = Observation(at=0, replicas=2, ready_replicas=0, latency_ms=250.0)
    found = status.tick_conditions(None, spec(), obs, Decision(2, "MetricsUnavailable", "blind"), "no samples",
                                   None, 7, 100.0)
    assert [c["type"] for c in found] == ["Ready", "MetricsAvailable", "Autoscaling", "SLOMet"]
    assert {c["observedGeneration"] for c in found} == {7}
    assert status.find(found, "MetricsAvailable")["reason"] == "MetricsMissing"
    assert status.find(found, "SLOMet")["status"] == "False"
    assert status.find(found, "Ready")["status"] == "False"
