"""The simulator's shared vocabulary: what a trace is, what a policy sees and returns, what a run records.

Every module of `batchpilot.sim` speaks these types; nothing here does work. Times are seconds from the start
of the trace, latencies milliseconds, rates requests per second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from batchpilot.control.batch_stats import BatchCompute

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Trace:
    """One workload: the arrival time of every request."""

    name: str
    """e.g. "step", "ramp-spike", "gamma-cv4"; with the seed it names the run in reports."""
    arrivals: FloatArray
    """Sorted arrival times, seconds from 0, all < duration_s."""
    duration_s: float
    seed: int = 0
    warmup_s: float = 0.0
    """The first seconds are a warm-up (traces.with_warmup): simulated, not measured, the run's record covers
    the rest."""

    def rate(self, bin_s: float = 60.0) -> tuple[FloatArray, FloatArray]:
        """(bin start times, requests/s in each bin): for plots and for the oracle."""
        edges = np.arange(0.0, self.duration_s + bin_s, bin_s)
        counts, _ = np.histogram(self.arrivals, bins=edges)
        return edges[:-1], counts / bin_s


@dataclass(frozen=True)
class Batching:
    """Triton's dynamic batching of every pod of the service (config.pbtxt)."""

    max_batch_size: int
    max_queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...] = ()
    instance_count: int = 1
    queue_timeout_us: int = 0
    """default_queue_policy { timeout_action: REJECT, default_timeout_microseconds }: a request that has waited
    longer is rejected, not run, when the batcher next looks at it; 0: no timeout (Triton's default)."""


@dataclass(frozen=True)
class View:
    """What a policy sees at one decision, as monitoring systems report it (lagged, windowed, per service).

    None means "no data" (no sample in the window, or stale), never zero.
    """

    at: float
    replicas: int
    """Desired replicas (the Deployment's spec)."""
    ready_replicas: int
    """Pods serving (cold start over, not terminating)."""
    pending_pods: int
    """Pods waiting for a GPU (Unschedulable)."""
    batching: Batching
    """What the pods run now."""
    arrival_rate: float | None
    """rate(nv_inference_request_success + failure [window]) summed over pods (Prometheus, scrape-lagged)."""
    latency_ms: float | None
    """Worst pod's latency at the SLO percentile from Triton's summary (covers about the last minute)."""
    queue_ms: float | None
    """Mean queue time per request over the rate window."""
    compute_ms: float | None
    """Mean compute time per request over the rate window."""
    avg_batch_size: float | None
    """Inferences per execution over the rate window."""
    pending_requests: float | None
    """nv_inference_pending_request_count summed over pods at the last scrape."""
    ongoing_per_replica: float | None
    """Requests queued or executing per ready pod, averaged over the time since the previous view (sampled every
    second): Ray Serve's "ongoing requests" and Knative's queue-proxy "concurrency" are both this."""
    gpu_utilization: float | None
    """Mean fraction of the last scrape interval the GPUs were busy (DCGM_FI_DEV_GPU_UTIL), ready pods."""
    queue_compute_ratio: float | None
    """rate(queue_duration_us) / rate(compute_infer_duration_us): NVIDIA's tutorial HPA metric."""
    batch_compute: BatchCompute = ()
    """Compute time per batch size since the previous view, all ready pods (Triton statistics)."""
    concurrency: float | None = None
    """Mean batches in flight per ready pod since the previous view."""
    window_s: float = 30.0
    """The rate window behind the means above."""
    answered_rate: float | None = None
    """rate(nv_inference_request_success [window]) + rate(nv_inference_request_failure [window]) summed over
    pods: what a KEDA Prometheus trigger on Triton's request counters reads (answered only: under overload it
    stays at what the pods serve, or reject)."""
    failure_rate: float | None = None
    """rate(nv_inference_request_failure [window]) summed over pods: requests the queue timeout rejected."""


@dataclass(frozen=True)
class Action:
    """A policy's answer: replicas, and optionally new batching (None: leave it)."""

    replicas: int
    batching: Batching | None = None
    reason: str = ""


class Policy(Protocol):
    """One autoscaler, stepped by the simulator every `period_s` with the view at that time.

    A policy keeps its own state between calls (the simulator holds one policy object per run); each peer's
    decision rule is a pure function inside its module, the class only carries that rule's history.
    """

    name: str
    """Family, e.g. "batchpilot", "hpa-queue-compute", "keda-rate", "knative", "ray-serve", "static", "oracle"."""
    setting: str
    """Its threshold setting, e.g. "default (1000m)" or "swept 0.6"."""
    period_s: float
    """How often it decides."""

    def initial(self) -> Action:
        """Replicas and batching at t=0 (pods already warm)."""
        ...

    def step(self, view: View) -> Action:
        ...


@dataclass(frozen=True)
class ColdStart:
    """Pod start to Ready: image pull (or node provisioning) plus model load, drawn per pod."""

    name: str
    """"cached-image" (20-60 s), "image-pull" (60-180 s), "new-node" (3-10 min)."""
    low_s: float
    high_s: float


@dataclass
class RunRecord:
    """Everything one simulated run produced (filled by the engine, read by metrics and plots)."""

    policy: str
    setting: str
    trace: str
    seed: int
    slo_ms: float
    percentile: int
    duration_s: float
    arrival: FloatArray = field(default_factory=lambda: np.zeros(0))
    """Arrival time of every request, in trace order."""
    latency_ms: FloatArray = field(default_factory=lambda: np.zeros(0))
    """End-to-end latency per request, same order; np.inf for a failed request (timeout, no pod)."""
    timeline_t: list[float] = field(default_factory=list)
    """Sample times (every second) of the series below."""
    timeline_replicas: list[int] = field(default_factory=list)
    """Desired replicas."""
    timeline_ready: list[int] = field(default_factory=list)
    timeline_billed: list[int] = field(default_factory=list)
    """Pods holding a GPU (scheduled, starting, serving or draining)."""
    gpu_seconds: float = 0.0
    """GPU time billed: from a pod's scheduling to its release (cold starts and draining included)."""
    scale_events: int = 0
    cold_starts: int = 0
    reloads: int = 0
    """Pod model reloads for retunes."""
    wall_s: float = 0.0
