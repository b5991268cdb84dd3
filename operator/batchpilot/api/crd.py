"""Render the InferenceService CustomResourceDefinition from the pydantic models (`make crds`)."""

from __future__ import annotations

from typing import Any

from batchpilot.api.spec import (
    GROUP,
    KIND,
    PLURAL,
    SERVICE_NAME_MAX,
    SERVICE_NAME_PATTERN,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    InferenceServiceSpec,
)
from batchpilot.api.status import InferenceServiceStatus

_DROP = {"title"}


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Turn pydantic's JSON schema into a structural OpenAPI v3 schema: no $ref, no anyOf-null, no titles."""
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            if rest.get("default", 0) is None:
                rest.pop("default")
            return _structural({**options[0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key == "$defs" or (key == "additionalProperties" and isinstance(value, bool)):
            continue  # extra="forbid" renders additionalProperties: false, which a structural schema refuses
        if key == "properties":
            out[key] = {name: _structural(v, defs) for name, v in value.items()}
        elif key == "default" and isinstance(value, dict):
            # Unset optionals are left out of an object's default: the API server refuses nulls there.
            out[key] = _without_nulls(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema's numeric form -> OpenAPI v3.0's boolean form, which Kubernetes requires.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        else:
            out[key] = _structural(value, defs)
    return out


def openapi_schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return dict(_structural(raw, raw.get("$defs", {})))


def crd() -> dict[str, Any]:
    spec = openapi_schema(InferenceServiceSpec)
    status = openapi_schema(InferenceServiceStatus)
    status["x-kubernetes-preserve-unknown-fields"] = True  # kopf keeps its own bookkeeping under status
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "plural": PLURAL, "singular": SINGULAR, "shortNames": SHORT_NAMES,
                      "listKind": f"{KIND}List", "categories": ["batchpilot"]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    # `kubectl scale` writes spec.replicas (a manual pin); HPA-style readers see the live count.
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                              "labelSelectorPath": ".status.selector"},
                },
                "additionalPrinterColumns": [
                    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas",
                     "description": "Replicas whose Triton is ready"},
                    {"name": "Desired", "type": "integer", "jsonPath": ".status.replicas",
                     "description": "Replicas the control loop wants (mode external: the HPA's count)"},
                    {"name": "Replicas-By", "type": "string", "jsonPath": ".spec.autoscaling.mode",
                     "description": "Who owns the replica count: batchpilot, or external (an HPA or KEDA)"},
                    {"name": "Latency-ms", "type": "number", "jsonPath": ".status.observed.latencyMs",
                     "description": "Observed latency at the SLO percentile"},
                    {"name": "SLO-ms", "type": "number", "jsonPath": ".spec.slo.latencyMs",
                     "description": "Latency objective"},
                    {"name": "Delay-us", "type": "integer",
                     "jsonPath": ".status.batching.maxQueueDelayMicroseconds",
                     "description": "Queue delay the pods run"},
                    {"name": "Batch", "type": "number", "jsonPath": ".status.observed.avgBatchSize",
                     "description": "Average batch size: inferences per model execution"},
                    {"name": "Status", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason",
                     "description": "Reason of the Ready condition"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": InferenceServiceSpec.__doc__,
                    "required": ["spec"],
                    # The name is the Service's (a DNS-1035 label) and a label value: CEL may read metadata.name.
                    "x-kubernetes-validations": [{
                        "rule": f"self.metadata.name.size() <= {SERVICE_NAME_MAX} && "
                                f"self.metadata.name.matches(r'{SERVICE_NAME_PATTERN}')",
                        "message": f"metadata.name must be at most {SERVICE_NAME_MAX} lower-case letters, digits and "
                                   "'-', starting with a letter (it names the Service and is a label value)",
                    }],
                    "properties": {
                        "apiVersion": {"type": "string", "description": "API version of this object."},
                        "kind": {"type": "string", "description": "Kind of this object."},
                        "metadata": {"type": "object"},
                        "spec": spec,
                        "status": status,
                    },
                }},
            }],
        },
    }
