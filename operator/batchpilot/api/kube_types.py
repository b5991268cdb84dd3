"""Kubernetes types the spec embeds (tolerations, env, quantities), typed as far as the CRD schema needs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema, model_validator

from batchpilot.api.base import ApiModel

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|M|G|T|P)?$"

Quantity = Annotated[
    int | Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=64)],
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": QUANTITY_PATTERN,
                    "x-kubernetes-int-or-string": True}),
]
"""A resource quantity: 1, "500m", "2Gi" (an integer or a string, as in a Pod)."""

KubeObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A Kubernetes object passed through as written (validated by the API server when the Pod is created)."""


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]
    """Name of the object."""


class Toleration(ApiModel):
    """A Pod toleration."""

    key: Annotated[str, Field(max_length=316)] | None = None
    """Taint key (empty with operator Exists: every taint)."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Exists or Equal."""
    value: Annotated[str, Field(max_length=63)] | None = None
    """Taint value (operator Equal)."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match (empty: all)."""
    toleration_seconds: Annotated[int, Field(ge=0)] | None = None
    """How long a NoExecute taint is tolerated."""


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
