"""Pure edits of a Triton model configuration (the JSON form the repository API reads and writes)."""

from __future__ import annotations

import copy
from typing import Any


def queue_delay_us(config: dict[str, Any]) -> int | None:
    """The dynamic batcher's max_queue_delay_microseconds, None when the model does not batch dynamically."""
    batcher = config.get("dynamic_batching")
    if batcher is None:
        return None
    return int(batcher.get("max_queue_delay_microseconds", 0))


def with_queue_delay(config: dict[str, Any], delay_us: int) -> dict[str, Any]:
    """A copy of config whose dynamic batcher waits at most delay_us; refuses a model without one."""
    if config.get("dynamic_batching") is None:
        raise ValueError(f"model {config.get('name')!r} has no dynamic_batching to retune")
    out = copy.deepcopy(config)
    out["dynamic_batching"]["max_queue_delay_microseconds"] = str(delay_us)  # int64 fields are strings in JSON
    return out
