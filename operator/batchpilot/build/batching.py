"""Pure edits of a Triton model configuration (the JSON form the repository API reads and writes)."""

from __future__ import annotations

import copy
from typing import Any

from batchpilot.control.types import Tuning


def queue_delay_us(config: dict[str, Any]) -> int | None:
    """The dynamic batcher's max_queue_delay_microseconds, None when the model does not batch dynamically."""
    batcher = config.get("dynamic_batching")
    if batcher is None:
        return None
    return int(batcher.get("max_queue_delay_microseconds", 0))


def instance_count(config: dict[str, Any]) -> int:
    """Model instances the configuration runs: the counts of its instance groups (1 when it names none)."""
    groups = config.get("instance_group") or []
    return sum(int(g.get("count", 1)) for g in groups) if groups else 1


def tuning_of(config: dict[str, Any]) -> Tuning | None:
    """The tuning a live configuration runs; None when the model does not batch dynamically."""
    delay = queue_delay_us(config)
    return None if delay is None else Tuning(delay, instance_count(config))


def with_tuning(config: dict[str, Any], tuning: Tuning) -> dict[str, Any]:
    """A copy of config with the tuning's delay and instance count; refuses a model without dynamic batching or
    with more than one instance group (whose split of the count is the user's)."""
    if config.get("dynamic_batching") is None:
        raise ValueError(f"model {config.get('name')!r} has no dynamic_batching to retune")
    groups = config.get("instance_group") or []
    if len(groups) > 1 and tuning.instance_count != instance_count(config):
        raise ValueError(f"model {config.get('name')!r} has {len(groups)} instance groups: set "
                         f"spec.batching.instanceCount only for a model with one")
    out = copy.deepcopy(config)
    out["dynamic_batching"]["max_queue_delay_microseconds"] = str(tuning.queue_delay_us)  # int64: a JSON string
    if len(groups) == 1:
        out["instance_group"][0]["count"] = tuning.instance_count
    elif not groups:
        out["instance_group"] = [{"count": tuning.instance_count}]
    return out
