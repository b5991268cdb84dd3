"""Compute time per batch size of a model served by a running Triton, from Triton's own statistics.

For each batch size: one request of that many rows at a time (alone in the queue, Triton runs it as one batch of
exactly that size), and after each the model's per-batch-size statistics (`batch_stats[].compute_infer`) read
back; the point is the median of the executions' compute times. The model's inputs are zeros of the shapes its
configuration declares (variable dimensions need --shape). The perf_analyzer binary is not needed (the PyPI
`perf-analyzer` package is an empty placeholder); files it wrote are read by files.py instead.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from batchpilot.api.spec import ProfilePoint
from batchpilot.profiling.files import ProfileError

WIRE = {"TYPE_BOOL": ("BOOL", 1), "TYPE_UINT8": ("UINT8", 1), "TYPE_INT8": ("INT8", 1), "TYPE_UINT16": ("UINT16", 2),
        "TYPE_INT16": ("INT16", 2), "TYPE_FP16": ("FP16", 2), "TYPE_BF16": ("BF16", 2), "TYPE_UINT32": ("UINT32", 4),
        "TYPE_INT32": ("INT32", 4), "TYPE_FP32": ("FP32", 4), "TYPE_UINT64": ("UINT64", 8), "TYPE_INT64": ("INT64", 8),
        "TYPE_FP64": ("FP64", 8)}
"""config.pbtxt data type -> (the inference protocol's datatype, bytes per element)."""
WARMUP = 5
"""Requests per batch size, all sizes before any is measured, not counted (first-call costs: allocations, kernel
selection, a JIT's optimization passes)."""
STATS_WAIT_S = 5.0
"""How long an execution's statistics may take to appear after its answer."""

Input = tuple[str, str, tuple[int, ...], int]
"""(name, wire datatype, shape with the batch dimension, bytes)."""


class Served(Protocol):
    """The running Triton, as far as profiling needs it (adapters/triton.py's TritonAdmin and batch_stats)."""

    def config(self, model: str) -> dict[str, Any]: ...

    def infer_zeros(self, model: str, inputs: Sequence[Input]) -> None: ...

    def batch_stats(self, model: str) -> dict[int, tuple[int, int]] | None: ...


def batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two up to maxBatchSize, and maxBatchSize itself."""
    sizes, b = [], 1
    while b < max_batch_size:
        sizes.append(b)
        b *= 2
    return [*sizes, max_batch_size]


def inputs(config: Mapping[str, Any], batch: int, shapes: Mapping[str, Sequence[int]]) -> list[Input]:
    """Zero tensors for one request of `batch` rows, from the model's configuration (Triton's JSON form)."""
    out: list[Input] = []
    declared = config.get("input") or []
    if not declared:
        raise ProfileError(f"model {config.get('name')!r} declares no inputs in its configuration; declare them in "
                           f"config.pbtxt (name, data_type, dims)")
    for entry in declared:
        name, dtype = str(entry.get("name")), str(entry.get("data_type"))
        if dtype not in WIRE:
            raise ProfileError(f"input {name!r} is {dtype}: only numeric tensors can be generated; profile it with "
                               f"perf_analyzer and import the CSV (--perf-analyzer)")
        dims = [int(d) for d in shapes.get(name, entry.get("dims") or [])]
        if any(d < 0 for d in dims):
            raise ProfileError(f"input {name!r} has variable dims {dims}; give a shape: --shape {name}=3,224,224")
        wire, width = WIRE[dtype]
        elements = batch
        for d in dims:
            elements *= d
        out.append((name, wire, (batch, *dims), elements * width))
    return out


def _executions(served: Served, model: str, batch: int) -> tuple[int, int]:
    stats = served.batch_stats(model)
    if stats is None:
        raise ProfileError(f"model {model!r}: Triton's statistics endpoint did not answer")
    return stats.get(batch, (0, 0))


def _one(served: Served, model: str, batch: int, request: Sequence[Input]) -> float:
    """The compute ms of one execution of `batch` rows (the mean if Triton ran more in between)."""
    count, ns = _executions(served, model, batch)
    served.infer_zeros(model, request)
    deadline = time.monotonic() + STATS_WAIT_S
    while True:
        after, after_ns = _executions(served, model, batch)
        if after > count:
            return (after_ns - ns) / (after - count) / 1e6
        if time.monotonic() > deadline:
            raise ProfileError(f"model {model!r}: a request of {batch} row(s) was answered but no execution of batch "
                               f"size {batch} was recorded in {STATS_WAIT_S:g}s; is another client sending to it?")
        time.sleep(0.01)


def measure(served: Served, model: str, sizes: Sequence[int] | None = None, repeats: int = 20,
            shapes: Mapping[str, Sequence[int]] | None = None,
            progress: Callable[[str], None] = lambda _: None) -> list[ProfilePoint]:
    """One point per batch size: the median compute time of `repeats` executions of exactly that size."""
    config = served.config(model)
    top = int(config.get("max_batch_size") or 0)
    if top < 1:
        raise ProfileError(f"model {model!r} has max_batch_size {top}: Triton does not batch it, so there is no curve "
                           f"to measure; set max_batch_size in its config.pbtxt")
    chosen = list(sizes) if sizes else batch_sizes(top)
    too_big = [b for b in chosen if b < 1 or b > top]
    if too_big:
        raise ProfileError(f"batch sizes {too_big} are outside 1..{top} (the model's max_batch_size)")
    requests = {b: inputs(config, b, shapes or {}) for b in chosen}
    # Every size first, then the measurements: a JIT (TorchScript's profiling executor, TensorRT's builders)
    # optimizes over the first calls of each shape, and the first size measured would carry all of it.
    for b in chosen:
        for _ in range(WARMUP):
            served.infer_zeros(model, requests[b])
    points = []
    for b in chosen:
        times = [_one(served, model, b, requests[b]) for _ in range(repeats)]
        points.append(ProfilePoint(batch_size=b, latency_ms=statistics.median(times)))
        progress(f"batch {b:>4}: {points[-1].latency_ms:8.2f} ms median of {repeats} "
                 f"(min {min(times):.2f}, max {max(times):.2f})")
    return points
