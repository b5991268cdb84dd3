"""What the control loop sees, remembers and decides. Plain data: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Observation:
    """One look at the service: from Prometheus (metrics) and the Deployment (replicas)."""

    at: float
    """Unix time of the observation."""
    replicas: int
    """Desired replicas of the Deployment now."""
    ready_replicas: int
    """Replicas whose Triton is ready (Pending or starting pods are not capacity)."""
    latency_ms: float | None = None
    """Latency at the SLO percentile, worst pod; None when metrics are missing or stale."""
    arrival_rate: float | None = None
    """Requests per second arriving at the service."""


@dataclass(frozen=True)
class History:
    """What the loop carries from one decision to the next."""

    calm_since: float | None = None
    """Since when latency has stayed well below the SLO without a break."""
    last_scale_at: float | None = None
    """When replicas last changed."""


@dataclass(frozen=True)
class Decision:
    """A decision and its reason, as data (it becomes status.lastDecision and an Event)."""

    replicas: int
    reason: str
    message: str
    history: History = field(default_factory=History)

    def changes(self, observation: Observation) -> bool:
        return self.replicas != observation.replicas
