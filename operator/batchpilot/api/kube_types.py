"""Kubernetes types the spec embeds (tolerations, env, quantities), typed as far as the CRD schema needs."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from kubernetes.utils import parse_quantity
from pydantic import Field, WithJsonSchema, model_validator

from batchpilot.api.base import ApiModel, cel

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|M|G|T|P)?$"
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""The name of a Secret, ConfigMap, PersistentVolumeClaim or ServiceAccount (an RFC 1123 subdomain, <= 253)."""
_NAME_PART = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
QUALIFIED_NAME_PATTERN = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                          + _NAME_PART + "$")
"""A label key, taint key or extended resource name: an optional DNS prefix and '/', then <= 63 characters."""
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
"""A label value (also a taint value), <= 63 characters."""
RESOURCE_NAME_RULE = ("self.all(k, k in ['cpu', 'memory', 'ephemeral-storage'] || (k.contains('/') && "
                      f"!k.startsWith('kubernetes.io/') && k.matches(r'{QUALIFIED_NAME_PATTERN}')))")
"""Resources a Triton container may ask for. Not hugepages-<size>: Kubernetes wants them requested equal to their
limit and beside cpu or memory, and Triton does not use them."""
LIST_BY_NAME: dict[str, object] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
"""A list keyed by name, as Kubernetes merges it (env, imagePullSecrets): the API server refuses a name twice."""
WHOLE_EXTENDED_RULE = "self.all(k, !k.contains('/') || string(self[k]).matches('^[0-9]+$'))"

Quantity = Annotated[
    Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=64)],
    # minimum holds for the integer form, pattern for the string form (the int-or-string anyOf must stay bare).
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "minimum": 0, "maxLength": 64,
                    "pattern": QUANTITY_PATTERN,
                    "x-kubernetes-int-or-string": True}),
]
"""A resource quantity: 1, "500m", "2Gi" (an integer or a string, as in a Pod)."""


def is_extended(resource: str) -> bool:
    """An extended resource (nvidia.com/gpu): counted in whole units, never overcommitted."""
    return "/" in resource


def quantity(value: int | str) -> Decimal:
    return Decimal(value) if isinstance(value, int) else Decimal(parse_quantity(value))


def resource_problem(resources: dict[str, int | str] | None) -> str | None:
    """What Kubernetes would refuse in one requests or limits map: an unknown resource name, or an extended
    resource that is not a whole number."""
    for name, value in (resources or {}).items():
        standard = name in ("cpu", "memory", "ephemeral-storage")
        qualified = is_extended(name) and not name.startswith("kubernetes.io/") and re.fullmatch(
            QUALIFIED_NAME_PATTERN, name)
        if not (standard or qualified):
            return (f"{name!r} is not a resource a Triton pod takes: use cpu, memory, ephemeral-storage or a "
                    "qualified extended resource such as nvidia.com/gpu")
        if is_extended(name) and not re.fullmatch(r"[0-9]+", str(value)):
            return f"{name}: {value!r} must be a whole number (extended resources are counted in units)"
    return None

KubeObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A Kubernetes object passed through as written (validated by the API server when the Pod is created)."""


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace."""

    name: Annotated[str, Field(pattern=OBJECT_NAME_PATTERN, max_length=253)]
    """Name of the object."""


class Toleration(ApiModel):
    """A Pod toleration."""

    model_config = cel("has(self.key) || self.operator == 'Exists'",
                       "a toleration without key must use operator Exists (it then matches every taint)",
                       "self.operator != 'Exists' || !has(self.value) || self.value == ''",
                       "operator Exists takes no value",
                       "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                       "tolerationSeconds applies to effect NoExecute only")

    key: Annotated[str, Field(pattern=QUALIFIED_NAME_PATTERN, max_length=316)] | None = None
    """Taint key (empty with operator Exists: every taint)."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Exists or Equal."""
    value: Annotated[str, Field(pattern=LABEL_VALUE_PATTERN, max_length=63)] | None = None
    """Taint value (operator Equal)."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match (empty: all)."""
    toleration_seconds: Annotated[int, Field(ge=0)] | None = None
    """How long a NoExecute taint is tolerated."""

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.key is None and self.operator != "Exists":
            raise ValueError("spec.runtime.tolerations: a toleration without key must use operator Exists")
        if self.operator == "Exists" and self.value:
            raise ValueError(f"spec.runtime.tolerations: operator Exists takes no value (got {self.value!r})")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("spec.runtime.tolerations: tolerationSeconds applies to effect NoExecute only")
        return self


class EnvVar(ApiModel):
    """An environment variable of the Triton container: a value, or valueFrom as in a Pod spec."""

    name: Annotated[str, Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", max_length=256)]
    """Variable name."""
    value: str | None = None
    """Literal value."""
    value_from: KubeObject | None = None
    """secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef, as in a Pod spec."""

    @model_validator(mode="after")
    def _one(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"spec.runtime.env {self.name}: set value or valueFrom, not both")
        return self
