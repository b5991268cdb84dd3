"""InferenceService status: what the operator observed, decided and applied."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from batchpilot.api.base import ApiModel


class ObservedMetrics(ApiModel):
    """The last observation of the service, from Prometheus."""

    arrival_rate: float | None = None
    """Requests per second arriving at the service."""
    latency_ms: float | None = None
    """Server-side latency at the SLO percentile (worst pod), milliseconds."""
    queue_ms: float | None = None
    """Mean time a request waited in Triton's queue, milliseconds."""
    compute_ms: float | None = None
    """Mean compute time per request (the batch it ran in), milliseconds."""
    avg_batch_size: float | None = None
    """Inferences per model execution."""
    pending: float | None = None
    """Requests queued in Triton, all pods."""
    failure_rate: float | None = None
    """Requests per second Triton failed (a rejectLateRequests queue timeout among them)."""
    gpu_utilization: float | None = None
    """Mean utilization of the pods' GPUs, 0 to 1 (Triton's nv_gpu_utilization); absent without GPU metrics."""
    at: str | None = None
    """When the observation was taken (RFC 3339)."""


class ReplicaChange(ApiModel):
    """A replica count before and after a decision."""

    from_: int = Field(alias="from")
    """Replicas before."""
    to: int
    """Replicas after."""


class BatchingValues(ApiModel):
    """Dynamic batching of the pods at one moment."""

    max_queue_delay_microseconds: int | None = None
    """Queue delay (absent: unknown, the spec's was assumed)."""
    instance_count: int
    """Model instances per pod."""


class BatchingChange(ApiModel):
    """The pods' batching before and after a retune."""

    from_: BatchingValues = Field(alias="from")
    """Before."""
    to: BatchingValues
    """After."""


class LastDecision(ApiModel):
    """The control loop's latest decision and why."""

    at: str
    """When it was decided (RFC 3339)."""
    reason: str
    """Machine-readable reason (also the Event reason)."""
    message: str
    """Human-readable explanation with the inputs that drove it."""
    replicas: ReplicaChange
    """Replica count before and after."""
    batching: BatchingChange | None = None
    """The pods' batching before and after, when the decision retuned them (absent: unchanged)."""
    predicted_latency_ms: float | None = None
    """Latency the capacity model predicted for the new replica count (absent: no model yet)."""


class AppliedBatching(ApiModel):
    """The dynamic batching the running pods were given (auto mode)."""

    max_queue_delay_microseconds: int
    """Queue delay every ready pod runs; also written to the config ConfigMap so new pods start with it."""
    instance_count: int | None = None
    """Model instances every ready pod runs; also written to the config ConfigMap."""
    pods: int
    """Ready pods checked in the last pass."""


class Condition(ApiModel):
    """A standard Kubernetes condition."""

    type: str
    """Ready, MetricsAvailable, Autoscaling, SLOMet (the control loop's), Stalled or Reconciling (applying the
    children: Stalled=True when the spec or the cluster must change first, Reconciling=True while an error is
    retried)."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str
    """CamelCase reason."""
    message: str
    """Explanation for people."""
    last_transition_time: str
    """When status last changed."""
    observed_generation: int | None = None
    """The spec generation this condition was computed for."""


class InferenceServiceStatus(ApiModel):
    """Observed state of an InferenceService."""

    observed_generation: int | None = None
    """The spec generation the operator last acted on (Stalled and Reconciling say whether applying it worked)."""
    replicas: int | None = None
    """Desired replicas of the Triton Deployment."""
    ready_replicas: int | None = None
    """Replicas whose Triton is ready."""
    selector: str | None = None
    """Label selector of the Triton pods."""
    url: str | None = None
    """The in-cluster inference endpoint (KServe v2 over HTTP, through the Service): POST requests to it."""
    observed: ObservedMetrics | None = None
    """Latest observation."""
    batching: AppliedBatching | None = None
    """Batching applied to the pods (auto mode)."""
    last_decision: LastDecision | None = None
    """Latest decision that changed replicas or batching."""
    last_scale_time: str | None = None
    """When the loop last changed the replica count (RFC 3339, as in HorizontalPodAutoscaler): a restarted operator
    resumes its cooldowns from it."""
    last_scale_down_time: str | None = None
    """When the loop last removed replicas after the load fell (RFC 3339): with lastBurstMissTime, the burst memory a
    restarted operator resumes (spec.autoscaling.scaleDown.burstMemorySeconds)."""
    last_burst_miss_time: str | None = None
    """When the SLO was last missed while replicas were starting within scaleDown.burstMemorySeconds of the scale-down
    at lastScaleDownTime (RFC 3339): for that long after it no replica is removed below what the bursts' highest rate
    needs (decision reason HoldingForBursts)."""
    last_burst_return_time: str | None = None
    """When, while that held, the arrival rate last came back up to the bursts' highest (within 20% of it) after
    falling under it (RFC 3339): the hold lasts scaleDown.burstMemorySeconds from this too."""
    cold_start_seconds: list[float] | None = None
    """How long the loop's last scale-ups (at most 5, oldest first) took, in seconds, from the decision that asked
    for the replicas (or the first tick that saw replicas starting that it had not asked for) until every one was
    ready: the planner carries a climbing load over the longest (planner.start_ahead), and a restarted operator
    resumes them."""
    conditions: list[Condition] | None = None
    """Ready, MetricsAvailable, Autoscaling, SLOMet, Stalled, Reconciling."""
