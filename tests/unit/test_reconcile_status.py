"""A failed apply of the children is never silent: the Stalled/Reconciling pair (build/status.py) for each way it
ends, the control loop's ticks keeping that pair, and the kopf handler writing it (a fake Kube raising)."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import kopf
import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.build import status
from batchpilot.build.status import ReconcileReason
from batchpilot.control.types import Decision, Observation
from kopf_calls import RecordingKube, call_reconcile_children, call_repair_child

NOW = 1_700_000_000.0
SPEC = {"model": {"name": "resnet", "repository": {"configMap": "resnet-files"}}, "slo": {"latencyMs": 50}}


def api_error(code: int, message: str) -> ApiException:
    error = ApiException(status=code, reason="Reason")
    error.body = json.dumps({"kind": "Status", "status": "Failure", "message": message, "code": code})
    return error


class Case(NamedTuple):
    error: BaseException
    reason: ReconcileReason
    stalled: bool
    says: str


CASES = [
    pytest.param(Case(api_error(422, "Deployment.apps x is invalid: spec.template.spec.affinity: bad"),
                      ReconcileReason.CHILD_INVALID, True, "spec.template.spec.affinity: bad"), id="422 invalid"),
    pytest.param(Case(api_error(400, "the body of the request was in an unknown format"),
                      ReconcileReason.CHILD_INVALID, True, "unknown format"), id="400 bad request"),
    pytest.param(Case(api_error(500, "failed to create typed patch object (ns/x; apps/v1, Kind=Deployment): .spec"),
                      ReconcileReason.CHILD_INVALID, True, "typed patch"), id="500 typed patch"),
    pytest.param(Case(api_error(403, "deployments.apps x is forbidden: exceeded quota: q"),
                      ReconcileReason.CHILD_FORBIDDEN, True, "exceeded quota: q"), id="403 quota"),
    pytest.param(Case(api_error(409, "Operation cannot be fulfilled on deployments.apps x: the object has been "
                                     "modified"), ReconcileReason.CONFLICT, False, "the object has been modified"),
                 id="409 conflict"),
    pytest.param(Case(api_error(503, "etcdserver: leader changed"), ReconcileReason.API_UNAVAILABLE, False,
                      "answered 503"), id="503"),
    pytest.param(Case(ApiException(status=504, reason="Gateway Timeout"), ReconcileReason.API_UNAVAILABLE, False,
                      "Gateway Timeout"), id="504 without a body"),
    pytest.param(Case(urllib3.exceptions.ReadTimeoutError(None, "/apis/apps/v1", "Read timed out. (read timeout=5)"),
                      ReconcileReason.TIMEOUT, False, "Read timed out"), id="read timeout"),
    pytest.param(Case(urllib3.exceptions.MaxRetryError(None, "/api", Exception("Connection refused")),
                      ReconcileReason.TIMEOUT, False, "Connection refused"), id="connection refused"),
    pytest.param(Case(TimeoutError(), ReconcileReason.TIMEOUT, False, "TimeoutError"), id="builtin timeout"),
    pytest.param(Case(KeyError("uid"), ReconcileReason.INTERNAL_ERROR, False, "KeyError: 'uid'"), id="a bug"),
]


@pytest.mark.parametrize("case", CASES)
def test_each_failure_gets_its_reason_polarity_and_message(case: Case) -> None:
    failure = status.reconcile_failure(case.error)
    assert (failure.reason, failure.stalled) == (case.reason, case.stalled)
    assert case.says in failure.message
    stalled, reconciling = status.reconcile_conditions(None, failure, 7, NOW)
    assert stalled == {"type": "Stalled", "status": str(case.stalled), "reason": case.reason.value,
                       "message": failure.message, "lastTransitionTime": status.rfc3339(NOW), "observedGeneration": 7}
    assert reconciling["status"] == str(not case.stalled) and reconciling["reason"] == case.reason.value
    assert reconciling["message"] == failure.message and reconciling["observedGeneration"] == 7


def test_a_spec_the_model_refuses_stalls_naming_the_field() -> None:
    failure = status.spec_failure("spec.autoscaling: minReplicas (5) must be <= maxReplicas (2)")
    assert failure.stalled and failure.reason is ReconcileReason.SPEC_INVALID
    assert "spec.autoscaling: minReplicas (5)" in failure.message


def test_a_long_message_is_one_clipped_line() -> None:
    failure = status.reconcile_failure(api_error(422, "x is invalid:\n" + "cause; " * 500))
    assert len(failure.message) == status.MESSAGE_LIMIT and "\n" not in failure.message
    assert failure.message.endswith("...")


def test_success_clears_a_failure_and_moves_the_transition_time() -> None:
    failed = status.reconcile_conditions(None, status.reconcile_failure(api_error(422, "bad")), 3, NOW)
    later = NOW + 60
    stalled, reconciling = status.reconcile_conditions(failed, None, 4, later)
    for c in (stalled, reconciling):
        assert (c["status"], c["reason"], c["observedGeneration"]) == ("False", "Reconciled", 4)
        assert "generation 4" in c["message"]
    assert stalled["lastTransitionTime"] == status.rfc3339(later)  # True -> False
    assert reconciling["lastTransitionTime"] == status.rfc3339(NOW)  # False before and after


def test_a_retried_error_then_a_refusal_flips_the_pair() -> None:
    retrying = status.reconcile_conditions(None, status.reconcile_failure(api_error(503, "down")), 1, NOW)
    assert [c["status"] for c in retrying] == ["False", "True"]
    refused = status.reconcile_conditions(retrying, status.reconcile_failure(api_error(422, "bad")), 1, NOW + 5)
    assert [c["status"] for c in refused] == ["True", "False"]
    assert all(c["lastTransitionTime"] == status.rfc3339(NOW + 5) for c in refused)


class Refusal(NamedTuple):
    error: ApiException
    reason: ReconcileReason
    retry_after_s: float | None


REFUSALS = [
    pytest.param(Refusal(api_error(403, 'deployments.apps "m" is forbidden: exceeded quota: q, requested: '
                                        'count/deployments.apps=1, used: count/deployments.apps=0, limited: '
                                        'count/deployments.apps=0'), ReconcileReason.CHILD_FORBIDDEN,
                         status.QUOTA_RETRY_S), id="403 quota: lifted by an admin"),
    pytest.param(Refusal(api_error(403, 'deployments.apps "m" is forbidden: User "system:serviceaccount:bp:op" '
                                        'cannot create resource "deployments"'), ReconcileReason.CHILD_FORBIDDEN,
                         None), id="403 RBAC"),
    pytest.param(Refusal(api_error(403, 'deployments.apps "m" is forbidden: unable to create new content in '
                                        'namespace ml because it is being terminated'),
                         ReconcileReason.CHILD_FORBIDDEN, None), id="403 terminating namespace"),
    pytest.param(Refusal(api_error(422, 'Deployment.apps "m" is invalid: spec.selector: field is immutable'),
                         ReconcileReason.CHILD_INVALID, None), id="422 invalid"),
]


@pytest.mark.parametrize("case", REFUSALS)
def test_only_a_quota_refusal_is_retried_by_itself(case: Refusal) -> None:
    failure = status.reconcile_failure(case.error)
    assert (failure.reason, failure.stalled, failure.retry_after_s) == (case.reason, True, case.retry_after_s)
    says_retry = f"retrying every {status.QUOTA_RETRY_S:g} s" in failure.message
    assert says_retry is (case.retry_after_s is not None), failure.message
    stalled, reconciling = status.reconcile_conditions(None, failure, 2, NOW)
    assert (stalled["status"], reconciling["status"]) == ("True", "False")  # kstatus: stalled, even while retried


def test_a_repair_failure_says_so_and_promises_no_retry_of_its_own() -> None:
    quota = status.repair_failure(api_error(403, 'deployments.apps "m" is forbidden: exceeded quota: q'))
    assert (quota.reason, quota.stalled, quota.retry_after_s) == (ReconcileReason.CHILD_FORBIDDEN, True, None)
    assert quota.message.startswith("repairing a child changed by someone else failed")
    assert quota.message.endswith('deployments.apps "m" is forbidden: exceeded quota: q')
    down = status.repair_failure(api_error(503, "etcdserver: leader changed"))
    assert (down.reason, down.stalled) == (ReconcileReason.API_UNAVAILABLE, False)
    assert "answered 503" in down.message and "etcdserver: leader changed" in down.message
    assert status.reconcile_failed(status.reconcile_conditions(None, down, 1, NOW))
    assert not status.reconcile_failed(status.reconcile_conditions(None, None, 1, NOW))


def tick(previous: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    spec = InferenceServiceSpec.model_validate(SPEC)
    return status.tick_conditions(previous, spec, Observation(at=NOW, replicas=1, ready_replicas=1),
                                  Decision(1, "Steady", "m"), None, None, 2, NOW)


def test_the_control_loops_tick_keeps_the_pair_and_the_latest_pair_wins() -> None:
    refused = status.reconcile_conditions(None, status.reconcile_failure(api_error(422, "bad")), 2, NOW)
    after_tick = tick(refused)  # the tick read a status that had the pair: it keeps it untouched
    assert [c["type"] for c in after_tick] == ["Ready", "MetricsAvailable", "Autoscaling", "SLOMet", "Stalled",
                                               "Reconciling"]
    assert status.find(after_tick, "Stalled") == refused[0]
    # A tick that read the status before the refusal was written still carries it (handlers pass memo's pair).
    stale = status.merge_conditions(tick(None), refused)
    assert status.find(stale, "Stalled") == refused[0] and status.find(stale, "Ready")["reason"] == "ReplicasReady"


class FailingKube:
    """What reconcile() calls on Kube, the apply failing with `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def deployment(self, namespace: str, name: str) -> None:
        return None

    def has_crd(self, name: str) -> bool:
        return False

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        raise self.error


def run_handler(kube: Any, spec: dict[str, Any], previous: dict[str, Any]) -> tuple[kopf.Patch, kopf.Memo,
                                                                                     BaseException | None]:
    body = {"apiVersion": "batchpilot.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": "svc", "namespace": "ml", "uid": "u1", "generation": 5}, "spec": spec,
            "status": previous}
    return call_reconcile_children(kube, body)


def test_the_handler_records_a_timeout_and_lets_kopf_retry() -> None:
    timeout = urllib3.exceptions.ReadTimeoutError(None, "/apis/apps/v1", "Read timed out. (read timeout=5)")
    patch, memo, raised = run_handler(FailingKube(timeout), SPEC, {})
    assert raised is timeout  # not a PermanentError: kopf retries it
    conditions = patch["status"]["conditions"]
    assert patch["status"]["observedGeneration"] == 5
    reconciling = status.find(conditions, "Reconciling")
    assert (reconciling["status"], reconciling["reason"], reconciling["observedGeneration"]) == ("True", "Timeout", 5)
    assert "Read timed out" in reconciling["message"]
    assert memo.reconcile_pairs["u1"] == conditions  # what the control loop's next tick keeps


def test_the_handler_stalls_on_a_quota_and_retries_it_after_the_quota_delay() -> None:
    patch, _, raised = run_handler(FailingKube(api_error(403, 'deployments.apps "svc" is forbidden: exceeded '
                                                              'quota: q')), SPEC, {})
    assert isinstance(raised, kopf.TemporaryError) and raised.delay == status.QUOTA_RETRY_S
    stalled = status.find(patch["status"]["conditions"], "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "ChildForbidden")
    assert "exceeded quota: q" in stalled["message"] and str(raised) == stalled["message"]


def test_the_handler_stalls_on_a_refusal_and_on_a_spec_it_cannot_parse() -> None:
    patch, _, raised = run_handler(FailingKube(api_error(422, "spec.template.spec.affinity: bad")), SPEC, {})
    assert isinstance(raised, kopf.PermanentError)
    assert status.find(patch["status"]["conditions"], "Stalled")["reason"] == "ChildInvalid"
    bad = {**SPEC, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}}
    patch, _, raised = run_handler(FailingKube(AssertionError("never applied")), bad, {})
    assert isinstance(raised, kopf.PermanentError)
    stalled = status.find(patch["status"]["conditions"], "Stalled")
    assert stalled["reason"] == "SpecInvalid" and "minReplicas (5) must be <= maxReplicas (2)" in stalled["message"]



def test_the_handler_clears_a_failure_once_the_children_apply() -> None:
    previous = {"conditions": status.reconcile_conditions(None, status.reconcile_failure(api_error(503, "x")), 4,
                                                          NOW)}
    kube = RecordingKube()
    patch, _, raised = run_handler(kube, SPEC, previous)
    assert raised is None and kube.applied == ["ConfigMap", "Service", "PodDisruptionBudget", "Deployment"]
    pair = [c for c in patch["status"]["conditions"] if c["type"] in ("Stalled", "Reconciling")]
    assert [(c["status"], c["reason"], c["observedGeneration"]) for c in pair] == [("False", "Reconciled", 5)] * 2
    assert patch["status"]["observedGeneration"] == 5 and patch["status"]["replicas"] == 1


class OwnerKube(RecordingKube):
    """What repair_child calls on Kube: the owner read, its status patches recorded, the apply failing with
    `error` (None: it works)."""

    def __init__(self, owner: dict[str, Any], error: BaseException | None = None) -> None:
        super().__init__()
        self.owner, self.error = owner, error
        self.patched: list[dict[str, Any]] = []

    def inference_service(self, namespace: str, name: str) -> dict[str, Any]:
        return self.owner

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.patched.append(patch)

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return super().apply(manifest)


CHILD = {"name": "svc", "namespace": "ml", "ownerReferences": [
    {"controller": True, "kind": "InferenceService", "apiVersion": "batchpilot.dev/v1alpha1", "name": "svc",
     "uid": "u1"}]}


def test_a_failed_repair_lands_on_the_owner_and_the_next_one_that_works_clears_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str, str, str]] = []
    monkeypatch.setattr(kopf, "event", lambda body, **kw: events.append(
        (body["metadata"]["name"], kw["type"], kw["reason"], kw["message"])))
    owner = {"apiVersion": "batchpilot.dev/v1alpha1", "kind": "InferenceService",
             "metadata": {"name": "svc", "namespace": "ml", "uid": "u1", "generation": 5}, "spec": SPEC, "status": {}}
    failing = OwnerKube(owner, api_error(503, "etcdserver: leader changed"))
    memo, raised = call_repair_child(failing, "DELETED", CHILD)
    assert raised is None  # the failure is on the owner, not only in kopf's log
    [written] = failing.patched
    reconciling = status.find(written["conditions"], "Reconciling")
    assert (reconciling["status"], reconciling["reason"], reconciling["observedGeneration"]) == (
        "True", "ApiUnavailable", 5)
    assert "etcdserver: leader changed" in reconciling["message"] and written["observedGeneration"] == 5
    assert events == [("svc", "Warning", "ReconcileFailed", reconciling["message"])]
    assert memo.reconcile_pairs["u1"] == written["conditions"]  # the control loop's next tick keeps it

    owner["status"] = {"conditions": written["conditions"]}
    working = OwnerKube(owner)
    call_repair_child(working, "DELETED", CHILD, memo)
    assert working.applied and len(working.patched) == 1 and not status.reconcile_failed(
        working.patched[0]["conditions"])
    owner["status"] = {"conditions": working.patched[0]["conditions"]}
    quiet = OwnerKube(owner)
    call_repair_child(quiet, "DELETED", CHILD, memo)
    assert quiet.applied and quiet.patched == [] and len(events) == 1  # nothing to clear: no write, no Event
    gone = OwnerKube(owner, ApiException(status=404, reason="Not Found"))
    assert call_repair_child(gone, "DELETED", CHILD, memo)[1] is None and gone.patched == []
    ending = OwnerKube(owner, api_error(403, 'deployments.apps "svc" is forbidden: unable to create new content in '
                                             'namespace ml because it is being terminated'))
    assert call_repair_child(ending, "DELETED", CHILD, memo)[1] is None and ending.patched == []
    assert len(events) == 1  # the owner goes with its namespace: nothing to report
