"""What the control loop sees, remembers and decides. Plain data: no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any

from batchpilot.control.batch_stats import BatchCompute
from batchpilot.control.capacity import CapacityModel


class DecisionReason(enum.StrEnum):
    """Why the control loop decided what it did: status.lastDecision.reason, the Autoscaling condition's reason,
    the Event reason and the decisions metric's label. Condition reasons of other conditions (Ready, Stalled, ...)
    are another vocabulary (build/status.py)."""

    SCALE_UP = "ScaleUp"
    """More replicas planned from the arrival rate (and backlog), no breach."""
    PANIC = "Panic"
    """More replicas at once: the fresh mean latency breaches the SLO."""
    SCALE_DOWN = "ScaleDown"
    """Fewer replicas, after the stabilization window."""
    HOLDING_FOR_BURSTS = "HoldingForBursts"
    """Fewer replicas would do, but replicas removed as the load fell were needed back while the SLO was missed: for
    scaleDown.burstMemorySeconds after that miss, or after a burst last came back while it held, none is removed
    below what the bursts' highest arrival rate needs (none at all while replicas are starting); the pods keep their
    batching while it holds."""
    STABILIZING = "Stabilizing"
    """Fewer replicas would do, not yet for the whole stabilization window (or within one rate window after metrics
    returned)."""
    WITHIN_SLO = "WithinSLO"
    """The replicas running are the plan."""
    SCALE_UP_COOLDOWN = "ScaleUpCooldown"
    """More replicas planned, held until scaleUp.cooldownSeconds after the last change."""
    WAITING_FOR_REPLICAS = "WaitingForReplicas"
    """A breach the plan cannot explain waits for replicas still starting."""
    AT_MAX_REPLICAS = "AtMaxReplicas"
    """A breach at maxReplicas: nothing more to add."""
    BELOW_MIN_REPLICAS = "BelowMinReplicas"
    """Raised into minReplicas."""
    ABOVE_MAX_REPLICAS = "AboveMaxReplicas"
    """Lowered into maxReplicas."""
    BATCHING_BOUND = "BatchingBound"
    """No count meets the SLO while requests wait for batches to fill: the count with the lowest latency runs."""
    PROBING_INSTANCES = "ProbingInstances"
    """Replicas held while the pods try one model instance more (auto batching with maxInstanceCount)."""
    MANUAL_REPLICAS = "ManualReplicas"
    """spec.replicas pins the count; batching is still tuned for it."""
    EXTERNAL_REPLICAS = "ExternalReplicas"
    """autoscaling.mode external: an HPA or KEDA owns the count; batching is still tuned for it."""
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    """No fresh metrics: the count is held (metricsOutage policy hold)."""
    METRICS_FALLBACK = "MetricsFallback"
    """No fresh metrics: raised to fallbackReplicas (metricsOutage policy fallback)."""
    PAUSED = "Paused"
    """spec.paused: observing only."""


@dataclass(frozen=True, kw_only=True)
class ServiceMetrics:
    """What Prometheus says of a service, declared once: adapters/prometheus.py reads it, the Observation carries
    it (it is one), status.observed shows it (api/status.py ObservedMetrics has these fields and `at`; a unit test
    keeps the two equal)."""

    latency_ms: float | None = None
    """Latency at the SLO percentile, worst pod; None when metrics are missing or stale."""
    arrival_rate: float | None = None
    """Requests per second arriving at the service (answered, plus the growth of the pending queue)."""
    queue_ms: float | None = None
    """Mean time a request waited in Triton's queue over the window (fresh, unlike the p95 summary)."""
    compute_ms: float | None = None
    """Mean compute time per request over the window: the time of the batch it ran in."""
    avg_batch_size: float | None = None
    """Inferences per model execution over the window."""
    pending: float | None = None
    """Requests queued in Triton now, all pods."""
    failure_rate: float | None = None
    """Requests per second Triton failed over the window (a queue timeout of rejectLateRequests among them)."""
    gpu_utilization: float | None = None
    """Mean GPU utilization of the service's pods, 0..1; None without GPU metrics (CPU). Shown, not planned on."""


def metric_values(metrics: ServiceMetrics) -> dict[str, Any]:
    """The ServiceMetrics fields of `metrics` (an Observation too), by name: what a copy of them passes on."""
    return {f.name: getattr(metrics, f.name) for f in fields(ServiceMetrics)}


@dataclass(frozen=True, kw_only=True)
class Observation(ServiceMetrics):
    """One look at the service: Prometheus (its ServiceMetrics), Triton (batch statistics), the Deployment
    (replicas)."""

    at: float
    """Unix time of the observation."""
    replicas: int
    """Desired replicas of the Deployment now."""
    ready_replicas: int
    """Replicas whose Triton is ready (Pending or starting pods are not capacity)."""
    unschedulable: int = 0
    """Pods of the service the scheduler could not place (PodScheduled False, reason Unschedulable): asked for,
    and not coming until the cluster has room."""
    queue_delay_us: int | None = None
    """The queue delay the pods run now (None: unknown, the spec's is assumed)."""
    instance_count: int = 1
    """Model instances per pod the pods run now: batch statistics are learned as this count's."""
    window_s: float = 0.0
    """How far back the rates and means reach: evidence older than a change says nothing about it."""
    batch_compute: BatchCompute = ()
    """Compute time of one batch and executions per batch size since the last tick, from Triton's
    per-pod statistics; empty when none could be read (the capacity model then learns from the means above)."""
    concurrency: float | None = None
    """Mean batches in flight per ready pod since the last tick, from the same statistics (at most the instance
    count); None when no pod was seen at both ticks."""


@dataclass(frozen=True)
class History:
    """What the loop carries from one decision to the next."""

    calm_since: float | None = None
    """Since when fewer replicas would have done, without a break."""
    calm_peak: int | None = None
    """The most replicas proposed since calm_since: the scale-down at the window's end goes no lower (as the HPA's
    stabilization window keeps the highest recommendation of the window, not the last)."""
    last_scale_at: float | None = None
    """When replicas last changed."""
    model: CapacityModel = field(default_factory=CapacityModel)
    """What the loop has learned of one replica's capacity."""
    steady_rate: float | None = None
    """The arrival rate of the current steady stretch (within STEADY_BAND of it since steady_since)."""
    steady_since: float | None = None
    probed: tuple[int, ...] = ()
    """Instance counts tried once already (a probe is not repeated, whatever it measured)."""
    probe_since: float | None = None
    """When the probe of one instance more began; None when none is running."""
    probe_ended_at: float | None = None
    """When the last probe ended: until the next retune, one for latency alone is not paced (the probe's batching
    was a measurement, not a choice; planner.LATENCY_RETUNE_S)."""
    last_retune_at: float | None = None
    """When the loop last changed the pods' batching (each change reloads the model on every pod)."""
    last_rate: tuple[float, float] | None = None
    """(when, arrival rate) of the previous observation with a rate: the trend of the load between ticks."""
    serving: tuple[int, float] | None = None
    """(replicas, since when) every one of that many replicas has been ready; None while some are not."""
    slow_at: int | None = None
    """The most replicas seen over the planning target (TARGET_FRACTION of the SLO) at the SLO percentile after they
    had all served for a whole summary window, at the current steady load: the planner removes none down to that
    count again until the load moves (planner.seen_slow)."""
    tried: int | None = None
    """The last count proposed as a trial of one replica fewer (planner.tried_fewer), until the load moves: held()
    keeps it through its first summary window, before its own p95 can be measured."""
    fell_at: float | None = None
    """When the load last fell out of its steady band (planner.steady): no trial of one replica fewer for
    planner.FELL_S after."""
    up_rate: float | None = None
    """The arrival rate when replicas were last added."""
    removed_at: float | None = None
    """When replicas were last removed after the load fell (the rate STEADY_BAND under up_rate): the burst memory's
    scale-down (limits.py)."""
    rise_peak: float | None = None
    """The highest arrival rate since replicas were last added (up_rate, then every tick's): the load they were added
    for, read at its peak rather than at the scale-up, while rate() still climbed."""
    removed_rate: float | None = None
    """The load the replicas removed at removed_at had been added for (rise_peak then): a miss that starts the burst
    memory holds what this rate needs at least (burst_rate), the load those replicas were needed back for."""
    missed_at: float | None = None
    """The last tick at which the SLO was missed while replicas were starting within scaleDown.burstMemorySeconds of
    the scale-down at removed_at: capacity removed was needed back sooner than a pod starts (limits.py removes none
    below what the bursts' highest rate, burst_rate, needs for that long after it or after burst_returned_at)."""
    burst_rate: float | None = None
    """The highest arrival rate since the burst memory began holding (the SLO missed at missed_at), and no lower than
    removed_rate at the miss that began it: while it holds,
    replicas go down to what the policy plans for this rate (Proposal.burst_replicas), not below. None when not
    holding, and in a hold resumed from status after a restart (not saved there) until the next miss: the running
    count is held then."""
    burst_returned_at: float | None = None
    """The last tick at which, while the burst memory held, the arrival rate came back up to the bursts' (within
    STEADY_BAND of burst_rate) after falling under it: the bursts still recur, and the hold lasts
    scaleDown.burstMemorySeconds from here too (a burst served by the capacity held misses nothing, so a hold kept
    only from its last miss ran out between bursts; limits.py)."""
    burst_ebbed: bool = False
    """Whether the arrival rate has been under the bursts' (STEADY_BAND under burst_rate) since the hold began or a
    burst last came back: the next reading at the bursts' rate is a burst coming back, not one going on."""
    rate_marks: tuple[tuple[float, float], ...] = ()
    """(when, arrival rate) every planner.TREND_STEP_S or more, the last planner.TREND_MARKS: whether the load has
    risen steadily for minutes (planner.trend), not only since the previous tick."""
    asked: tuple[float, int] | None = None
    """(when, replicas) at the decision that asked for more replicas (planner.asking), or else at the first tick
    that saw replicas starting (more asked for than ready), until that many are ready: how long the replicas asked
    for now will take at least (planner.start_ahead)."""
    starts: tuple[float, ...] = ()
    """How long the last planner.STARTS_SEEN scale-ups took to be ready (from `asked` to ready): the
    longest is the cold start the planner expects of a replica asked for now."""
    blind_at: float | None = None
    """The last tick without metrics (no arrival rate): no scale-down for one rate window after it (limits.py), while
    rate() covers only part of its window and reads low."""


@dataclass(frozen=True)
class Tuning:
    """The batching pair the control loop tunes on running pods (auto mode) and keeps in the ConfigMap for new ones:
    one type from the planner's plan through the decision to the retune pass and status."""

    queue_delay_us: int
    """The dynamic batcher's max_queue_delay_microseconds."""
    instance_count: int
    """Model instances per pod (the count of every instance_group)."""

    def describe(self) -> str:
        return f"queue delay {self.queue_delay_us} us, {self.instance_count} instance(s) per pod"


@dataclass(frozen=True)
class Decision:
    """A decision and its reason, as data (it becomes status.lastDecision and an Event)."""

    replicas: int
    reason: DecisionReason
    message: str
    history: History = field(default_factory=History)
    predicted_latency_ms: float | None = None
    """The capacity model's latency at the SLO percentile for the chosen replicas (None: no model yet)."""
    batching: Tuning | None = None
    """The queue delay and instance count every pod should run (None: leave batching as it is)."""

    def changes(self, observation: Observation) -> bool:
        return self.replicas != observation.replicas


@dataclass(frozen=True)
class Proposal:
    """What a policy (the planner, or the reactive rule) would do now, before the shared limits (limits.py)."""

    replicas: int
    """The count it wants now, unlimited."""
    reason: DecisionReason
    """The decision's reason if the limits let it through as it is."""
    evidence: str
    """What it saw, in words: every message the limits write starts with it."""
    message: str
    """The decision's message when the count stays as it is."""
    history: History
    urgent: bool = False
    """Goes ahead within scaleUp.cooldownSeconds: an SLO breach, or the metrics-outage fallback."""
    waits_for_ready: bool = False
    """More replicas for a breach the policy cannot explain: they wait until every replica asked for is ready,
    since the starting ones may be what the breach lacks."""
    predicted_latency_ms: float | None = None
    batching: Tuning | None = None
    """What Decision.batching will be (None: leave batching as it is)."""
    burst_replicas: int | None = None
    """The count this policy plans for the bursts the burst memory holds for (History.burst_rate, or the rate now if
    higher): while holding, replicas go down to it and no lower. None: the running count is held."""
