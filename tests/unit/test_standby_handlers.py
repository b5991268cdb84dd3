"""The kopf handlers when this replica does not lead (kopf runs only on the leader, but a handler may start while it
is stopping after the Lease was lost): nothing is written and no Kubernetes call is made; the reconcile handler
waits (until kopf cancels it, or this replica leads again, and then reconciles the service as stored then, not the
body kopf handed it)."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import kopf
from kopf._core.engines import posting

from batchpilot import handlers
from kopf_calls import RecordingKube

SPEC = {"model": {"name": "resnet", "repository": {"configMap": "resnet-files"}}, "slo": {"latencyMs": 50}}


def service(generation: int) -> dict[str, Any]:
    return {"apiVersion": "batchpilot.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": "svc", "namespace": "ml", "uid": "u1", "generation": generation}, "spec": SPEC,
            "status": {}}


class Switch:
    """A Leadership whose state the test sets."""

    def __init__(self) -> None:
        self.on = False

    def leading(self) -> bool:
        return self.on

    async def wait_leading(self) -> None:
        while not self.on:
            await asyncio.sleep(0.01)


class UntouchableKube:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a standby called Kube.{name}")


class Kube(RecordingKube):
    """The service as stored is at generation 7; applies are recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def inference_service(self, namespace: str, name: str) -> dict[str, Any]:
        self.reads += 1
        return service(7)


def in_kopf_context(fn: Any) -> Any:
    """Run fn as kopf would, with Event posting off (no operator runs to post them)."""
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False

    def call() -> Any:
        posting.settings_var.set(settings)
        return fn()

    return contextvars.copy_context().run(call)


def test_the_control_timer_and_child_repair_of_a_standby_do_nothing() -> None:
    obj = service(3)
    memo = kopf.Memo(kube=UntouchableKube(), leadership=Switch(), history="stale history of an earlier term")
    patch = kopf.Patch()
    handlers.control(body=kopf.Body(obj), spec=obj["spec"], name="svc", namespace="ml", status={}, meta=obj["metadata"],
                     patch=patch, memo=memo)
    assert not patch and "history" not in memo  # when it leads, it resumes from what status records
    child = {"name": "svc", "ownerReferences": [{"controller": True, "kind": "InferenceService",
                                                  "apiVersion": "batchpilot.dev/v1alpha1", "name": "svc"}]}
    handlers.repair_child(type="DELETED", meta=child, namespace="ml", memo=memo)


def test_a_standby_reconciles_only_once_it_leads_and_then_the_stored_service() -> None:
    kube, switch, patch = Kube(), Switch(), kopf.Patch()
    memo = kopf.Memo(kube=kube, leadership=switch)
    stale = kopf.Body(service(3))

    async def scenario() -> None:
        task = asyncio.create_task(handlers.reconcile_when_leading(body=stale, meta=stale.meta, patch=patch,
                                                                   memo=memo))
        await asyncio.sleep(0.3)
        assert not task.done() and not patch and kube.applied == [] and kube.reads == 0
        switch.on = True
        await asyncio.wait_for(task, 5)

    in_kopf_context(lambda: asyncio.run(scenario()))
    assert kube.reads == 1 and kube.applied == ["ConfigMap", "Service", "PodDisruptionBudget", "Deployment"]
    assert patch["status"]["observedGeneration"] == 7


def test_the_leader_reconciles_the_body_it_is_given() -> None:
    kube, switch, patch = Kube(), Switch(), kopf.Patch()
    switch.on = True
    body = kopf.Body(service(3))
    in_kopf_context(lambda: asyncio.run(handlers.reconcile_when_leading(body=body, meta=body.meta, patch=patch,
                                                                        memo=kopf.Memo(kube=kube, leadership=switch))))
    assert kube.reads == 0 and patch["status"]["observedGeneration"] == 3 and "Deployment" in kube.applied
