"""Compute time per batch size since the last tick, from Triton's cumulative per-pod batch statistics.

Pure. Triton counts, per batch size, the executions of the model and their compute time (`compute_infer`)
since the model was loaded; a reload (a live retune does one) starts them from zero. The difference of two
snapshots of a pod is what it executed in between; summed over pods, it gives the mean compute time of one
batch of each size, unblurred by the mix of sizes that Prometheus' means average over. The compute time a pod spent over the time
between its snapshots is how many executions it had in flight on average: its instances' concurrency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

Snapshot = Mapping[int, tuple[int, int]]
"""batch size -> (executions, compute ns), cumulative since the model was (re)loaded on one pod."""



class BatchSizeCompute(NamedTuple):
    """What Triton's statistics say of one batch size over a stretch of time, all pods together."""

    batch_size: int
    compute_ms: float
    """Mean compute time of one batch of this size."""
    executions: int
    """Batches of this size executed."""


BatchCompute = tuple[BatchSizeCompute, ...]
"""Per batch size, ascending."""
MIN_EXECUTIONS = 5
"""The capacity model learns a batch size's mean since the last tick only over at least this many executions."""


def reloaded(previous: Snapshot, current: Snapshot) -> bool:
    """Whether the pod's counters went back (any batch size fewer executions or less time): a reload."""
    return any(current.get(b, (0, 0))[0] < count or current.get(b, (0, 0))[1] < ns
               for b, (count, ns) in previous.items())


def executions_since(previous: Snapshot | None, current: Snapshot) -> dict[int, tuple[int, int]]:
    """Executions and compute ns per batch size of one pod since the previous snapshot.

    No previous snapshot (a pod seen for the first time) gives nothing: its counts span an unknown time.
    After a reload everything counted now happened since the previous snapshot.
    """
    if previous is None:
        return {}
    base: Snapshot = {} if reloaded(previous, current) else previous
    delta = {b: (count - base.get(b, (0, 0))[0], ns - base.get(b, (0, 0))[1]) for b, (count, ns) in current.items()}
    return {b: d for b, d in delta.items() if d[0] > 0}


def aggregate(deltas: Iterable[Mapping[int, tuple[int, int]]]) -> BatchCompute:
    """Mean compute ms of one batch per batch size over pods, weighted by each pod's executions."""
    total: dict[int, tuple[int, int]] = {}
    for delta in deltas:
        for b, (count, ns) in delta.items():
            seen, spent = total.get(b, (0, 0))
            total[b] = (seen + count, spent + ns)
    return tuple(BatchSizeCompute(b, ns / count / 1e6, count) for b, (count, ns) in sorted(total.items()) if count > 0)


def since_last_tick(previous: Mapping[str, Snapshot], current: Mapping[str, Snapshot]) -> BatchCompute:
    """The service's compute time per batch size between two ticks, from each pod's snapshots (by pod IP)."""
    return aggregate(executions_since(previous.get(pod), snapshot) for pod, snapshot in current.items())


Timed = tuple[float, Snapshot]
"""(seconds when read, snapshot)."""


def concurrency(previous: Mapping[str, Timed], current: Mapping[str, Timed]) -> float | None:
    """Mean executions in flight per pod between two ticks (compute time over the wall time between a pod's two
    snapshots), over the pods seen both times; None when there is none."""
    loads = [sum(ns for _, ns in executions_since(previous[pod][1], snapshot).values()) / 1e9 / (at - previous[pod][0])
             for pod, (at, snapshot) in current.items() if pod in previous and at > previous[pod][0]]
    return sum(loads) / len(loads) if loads else None
