"""The autoscalers people run today, as simulator policies, by family; `make` builds one for a run.

Families: "hpa-queue-compute" and "hpa-gpu" (hpa.py), "keda-rate" and "keda-latency" (keda.py), "knative"
(knative.py), "ray-serve" (ray_serve.py), "static" and "oracle" (static.py, oracle.py). Every peer runs the
same static batching (sizing.best_static_batching) and never changes it; threshold peers run at their
documented default (setting None) or at a swept value from `settings(family, ctx).sweep`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from batchpilot.sim.policies import hpa, keda, knative, ray_serve
from batchpilot.sim.policies.oracle import OraclePolicy
from batchpilot.sim.policies.sizing import Settings
from batchpilot.sim.policies.static import StaticPolicy, peak_replicas
from batchpilot.sim.types import Action, Batching, ColdStart, Policy, Trace


@dataclass(frozen=True)
class PeerContext:
    """What every peer of one run is set up from: the service's bounds, its sizing and the workload."""

    min_replicas: int
    """minReplicas / min-scale / min_replicas of every peer (>= 1: scale to zero is not compared)."""
    max_replicas: int
    """maxReplicas / max-scale / max_replicas of every peer."""
    initial_replicas: int
    """Replicas at t=0 (already warm) for the reactive peers."""
    batching: Batching
    """The static batching every peer runs (best_static_batching)."""
    capacity: float
    """Measured req/s one pod serves within the SLO at that batching (measure_capacity)."""
    slo_ms: float
    """Latency SLO (ms) at `percentile`."""
    percentile: int
    """SLO percentile, e.g. 95."""
    trace: Trace | None = None
    """The workload: needed by "static" (its peak) and "oracle" (its future)."""
    cold_start: ColdStart | None = None
    """Pod start to Ready: "oracle" runs ahead by its upper bound."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"need 1 <= min_replicas ({self.min_replicas}) <= max_replicas ({self.max_replicas})")
        if not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError(f"initial_replicas ({self.initial_replicas}) must lie in min..max replicas")
        if not self.capacity > 0:
            raise ValueError(f"capacity must be > 0 req/s per pod, got {self.capacity}: "
                             "no rate meets the SLO at this batching (see sizing.measure_capacity)")


Builder = Callable[[float, str, PeerContext], Policy]
"""(threshold, setting label, context) -> policy."""


@dataclass(frozen=True)
class Family:
    """One peer family of the registry."""

    build: Builder
    """Builds the policy for a threshold value (ignored by families without one)."""
    settings: Callable[[PeerContext], Settings] | None
    """Default and sweep of its threshold; None for families without one (static, oracle)."""
    show: Callable[[float], str] = "{:g}".format
    """How its default reads in the setting label, e.g. 1.0 -> "1000m"."""


def _start(ctx: PeerContext) -> Action:
    return Action(replicas=ctx.initial_replicas, batching=ctx.batching, reason="Initial")


def _hpa_rules(ctx: PeerContext) -> hpa.HpaRules:
    return hpa.HpaRules(min_replicas=ctx.min_replicas, max_replicas=ctx.max_replicas)


def _hpa_queue_compute(value: float, label: str, ctx: PeerContext) -> Policy:
    return hpa.HpaPolicy("hpa-queue-compute", label, hpa.queue_compute_ratio, hpa.Target.POD_AVERAGE, value,
                         _hpa_rules(ctx), _start(ctx))


def _hpa_gpu(value: float, label: str, ctx: PeerContext) -> Policy:
    return hpa.HpaPolicy("hpa-gpu", label, hpa.gpu_utilization, hpa.Target.POD_AVERAGE, value, _hpa_rules(ctx),
                         _start(ctx))


def _keda_rate(value: float, label: str, ctx: PeerContext) -> Policy:
    return keda.keda_rate(label, value, _hpa_rules(ctx), _start(ctx))


def _keda_latency(value: float, label: str, ctx: PeerContext) -> Policy:
    return keda.keda_latency(label, value, _hpa_rules(ctx), _start(ctx))


def _knative(value: float, label: str, ctx: PeerContext) -> Policy:
    return knative.KnativePolicy(label, value, ctx.min_replicas, ctx.max_replicas, _start(ctx))


def _ray_serve(value: float, label: str, ctx: PeerContext) -> Policy:
    return ray_serve.RayServePolicy(label, value, ctx.min_replicas, ctx.max_replicas, _start(ctx))


def _static(_value: float, label: str, ctx: PeerContext) -> Policy:
    if ctx.trace is None:
        raise ValueError("the static peer needs the trace (PeerContext.trace) to size for its peak")
    replicas = peak_replicas(ctx.trace, ctx.capacity, ctx.min_replicas, ctx.max_replicas)
    return StaticPolicy(replicas, ctx.batching, label)


def _oracle(_value: float, label: str, ctx: PeerContext) -> Policy:
    if ctx.trace is None or ctx.cold_start is None:
        raise ValueError("the oracle needs the trace and the cold start (PeerContext.trace, .cold_start)")
    return OraclePolicy(ctx.trace, ctx.capacity, ctx.cold_start, ctx.batching, ctx.min_replicas,
                        ctx.max_replicas, label)


FAMILIES: dict[str, Family] = {
    "hpa-queue-compute": Family(_hpa_queue_compute, lambda ctx: hpa.QUEUE_COMPUTE_SETTINGS,
                                lambda v: f"{round(v * 1000)}m"),
    "hpa-gpu": Family(_hpa_gpu, lambda ctx: hpa.GPU_SETTINGS, lambda v: f"{v * 100:g}%"),
    "keda-rate": Family(_keda_rate, lambda ctx: keda.rate_settings(ctx.capacity), lambda v: f"{v:.0f} req/s"),
    "keda-latency": Family(_keda_latency, lambda ctx: keda.latency_settings(ctx.slo_ms), lambda v: f"{v:g} ms"),
    "knative": Family(_knative, lambda ctx: knative.SETTINGS),
    "ray-serve": Family(_ray_serve, lambda ctx: ray_serve.SETTINGS),
    "static": Family(_static, None),
    "oracle": Family(_oracle, None),
}
"""Every peer family by name (the Policy.name of what it builds)."""


def settings(family: str, ctx: PeerContext) -> Settings | None:
    """The family's threshold default and sweep; None when it has no threshold."""
    found = _family(family).settings
    return None if found is None else found(ctx)


def make(family: str, setting: float | None, ctx: PeerContext) -> Policy:
    """A fresh policy of `family` at threshold `setting` (None: the documented default) for one run."""
    peer = _family(family)
    if peer.settings is None:
        if setting is not None:
            raise ValueError(f"peer family {family!r} has no threshold to set (got {setting})")
        return peer.build(0.0, "", ctx)
    default = peer.settings(ctx).default
    if setting is None:
        return peer.build(default, f"default ({peer.show(default)})", ctx)
    if not setting > 0:
        raise ValueError(f"threshold of {family!r} must be > 0, got {setting}")
    return peer.build(setting, f"swept {setting:g}", ctx)


def _family(family: str) -> Family:
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown peer family {family!r}; known: {', '.join(FAMILIES)}") from None


__all__ = ["FAMILIES", "Family", "PeerContext", "Settings", "make", "settings"]
