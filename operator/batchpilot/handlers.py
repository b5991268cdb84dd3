"""kopf wiring: parse, call reconcile or the control loop, record the outcome. No business rules here."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException

from batchpilot import metrics
from batchpilot.adapters.kube import FIELD_MANAGER, Kube, load_kube_config
from batchpilot.adapters.lease import LeaseClient
from batchpilot.adapters.pods import pods_health
from batchpilot.adapters.prometheus import PrometheusReader
from batchpilot.api.parse import SpecError, parse_spec
from batchpilot.api.spec import GROUP, KIND, PLURAL, VERSION, InferenceServiceSpec
from batchpilot.build import status as render
from batchpilot.build.names import ChildNames
from batchpilot.build.tick_status import TickOutcome, tick_write
from batchpilot.control_loop import tick
from batchpilot.leadership import AlwaysLeader, Leadership, identity
from batchpilot.reconcile import edited_by_others, reconcile
from batchpilot.settings import OperatorSettings

SETTINGS = OperatorSettings()


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Progress and diff-base live in annotations under our own prefix; kopf's chatter is kept to warnings.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = SETTINGS.workers
    # A service deleted while its control tick runs keeps kopf's finalizer until kopf sees the tick end. kopf looks
    # again after cancellation_polling, 60 s by default: `kubectl delete --wait` then hung a minute (seen in CI on the
    # real node). A tick is bounded (each Prometheus and Triton call has its timeout), so look every second.
    settings.background.cancellation_polling = 1.0
    memo.kube = Kube()
    memo.prometheus = {}
    memo.reconcile_pairs = {}


def start_leadership(s: OperatorSettings, lost: Callable[[], None]) -> Leadership | AlwaysLeader:
    """The election when BATCHPILOT_LEADER_ELECTION is on (started here; lost() is called when this replica stops
    leading), else a replica that always acts. Serves /metrics, /healthz and /readyz meanwhile."""
    if not s.leader_election:
        metrics.leader.set(1)
        metrics.serve(s.metrics_port, s.metrics_address)
        return AlwaysLeader()
    timing = s.election_timing
    # Each call bounded by half the renew deadline: a renewal hung on a slow API server gets a retry in.
    lease = LeaseClient(load_kube_config(), s.lease_namespace_or_default, s.lease_name, timing.renew_deadline_s / 2)

    def changed(leading: bool) -> None:
        metrics.leader.set(int(leading))
        if not leading:
            lost()

    leadership = Leadership(lease, identity(s.pod_name), timing, on_change=changed)
    metrics.leader.set(0)
    metrics.serve(s.metrics_port, s.metrics_address, leadership.ready)
    logging.getLogger("batchpilot.leadership").info(
        "leader election on Lease %s/%s as %s", lease.namespace, lease.name, leadership.identity)
    leadership.start()
    return leadership


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    leadership = memo.get("leadership")
    if leadership is not None:
        leadership.stop()


def _leading(memo: kopf.Memo) -> bool:
    """Whether this replica may write now: always without leader election (and when called outside kopf)."""
    leadership = memo.get("leadership")
    return leadership is None or bool(leadership.leading())


def _spec(spec: kopf.Spec) -> InferenceServiceSpec:
    try:
        return parse_spec(spec)
    except SpecError as e:
        raise kopf.PermanentError(str(e)) from None


def _prometheus(memo: kopf.Memo, spec: InferenceServiceSpec) -> PrometheusReader:
    """The reader of the service's Prometheus (spec.prometheus.url, else the operator's), one per URL."""
    url = spec.prometheus.url if spec.prometheus else SETTINGS.prometheus_url
    readers: dict[str, PrometheusReader] = memo.prometheus
    if url not in readers:
        readers[url] = PrometheusReader(url)
    return readers[url]


def _pairs(memo: kopf.Memo) -> dict[str, list[dict[str, Any]]]:
    """The last Stalled/Reconciling pair written for each InferenceService (by uid), for the control loop's next
    tick. One dict for the operator, made at startup: kopf gives each object a shallow copy of that memo, and a
    repair runs on the child's copy, not on its owner's."""
    pairs: dict[str, list[dict[str, Any]]] = memo.setdefault("reconcile_pairs", {})
    return pairs


def _lock(memo: kopf.Memo) -> threading.Lock:
    lock: threading.Lock = memo.setdefault("lock", threading.Lock())
    return lock


@kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile_children")
@kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile_children")
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", id="reconcile_children")
async def reconcile_when_leading(body: kopf.Body, meta: kopf.Meta, patch: kopf.Patch, memo: kopf.Memo,
                                 **_: Any) -> None:
    """kopf runs only while this replica leads (cli.py); a handler that starts after leadership was lost (kopf is
    stopping) waits here until kopf cancels it, rather than return: kopf would record a returned handler as done
    (its diff-base annotation), a write that would also hide the change from the new leader."""
    obj: Any = dict(body)
    if not _leading(memo):
        await memo.leadership.wait_leading()
        # Leading again (a new term): the body is as kopf saw it before, and another leader may have gone on.
        obj = await asyncio.to_thread(memo.kube.inference_service, meta["namespace"], meta["name"])
        if obj is None:
            return  # deleted meanwhile: nothing to reconcile
    current = kopf.Body(obj)
    await asyncio.to_thread(reconcile_children, body=current, spec=current.spec, meta=current.meta,
                            status=current.status, patch=patch, memo=memo)


def reconcile_children(body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch,
                       memo: kopf.Memo, **_: Any) -> None:
    generation = int(meta.get("generation") or 0)
    failure: render.ReconcileFailure | None = None
    error: Exception | None = None
    try:
        parsed = parse_spec(spec)
        with _lock(memo):
            replicas = reconcile(memo.kube, dict(body), parsed, SETTINGS.fetcher_image)
    except SpecError as e:
        error, failure = e, render.spec_failure(str(e))
    except Exception as e:  # every failure becomes a condition; kopf still retries the transient ones
        error, failure = e, render.reconcile_failure(e)
    _record(memo, meta, status, patch, render.reconcile_conditions(status.get("conditions"), failure, generation,
                                                                   time.time()), generation)
    if error is not None and failure is not None:
        kopf.event(body, type="Warning", reason="ReconcileFailed", message=failure.message)
        if failure.stalled and failure.retry_after_s is not None:  # a quota: lifted without a spec change
            raise kopf.TemporaryError(failure.message, delay=failure.retry_after_s) from None
        if failure.stalled:
            raise kopf.PermanentError(failure.message) from None
        raise error  # transient: kopf retries it with its back-off
    patch.status["replicas"] = replicas
    patch.status["selector"] = ChildNames(meta["name"]).selector_string
    patch.status["url"] = ChildNames(meta["name"]).url(str(meta.get("namespace")), parsed.model.name)
    kopf.event(body, type="Normal", reason="Reconciled",
               message=f"applied the Triton Deployment ({replicas} replica(s)), Service, config and PodDisruptionBudget "
                       f"for generation {generation}")


def _record(memo: kopf.Memo, meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch,
            conditions: list[dict[str, Any]], generation: int) -> None:
    """Write the Stalled/Reconciling pair and keep it for the control loop's next tick (see build/status.py)."""
    _pairs(memo)[str(meta.get("uid"))] = conditions
    patch.status["conditions"] = render.merge_conditions(status.get("conditions"), conditions)
    patch.status["observedGeneration"] = generation


def _owner(meta: kopf.Meta) -> str | None:
    """Name of the InferenceService that controls a child, None for anything else."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == KIND and ref.get("apiVersion") == f"{GROUP}/{VERSION}":
            return str(ref["name"])
    return None


_CHILD = {"labels": {"app.kubernetes.io/managed-by": "batchpilot"}}


@kopf.on.event("apps", "v1", "deployments", **_CHILD)  # type: ignore[arg-type]
@kopf.on.event("v1", "services", **_CHILD)  # type: ignore[arg-type]
@kopf.on.event("v1", "configmaps", **_CHILD)  # type: ignore[arg-type]
@kopf.on.event("policy", "v1", "poddisruptionbudgets", **_CHILD)  # type: ignore[arg-type]
def repair_child(type: str | None, meta: kopf.Meta, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A child edited or deleted by someone else goes back to what its InferenceService says."""
    name = _owner(meta)
    if type is None or name is None or namespace is None or not _leading(memo):
        return  # the initial listing (resume has reconciled every service already), or a standby
    if type != "DELETED" and not edited_by_others(dict(meta), FIELD_MANAGER):
        return  # our own apply, or a status update
    owner = memo.kube.inference_service(namespace, name)
    if owner is None:
        return  # the owner is going: garbage collection removes the children
    spec = _spec(owner["spec"])  # unparsable: reconcile_children has stalled the owner on it already
    failure: render.ReconcileFailure | None = None
    try:
        with _lock(memo):
            reconcile(memo.kube, owner, spec, SETTINGS.fetcher_image)
    except ApiException as e:
        if e.status in (404, 409) or render.namespace_terminating(e):
            return  # the owner just went or goes with its namespace, or another writer won (409, its next event)
        failure = render.repair_failure(e)
    except Exception as e:  # noqa: BLE001 - every failure lands on the owner's status, as reconcile_children's do
        failure = render.repair_failure(e)
    _record_repair(memo, owner, failure)


def _record_repair(memo: kopf.Memo, owner: dict[str, Any], failure: render.ReconcileFailure | None) -> None:
    """A repair's outcome on its owner: a failure as the Stalled/Reconciling pair and a Warning Event; a success
    only where it clears a failure recorded before (a repair that just worked writes nothing)."""
    meta, previous = owner["metadata"], (owner.get("status") or {}).get("conditions")
    pairs, uid, generation = _pairs(memo), str(meta["uid"]), int(meta.get("generation") or 0)
    if failure is None and not render.reconcile_failed(pairs.get(uid) or previous):
        return
    conditions = render.reconcile_conditions(previous, failure, generation, time.time())
    pairs[uid] = conditions
    memo.kube.patch_status(meta["namespace"], meta["name"], {
        "conditions": render.merge_conditions(previous, conditions), "observedGeneration": generation})
    if failure is not None:
        kopf.event(kopf.Body(cast(kopf.RawBody, owner)), type="Warning", reason="ReconcileFailed", message=failure.message)


# backoff: a tick that raised (the API server restarting, a timeout) is retried one period later, not after kopf's
# default 60 s, during which the service would go uncontrolled (tests/e2e/test_faults.py measured 46 s blind).
@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.control_interval_seconds, initial_delay=1.0,
            backoff=SETTINGS.control_interval_seconds)
def control(body: kopf.Body, spec: kopf.Spec, name: str, namespace: str | None, status: kopf.Status, meta: kopf.Meta,
            patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    if not _leading(memo):
        # A standby: no tick, and no history of its own (when it leads, it resumes from what status records).
        memo.pop("history", None)
        return
    parsed = _spec(spec)
    assert namespace is not None  # InferenceService is namespaced
    labels = (namespace, name)
    now = time.time()
    with metrics.loop_seconds.labels(*labels).time(), _lock(memo):
        try:
            result = tick(memo.kube, _prometheus(memo, parsed), SETTINGS, dict(body), parsed,
                          memo.get("history") or render.resumed_history(dict(status)), now,
                          memo.get("batch_stats") or {})
        except Exception:
            metrics.loop_errors.labels(*labels).inc()
            raise
    if result is None:
        return
    obs, decision, retuned = result.observation, result.decision, result.retune
    memo.history, memo.batch_stats = decision.history, result.batch_stats
    outcome = TickOutcome(obs, decision, result.metrics_error, result.acted, retuned, pods_health(result.pods))
    write = tick_write(outcome, parsed, status.get("conditions"), _pairs(memo).get(str(meta.get("uid"))),
                       int(meta.get("generation") or 0), now)
    for key, value in write.status.items():
        patch.status[key] = value
    for event in write.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    metrics.record_tick(namespace, name, parsed.slo.latency_ms, obs, decision)
    if retuned is not None:
        metrics.record_retune(namespace, name, retuned)
