"""Why pods are not ready, table-driven: pod states (as the kubelet, the scheduler and Triton report them)
-> the Ready condition's status, reason and message."""

from __future__ import annotations

from typing import Any

import pytest

from batchpilot.adapters.pods import pod_health
from batchpilot.build.pod_health import ContainerHealth, ModelHealth, PodHealth, assess, failure_event
from batchpilot.build.status import ready_condition

GPU_MESSAGE = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
TRITON_REASON = ("Internal: RuntimeError: weights file model.plan is corrupt\n\nAt:\n"
                 "  /models/m/1/model.py(3): initialize\n")


def ready(name: str) -> PodHealth:
    return PodHealth(name, "Running", ready=True,
                     containers=(ContainerHealth("triton", ready=True, running=True),))


def unschedulable(name: str) -> PodHealth:
    return PodHealth(name, "Pending", unschedulable=GPU_MESSAGE)


def load_failed(name: str) -> PodHealth:
    return PodHealth(name, "Running", containers=(ContainerHealth("triton", running=True),),
                     models=(ModelHealth("m", "UNAVAILABLE", TRITON_REASON),))


def loading(name: str) -> PodHealth:
    return PodHealth(name, "Running", containers=(ContainerHealth("triton", running=True),),
                     models=(ModelHealth("m", "LOADING"),))


def fetch_failing(name: str, message: str | None = None) -> PodHealth:
    return PodHealth(name, "Pending", containers=(
        ContainerHealth("fetch-model", init=True, restarts=2, waiting_reason="CrashLoopBackOff",
                        last_exit_code=1, last_reason="Error", last_message=message),
        ContainerHealth("triton", waiting_reason="PodInitializing")))


def crash_looping(name: str) -> PodHealth:
    return PodHealth(name, "Running", containers=(
        ContainerHealth("triton", restarts=3, waiting_reason="CrashLoopBackOff",
                        waiting_message="back-off 40s restarting failed container=triton",
                        last_exit_code=139, last_reason="Error"),))


def pull_failing(name: str) -> PodHealth:
    return PodHealth(name, "Pending", containers=(
        ContainerHealth("triton", image="tritonserver:nope", waiting_reason="ImagePullBackOff",
                        waiting_message='Back-off pulling image "tritonserver:nope"'),))


def config_error(name: str) -> PodHealth:
    return PodHealth(name, "Pending", containers=(
        ContainerHealth("triton", waiting_reason="CreateContainerConfigError",
                        waiting_message='secret "hf-token" not found'),))


def creating(name: str) -> PodHealth:
    return PodHealth(name, "Pending", containers=(ContainerHealth("triton", waiting_reason="ContainerCreating"),))


CASES: list[tuple[str, list[PodHealth], int, int, bool, str, str]] = [
    # name, pods, ready, desired, Ready, reason, message
    ("all ready", [ready("a"), ready("b")], 2, 2, True, "ReplicasReady", "2/2 replicas ready"),
    ("one pending for a GPU", [ready("a"), ready("b"), unschedulable("c")], 2, 3, True, "ReplicasReady",
     f"2/3 replicas ready; 1 pod Pending: {GPU_MESSAGE}"),
    ("none ready: unschedulable, counted", [unschedulable("a"), unschedulable("b")], 0, 2, False, "Unschedulable",
     f"0/2 replicas ready; 2 pods Pending: {GPU_MESSAGE}"),
    ("model load failure quotes Triton", [load_failed("a")], 0, 1, False, "ModelLoadFailed",
     "0/1 replicas ready; model m failed to load on pod a: "
     "Internal: RuntimeError: weights file model.plan is corrupt"),
    ("model load failure outranks a pending pod", [unschedulable("b"), load_failed("a")], 0, 2, False,
     "ModelLoadFailed", "0/2 replicas ready; model m failed to load on pod a: Internal: RuntimeError: weights "
     f"file model.plan is corrupt; 1 pod Pending: {GPU_MESSAGE}"),
    ("same failure on two pods", [load_failed("a"), load_failed("b")], 0, 2, False, "ModelLoadFailed",
     "0/2 replicas ready; model m failed to load on pod a: Internal: RuntimeError: weights file model.plan is "
     "corrupt (and 1 more pod)"),
    ("fetch failing, no message: points at the logs", [fetch_failing("a")], 0, 1, False, "ModelFetchFailed",
     "0/1 replicas ready; init container fetch-model of pod a failed (exit code 1; restarted 2 times); "
     "see kubectl logs a -c fetch-model --previous"),
    ("the first failed fetch counts", [PodHealth("a", containers=(
        ContainerHealth("fetch-model", init=True, exit_code=1, terminated_reason="Error"),))], 0, 1, False,
     "ModelFetchFailed", "0/1 replicas ready; init container fetch-model of pod a failed (exit code 1); "
     "see kubectl logs a -c fetch-model"),
    ("fetch failing with its message", [fetch_failing("a", "https://h/m.tar.gz: HTTP 404")], 0, 1, False,
     "ModelFetchFailed", "0/1 replicas ready; init container fetch-model of pod a failed (exit code 1; "
     "restarted 2 times): https://h/m.tar.gz: HTTP 404"),
    ("a log tail as message: its last line",
     [fetch_failing("a", "fetch: fetching x\nfetch failed: HTTP 404\n\n")], 0, 1, False, "ModelFetchFailed", "0/1 replicas ready; init container fetch-model of pod a failed (exit code 1; "
     "restarted 2 times): fetch failed: HTTP 404"),
    ("fetch failure outranks a crash loop", [crash_looping("b"), fetch_failing("a")], 0, 2, False,
     "ModelFetchFailed", "0/2 replicas ready; init container fetch-model of pod a failed (exit code 1; "
     "restarted 2 times); see kubectl logs a -c fetch-model --previous; container triton of pod b failed "
     "(exit code 139 (SIGSEGV); restarted 3 times); see kubectl logs b -c triton --previous"),
    ("crash loop names the signal", [crash_looping("a")], 0, 1, False, "CrashLoopBackOff",
     "0/1 replicas ready; container triton of pod a failed (exit code 139 (SIGSEGV); restarted 3 times); "
     "see kubectl logs a -c triton --previous"),
    ("crash loop outranks image pull", [pull_failing("b"), crash_looping("a")], 0, 2, False, "CrashLoopBackOff",
     "0/2 replicas ready; container triton of pod a failed (exit code 139 (SIGSEGV); restarted 3 times); see "
     "kubectl logs a -c triton --previous; container triton of pod b cannot pull image 'tritonserver:nope': "
     'ImagePullBackOff: Back-off pulling image "tritonserver:nope"'),
    ("image pull outranks unschedulable", [unschedulable("b"), pull_failing("a")], 0, 2, False,
     "ImagePullFailed", "0/2 replicas ready; container triton of pod a cannot pull image 'tritonserver:nope': "
     f'ImagePullBackOff: Back-off pulling image "tritonserver:nope"; 1 pod Pending: {GPU_MESSAGE}'),
    ("missing secret", [config_error("a")], 0, 1, False, "CreateContainerConfigError",
     '0/1 replicas ready; container triton of pod a cannot start: secret "hf-token" not found'),
    ("unschedulable outranks starting", [creating("a"), unschedulable("b")], 0, 2, False, "Unschedulable",
     f"0/2 replicas ready; 1 pod Pending: {GPU_MESSAGE}; pod a: container triton ContainerCreating"),
    ("model loading is starting", [loading("a")], 0, 1, False, "Starting",
     "0/1 replicas ready; pod a: model m loading"),
    ("fetching is starting",
     [PodHealth("a", containers=(ContainerHealth("fetch-model", init=True, running=True),
                                 ContainerHealth("triton", waiting_reason="PodInitializing")))], 0, 1, False, "Starting", "0/1 replicas ready; pod a: init container fetch-model running"),
    ("triton up, index unknown",
     [PodHealth("a", "Running", containers=(ContainerHealth("triton", running=True),))], 0, 1, False, "Starting", "0/1 replicas ready; pod a: Triton not ready yet"),
    ("a fetch that succeeded is no problem",
     [PodHealth("a", "Running", containers=(ContainerHealth("fetch-model", init=True, exit_code=0, restarts=1,
                                                            last_exit_code=1),
                                            ContainerHealth("triton", running=True)),
                models=(ModelHealth("m", "LOADING"),))],
     0, 1, False, "Starting", "0/1 replicas ready; pod a: model m loading"),
    ("an old restart of a now ready container is no problem",
     [PodHealth("a", "Running", ready=True, containers=(ContainerHealth("triton", ready=True, running=True,
                                                                        restarts=1, last_exit_code=137),))],
     1, 1, True, "ReplicasReady", "1/1 replicas ready"),
    ("an OOM kill says so",
     [PodHealth("a", "Running", containers=(ContainerHealth("triton", running=True, restarts=1,
                                                            last_exit_code=137, last_reason="OOMKilled"),))],
     0, 1, False, "CrashLoopBackOff", "0/1 replicas ready; container triton of pod a failed (exit code 137 "
     "(SIGKILL), OOMKilled; restarted 1 time); see kubectl logs a -c triton --previous"),
    ("terminating and finished pods are ignored",
     [ready("a"), PodHealth("old", "Running", terminating=True), PodHealth("evicted", "Failed")], 1, 1, True,
     "ReplicasReady", "1/1 replicas ready"),
    ("an unloaded model is not a failure",
     [PodHealth("a", "Running", containers=(ContainerHealth("triton", running=True),),
                models=(ModelHealth("m", "UNAVAILABLE", "unloaded"),))],
     0, 1, False, "Starting", "0/1 replicas ready; pod a: model m unavailable"),
    ("no pod yet", [], 0, 1, False, "Starting", "0/1 replicas ready; no pod exists yet"),
    ("scaled to zero", [], 0, 0, False, "NoReplicaReady", "0/0 replicas ready"),
    ("pods ready before the Deployment says so", [ready("a")], 0, 1, False, "Starting", "0/1 replicas ready"),
]


@pytest.mark.parametrize(("pods", "ready_", "desired", "ok", "reason", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_assess(pods: list[PodHealth], ready_: int, desired: int, ok: bool, reason: str, message: str) -> None:
    health = assess(pods, ready_, desired)
    assert (health.ready, health.reason, health.message) == (ok, reason, message)


def test_unknown_pods_fall_back_to_counts() -> None:
    assert assess(None, 0, 2).reason == "NoReplicaReady"
    assert assess(None, 1, 2).message == "1/2 replicas ready"


def test_long_foreign_messages_are_clipped() -> None:
    pod = PodHealth("a", "Running", containers=(ContainerHealth("triton", running=True),),
                    models=(ModelHealth("m", "UNAVAILABLE", "x" * 5000),))
    assert len(assess([pod], 0, 1).message) < 500


def test_ready_condition_delegates_and_keeps_transition_time() -> None:
    first = ready_condition(None, 0, 1, 3, 100.0, [load_failed("a")])
    assert (first["status"], first["reason"], first["observedGeneration"]) == ("False", "ModelLoadFailed", 3)
    later = ready_condition([first], 0, 1, 3, 200.0, [unschedulable("a")])
    assert later["reason"] == "Unschedulable" and later["lastTransitionTime"] == first["lastTransitionTime"]


EVENT_CASES = [
    # name, previous Ready (status, reason) or None, new (status, reason), event expected
    ("first failure", None, ("False", "ModelLoadFailed"), True),
    ("starting is no failure", None, ("False", "Starting"), False),
    ("from starting to a failure", ("False", "Starting"), ("False", "CrashLoopBackOff"), True),
    ("the same failure again is quiet", ("False", "CrashLoopBackOff"), ("False", "CrashLoopBackOff"), False),
    ("another failure", ("False", "Unschedulable"), ("False", "ModelLoadFailed"), True),
    ("from ready to a failure", ("True", "ReplicasReady"), ("False", "Unschedulable"), True),
    ("ready is no failure", ("False", "Unschedulable"), ("True", "ReplicasReady"), False),
]


@pytest.mark.parametrize(("before", "after", "expected"), [c[1:] for c in EVENT_CASES],
                         ids=[c[0] for c in EVENT_CASES])
def test_failure_event(before: tuple[str, str] | None, after: tuple[str, str], expected: bool) -> None:
    previous = [{"type": "Ready", "status": before[0], "reason": before[1]}] if before else None
    event = failure_event(previous, {"type": "Ready", "status": after[0], "reason": after[1], "message": "m"})
    assert (event == (after[1], "m")) if expected else event is None


# -- the adapter's reading of a pod, as the API serves it


def api_pod(phase: str, status: dict[str, Any], deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p"}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-23T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, **status}}


def no_index(ip: str) -> None:
    raise AssertionError(f"Triton at {ip} must not be asked")


def test_reads_the_schedulers_verdict() -> None:
    pod = api_pod("Pending", {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                              "message": GPU_MESSAGE}]})
    assert pod_health(pod, no_index).unschedulable == GPU_MESSAGE


def test_reads_init_and_main_containers_in_order() -> None:
    pod = api_pod("Pending", {
        "initContainerStatuses": [{"name": "fetch-model", "restartCount": 2, "ready": False,
                                   "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
                                   "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                                "message": "HTTP 404"}}}],
        "containerStatuses": [{"name": "triton", "image": "tritonserver", "restartCount": 0, "ready": False,
                               "state": {"waiting": {"reason": "PodInitializing"}}}]})
    health = pod_health(pod, no_index)
    assert health.containers == (
        ContainerHealth("fetch-model", init=True, restarts=2, waiting_reason="CrashLoopBackOff",
                        waiting_message="back-off 20s", last_exit_code=1, last_reason="Error",
                        last_message="HTTP 404"),
        ContainerHealth("triton", image="tritonserver", waiting_reason="PodInitializing"))


RUNNING_TRITON = {"podIP": "127.0.0.9", "containerStatuses": [
    {"name": "triton", "ready": False, "restartCount": 0, "state": {"running": {"startedAt": "x"}}}]}


def test_asks_triton_about_a_running_unready_pod() -> None:
    asked = []

    def index(ip: str) -> list[dict[str, Any]]:
        asked.append(ip)
        return [{"name": "m", "version": "1", "state": "UNAVAILABLE", "reason": "boom"}, {"name": "other"}]

    health = pod_health(api_pod("Running", RUNNING_TRITON), index)
    assert asked == ["127.0.0.9"]
    assert health.models == (ModelHealth("m", "UNAVAILABLE", "boom"), ModelHealth("other"))


def test_triton_silent_leaves_models_unknown() -> None:
    assert pod_health(api_pod("Running", RUNNING_TRITON), lambda ip: None).models is None


def test_does_not_ask_triton_about_ready_or_terminating_pods() -> None:
    ready_status = {**RUNNING_TRITON, "conditions": [{"type": "Ready", "status": "True"}]}
    assert pod_health(api_pod("Running", ready_status), no_index).ready
    assert pod_health(api_pod("Running", RUNNING_TRITON, deleting=True), no_index).terminating
