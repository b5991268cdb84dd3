"""Render a Triton model configuration (config.pbtxt, protobuf text format) from the spec."""

from __future__ import annotations

from batchpilot.api.spec import BatchingSpec, ModelSpec


def render_config_pbtxt(model: ModelSpec, batching: BatchingSpec, queue_delay_us: int | None = None) -> str:
    """config.pbtxt; queue_delay_us, when given, is the delay the control loop tuned (auto mode)."""
    delay = batching.max_queue_delay_microseconds if queue_delay_us is None else queue_delay_us
    lines = [
        f'name: "{model.name}"',
        f'backend: "{model.backend}"',
        f"max_batch_size: {model.max_batch_size}",
    ]
    if model.max_batch_size > 0 and batching.mode != "off":
        lines.append("dynamic_batching {")
        lines.append(f"  max_queue_delay_microseconds: {delay}")
        if batching.preferred_batch_sizes:
            sizes = ", ".join(str(s) for s in batching.preferred_batch_sizes)
            lines.append(f"  preferred_batch_size: [ {sizes} ]")
        lines.append("}")
    # No `kind`: Triton picks GPU where there is one, CPU otherwise (the sandbox).
    lines.append(f"instance_group [ {{ count: {batching.instance_count} }} ]")
    return "\n".join(lines) + "\n"
