"""Many services on one cluster: each service's run is an engine.Simulation, all stepped together in time,
their pods scheduled on one shared pool of GPUs (lifecycle.GpuPool).

Per slice of `dt_s`: every service's draining pods that are done give their GPU back; the pool then schedules
Pending pods oldest first over all services (kube-scheduler's queue order); each service's Starting pods whose
cold start is over become Ready; then each service's slice runs in service order (monitoring, its policy's
decision, arrivals, serving). Pods a decision creates are scheduled at once while GPUs are free, behind the
Pending pods of every service (the pool always serves the oldest first).

A service's run uses the same random streams as a run of its own (engine.py), so with GPUs to spare a service
here is served exactly as simulate() alone would serve it; only a full pool makes services interact.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from batchpilot.sim.engine import SimConfig, Simulation
from batchpilot.sim.lifecycle import Fleet, GpuPool, Phase
from batchpilot.sim.types import Policy, RunRecord, Trace


@dataclass(frozen=True)
class ServiceRun:
    """One service of the cluster: its workload, its autoscaler, its model and monitoring, its seed."""

    trace: Trace
    policy: Policy
    config: SimConfig
    """Its `gpus` is ignored: the cluster's pool replaces it."""
    seed: int


@dataclass
class ClusterRecord:
    """What a cluster run produced: one RunRecord per service, in service order, and the pool's own series."""

    gpus: int
    runs: list[RunRecord]
    pending_pod_s: list[float]
    """Per service: seconds its pods spent Pending (waiting for a GPU), summed over its pods."""
    timeline_pending: list[int] = field(default_factory=list)
    """Pending pods over all services, once a slice (after scheduling)."""
    timeline_in_use: list[int] = field(default_factory=list)
    """GPUs held over all services, once a slice."""
    wall_s: float = 0.0


def simulate_cluster(services: Sequence[ServiceRun], gpus: int) -> ClusterRecord:
    """Serve every service's trace under its policy on `gpus` shared GPUs; deterministic for the given seeds.

    Every trace must have the same duration and every config the same dt_s (the services step together).
    """
    if not services:
        raise ValueError("simulate_cluster needs at least one service")
    durations = {s.trace.duration_s for s in services}
    slices = {s.config.dt_s for s in services}
    if len(durations) > 1 or len(slices) > 1:
        raise ValueError(f"every service needs the same trace duration and dt_s, got durations {sorted(durations)} "
                         f"and dt_s {sorted(slices)}: cut the traces to one duration")
    started = time.perf_counter()
    pool = GpuPool(gpus)
    sims = [Simulation(s.trace, s.policy, s.config, s.seed, pool) for s in services]
    record = ClusterRecord(gpus, [], [])
    for sim in sims:
        sim.start()
    dt = services[0].config.dt_s
    for k in range(sims[0].slices):
        t = k * dt
        for sim in sims:
            sim.fleet.release_drained(t)
        pool.schedule(t)
        record.timeline_pending.append(sum(len(sim.fleet.pending()) for sim in sims))
        record.timeline_in_use.append(pool.in_use)
        for sim in sims:
            sim.fleet.promote(t, sim.batching)
            sim.step(k)
    end = services[0].trace.duration_s
    record.runs = [sim.finish() for sim in sims]
    record.pending_pod_s = [pending_seconds(sim.fleet, end) for sim in sims]
    record.wall_s = time.perf_counter() - started
    return record


def pending_seconds(fleet: Fleet, end_s: float) -> float:
    """Seconds the fleet's pods spent Pending up to end_s: creation to scheduling, release or end_s."""
    total = 0.0
    for pod in fleet.pods:
        if pod.scheduled_at is not None:
            until = pod.scheduled_at
        elif pod.phase is Phase.RELEASED and pod.released_at is not None:
            until = pod.released_at
        else:
            until = end_s
        total += max(0.0, min(until, end_s) - pod.created_at)
    return total
