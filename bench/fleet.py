"""A fleet of InferenceServices across namespaces, and the check that one of them is reconciled correctly.

The check is pure (live objects in, problems out) so the bench and the integration test judge alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batchpilot.api.spec import GROUP, KIND, VERSION
from batchpilot.build.names import ChildNames

Key = tuple[str, str]
"""(namespace, name) of an InferenceService."""
Obj = dict[str, Any]
PART_OF = "app.kubernetes.io/part-of"
MODEL_CONFIGMAP = "bench-model"


@dataclass(frozen=True)
class Expectation:
    """What a reconciled service looks like in one phase of a run."""

    generation: int
    """The spec generation the phase applied (1 after create, 2 after one edit)."""
    latency_ms: float
    queue_delay_us: int
    stale_templates: Mapping[Key, str] = field(default_factory=dict)
    """Deployment pod templates from before an edit: a template still equal to its entry is not updated yet."""


CREATE = Expectation(generation=1, latency_ms=200.0, queue_delay_us=2000)


def edit_of(before: Expectation, stale_templates: Mapping[Key, str]) -> Expectation:
    """The next phase: a new SLO and queue delay on every service (the delay reaches the pod template)."""
    return Expectation(generation=before.generation + 1, latency_ms=before.latency_ms - 50,
                       queue_delay_us=before.queue_delay_us // 2, stale_templates=stale_templates)


@dataclass(frozen=True)
class Fleet:
    """`services` InferenceServices named svc-000..., dealt round-robin over `namespaces` namespaces."""

    services: int = 100
    namespaces: int = 5
    prefix: str = "bench"

    @property
    def namespace_names(self) -> list[str]:
        return [f"{self.prefix}-{i}" for i in range(self.namespaces)]

    @property
    def selector(self) -> str:
        return f"{PART_OF}={self.prefix}"

    def keys(self) -> list[Key]:
        names = self.namespace_names
        return [(names[i % self.namespaces], f"svc-{i:03d}") for i in range(self.services)]

    def namespace_manifests(self) -> list[Obj]:
        """Each namespace with the (placeholder) model ConfigMap its services mount; pods never start here."""
        out: list[Obj] = []
        for ns in self.namespace_names:
            out.append({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": ns, "labels": {PART_OF: self.prefix}}})
            out.append({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": MODEL_CONFIGMAP, "namespace": ns, "labels": {PART_OF: self.prefix}},
                        "data": {"model.py": "# placeholder: the bench measures reconcile, not serving\n"}})
        return out

    def inference_services(self, namespace: str, expect: Expectation) -> list[Obj]:
        """The InferenceServices of one namespace, with the SLO and queue delay of a phase."""
        return [{
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name, "namespace": ns, "labels": {PART_OF: self.prefix}},
            "spec": {
                "model": {"name": "bench", "repository": {"configMap": MODEL_CONFIGMAP}, "maxBatchSize": 8},
                "slo": {"latencyMs": expect.latency_ms},
                "batching": {"mode": "fixed", "maxQueueDelayMicroseconds": expect.queue_delay_us},
            },
        } for ns, name in self.keys() if ns == namespace]


def template_key(deployment: Obj | None) -> str:
    """The pod template as a comparable string (server defaulting is deterministic)."""
    template = ((deployment or {}).get("spec") or {}).get("template")
    return json.dumps(template, sort_keys=True)


def _owner_problem(kind: str, obj: Obj, owner: Obj) -> str | None:
    controllers = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")]
    want = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"]}
    if len(controllers) != 1 or any(controllers[0].get(k) != v for k, v in want.items()):
        return f"{kind}: controller ownerReference {controllers} is not {want}"
    return None


def _label_problems(what: str, labels: Mapping[str, str] | None, want: Mapping[str, str]) -> list[str]:
    got = labels or {}
    return [f"{what}: label {k}={got.get(k)!r}, want {v!r}" for k, v in want.items() if got.get(k) != v]


def service_problems(key: Key, expect: Expectation, isvc: Obj | None, deployment: Obj | None,
                     service: Obj | None, config_map: Obj | None) -> list[str]:
    """Why the InferenceService `key` is not (yet) reconciled as `expect` says; empty when it is."""
    name = key[1]
    if isvc is None:
        return ["InferenceService missing"]
    meta, status = isvc["metadata"], isvc.get("status") or {}
    generation, observed = meta.get("generation", 0), status.get("observedGeneration")
    problems = []
    if generation < expect.generation:
        problems.append(f"metadata.generation {generation} < {expect.generation}: the spec edit has not landed")
    if observed != generation:
        problems.append(f"status.observedGeneration {observed} != metadata.generation {generation}")
    names = ChildNames(name)
    children = {f"Deployment {names.deployment}": deployment, f"Service {names.service}": service,
                f"ConfigMap {names.config_map}": config_map}
    for kind, obj in children.items():
        if obj is None:
            problems.append(f"{kind} missing")
            continue
        owner = _owner_problem(kind, obj, isvc)
        problems += [owner] if owner else []
        problems += _label_problems(kind, obj["metadata"].get("labels"), names.labels)
    if deployment is not None:
        spec = deployment.get("spec") or {}
        if (spec.get("selector") or {}).get("matchLabels") != names.selector:
            problems.append(f"Deployment: selector {spec.get('selector')} is not {names.selector}")
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
        problems += _label_problems("Deployment pod template", template_labels, names.labels)
        stale = expect.stale_templates.get(key)
        if stale is not None and template_key(deployment) == stale:
            problems.append("Deployment: pod template unchanged since the spec edit")
    if service is not None and (service.get("spec") or {}).get("selector") != names.selector:
        problems.append(f"Service: selector {(service.get('spec') or {}).get('selector')} is not {names.selector}")
    if config_map is not None:
        text = (config_map.get("data") or {}).get("config.pbtxt", "")
        if f"max_queue_delay_microseconds: {expect.queue_delay_us}\n" not in text:
            problems.append(f"ConfigMap: config.pbtxt lacks max_queue_delay_microseconds: {expect.queue_delay_us}")
    return problems
