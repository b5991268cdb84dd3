"""Calling Batchpilot's kopf handlers outside a running operator, as kopf would: the same kwargs, a Patch to
inspect, and whatever the handler raised (kopf retries a plain exception, never a PermanentError)."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

import kopf
from kopf._core.engines import posting

from batchpilot import handlers


def in_kopf_context(handler: Callable[[], object]) -> BaseException | None:
    """Call handler as kopf's task would (Events are not posted: no operator runs to post them); returns what it
    raised, None if nothing."""
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False

    def call() -> BaseException | None:
        posting.settings_var.set(settings)  # what kopf's own task context holds
        try:
            handler()
        except Exception as e:  # noqa: BLE001 - returned for the test to inspect
            return e
        return None

    return contextvars.copy_context().run(call)


def call_reconcile_children(kube: Any, obj: dict[str, Any], memo: kopf.Memo | None = None) -> tuple[
        kopf.Patch, kopf.Memo, BaseException | None]:
    """handlers.reconcile_children on the stored object `obj` with memo.kube = kube."""
    patch, memo = kopf.Patch(), memo if memo is not None else kopf.Memo()
    memo.kube = kube
    raised = in_kopf_context(lambda: handlers.reconcile_children(
        body=kopf.Body(obj), spec=obj["spec"], meta=obj["metadata"], status=obj.get("status") or {}, patch=patch,
        memo=memo))
    return patch, memo, raised


def call_repair_child(kube: Any, event: str, child_meta: dict[str, Any], memo: kopf.Memo | None = None) -> tuple[
        kopf.Memo, BaseException | None]:
    """handlers.repair_child for a watch event (ADDED, MODIFIED, DELETED) of the child whose metadata is
    child_meta, with memo.kube = kube (it writes its owner's status itself)."""
    memo = memo if memo is not None else kopf.Memo()
    memo.kube = kube
    raised = in_kopf_context(lambda: handlers.repair_child(type=event, meta=child_meta,
                                                           namespace=child_meta["namespace"], memo=memo))
    return memo, raised


class RecordingKube:
    """A Kube for calling the handlers without an API server: no Deployment yet, no PodMonitor CRD, and every
    applied manifest's kind recorded in `applied`."""

    def __init__(self) -> None:
        self.applied: list[str] = []

    def deployment(self, namespace: str, name: str) -> None:
        return None

    def has_crd(self, name: str) -> bool:
        return False

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(manifest["kind"])
        return manifest
