"""Test factories shared by the unit tests: a service spec, an observation and the measured profile.

Each test module keeps its own short wrapper with the defaults its cases read best with; what a valid spec and
an observation are made of lives here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.types import Observation

NOW = 1_000_000.0
"""The clock of the pure tests' observations."""

H100_RESNET50_MS = ((1, 47.4), (2, 40.7), (4, 41.2), (8, 43.3), (16, 43.7), (32, 43.2), (64, 76.9))
"""(batch size, compute ms) of the sample service's profile: a flat curve, a batch of 32 costs what a batch of 1
does (the H100 ResNet-50 shape, 10x slower, as the sandbox's GPU emulator runs it)."""


def profile(points: Sequence[tuple[int, float]] = H100_RESNET50_MS) -> dict[str, Any]:
    """spec.model.profile from (batch size, ms) pairs."""
    return {"points": [{"batchSize": b, "latencyMs": ms} for b, ms in points]}


def service_spec(*, model: dict[str, Any] | None = None, slo_ms: float = 150, autoscaling: dict[str, Any] | None = None,
                 batching: dict[str, Any] | None = None, **top: Any) -> InferenceServiceSpec:
    """A valid InferenceServiceSpec: model "m" from ConfigMap "m-files" plus `model`, the SLO, and the other
    groups as given (absent: the API's defaults)."""
    body: dict[str, Any] = {"model": {"name": "m", "repository": {"configMap": "m-files"}, **(model or {})},
                            "slo": {"latencyMs": slo_ms}, **top}
    if autoscaling is not None:
        body["autoscaling"] = autoscaling
    if batching is not None:
        body["batching"] = batching
    return InferenceServiceSpec.model_validate(body)


def observation(replicas: int, rate: float | None, *, ready: int | None = None, **metrics: Any) -> Observation:
    """What the loop sees at NOW: `replicas` desired, as many ready unless `ready` says otherwise, `rate` req/s,
    and any other Observation field by name."""
    return Observation(at=NOW, replicas=replicas, ready_replicas=replicas if ready is None else ready,
                       arrival_rate=rate, **metrics)


def uniform_contention(c: float | None, up_to: float = 1024.0) -> tuple[tuple[float, float], ...]:
    """CapacityModel.contention of `c` at every batch size up to `up_to` (None: not measured)."""
    return () if c is None else ((1.0, c), (up_to, c))
