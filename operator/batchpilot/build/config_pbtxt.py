"""Render a Triton model configuration (config.pbtxt, protobuf text format) from the spec."""

from __future__ import annotations

from batchpilot.api.spec import BatchingSpec, ModelSpec, TensorSpec
from batchpilot.control.types import Tuning


def _tensors(kind: str, tensors: list[TensorSpec] | None) -> list[str]:
    if not tensors:
        return []
    entries = [f'  {{ name: "{t.name}" data_type: {t.data_type} dims: [ {", ".join(str(d) for d in t.dims)} ] }}'
               for t in tensors]
    return [f"{kind} [", ",\n".join(entries), "]"]


def render_config_pbtxt(model: ModelSpec, batching: BatchingSpec, tuning: Tuning | None = None,
                        queue_timeout_us: int | None = None) -> str:
    """config.pbtxt; tuning, when given, is what the control loop tuned (auto mode); queue_timeout_us, when
    given, rejects requests that waited longer (control/queue_policy.py, spec.batching.rejectLateRequests)."""
    delay = batching.max_queue_delay_microseconds if tuning is None else tuning.queue_delay_us
    instances = batching.instance_count if tuning is None else tuning.instance_count
    lines = [f'name: "{model.name}"']
    if model.backend is not None:
        lines.append(f'backend: "{model.backend}"')
    if model.platform is not None:
        lines.append(f'platform: "{model.platform}"')
    lines.append(f"max_batch_size: {model.max_batch_size}")
    lines += _tensors("input", model.inputs) + _tensors("output", model.outputs)
    if model.max_batch_size > 0 and batching.mode != "off":
        lines.append("dynamic_batching {")
        lines.append(f"  max_queue_delay_microseconds: {delay}")
        if batching.preferred_batch_sizes:
            sizes = ", ".join(str(s) for s in batching.preferred_batch_sizes)
            lines.append(f"  preferred_batch_size: [ {sizes} ]")
        if queue_timeout_us is not None:
            lines.append("  default_queue_policy {")
            lines.append("    timeout_action: REJECT")
            lines.append(f"    default_timeout_microseconds: {queue_timeout_us}")
            lines.append("  }")
        lines.append("}")
    # No `kind`: Triton picks GPU where there is one, CPU otherwise (the sandbox).
    lines.append(f"instance_group [ {{ count: {instances} }} ]")
    return "\n".join(lines) + "\n"
