"""How long a request may wait in Triton's queue before it can no longer meet the SLO (spec.batching.
rejectLateRequests).

Triton's queue policy (model_config.proto ModelQueuePolicy; core `src/scheduler_utils.cc`
PriorityQueue::PolicyQueue::ApplyPolicy) rejects a request whose time in the queue exceeds
`default_timeout_microseconds` when the batcher next looks at it, with `timeout_action: REJECT`, instead of
running it. A request that starts its batch later than the SLO less the compute time of a full batch may still
meet the SLO only in a smaller batch, and under overload, when late requests pile up, batches are full: so that
is the timeout. During a burst the pods then serve the requests that can still meet the SLO instead of a stale
backlog that misses it anyway; the rejected ones fail at once (UNAVAILABLE, counted in
nv_inference_request_failure) and the client may retry.
"""

from __future__ import annotations

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.capacity import CapacityModel

MIN_TIMEOUT_FRACTION = 0.1
"""Never less than this fraction of the SLO: a full batch slower than the SLO would otherwise reject all."""


def late_request_timeout_us(slo_ms: float, full_batch_ms: float) -> int:
    """Queue timeout, µs: the SLO less a full batch's compute time, at least MIN_TIMEOUT_FRACTION of the SLO."""
    return max(1, round(max(slo_ms - full_batch_ms, MIN_TIMEOUT_FRACTION * slo_ms) * 1000.0))


def queue_timeout_us(spec: InferenceServiceSpec) -> int | None:
    """The queue timeout the spec asks for; None when it does not (rejectLateRequests off, or no batching).

    The full batch's time comes from spec.model.profile (the API server requires one with rejectLateRequests),
    interpolated at maxBatchSize as the capacity model does (conservative beyond the last point).
    """
    profile = spec.model.profile
    if not spec.batching.reject_late_requests or spec.batching.mode == "off" or spec.model.max_batch_size == 0 \
            or profile is None:
        return None
    full = CapacityModel.from_profile((p.batch_size, p.latency_ms) for p in profile.points)
    return late_request_timeout_us(spec.slo.latency_ms, full.compute_ms(spec.model.max_batch_size))
