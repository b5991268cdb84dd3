"""Pods of one simulated Deployment: Pending for a GPU, starting (cold start), Ready, draining, released.

What it models, and from where:
- A pod that finds no free GPU stays Pending (kube-scheduler: Unschedulable on `nvidia.com/gpu`) and is not
  billed; Pending pods are scheduled oldest first as GPUs free up.
- A scheduled pod holds its GPU (billed) through its cold start (image pull or node provisioning, then model
  load: FACTS.md "GPU cold start on Kubernetes") and is Ready after it.
- Scale-down removes Pending pods first, then pods still starting, then Ready ones, newest first in each group
  (kubernetes `pkg/controller/replicaset/replica_set.go` getPodsToDelete, ranked by ActivePods in
  `pkg/controller/controller_utils.go`: unassigned, then not ready, then ready; newer before older). A Ready pod leaves the Service's endpoints at once and drains: it holds its
  GPU until its queue is empty, or until the grace period ends (`terminationGracePeriodSeconds`
  = PRE_STOP_SECONDS + 35 in build/children.py), when the kubelet kills it and what it still holds fails.

Cold starts are drawn at each pod's creation from the run's own cold-start stream, in creation order, so every
policy sees the same sequence of cold starts for a seed however many pods it creates and when.

Several services may share one cluster (`GpuPool`): their Pending pods then wait in one queue, oldest first
across services, as kube-scheduler's PrioritySort orders pods of equal priority by the time they were queued
(kubernetes `pkg/scheduler/framework/plugins/queuesort/priority_sort.go`).

Cost: only pods not yet released are scanned (`Fleet.active`), so a long run with much churn does not slow
down as released pods pile up in `Fleet.pods`.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from batchpilot.sim.batcher import ReplicaBatcher
from batchpilot.sim.types import Batching, ColdStart

COLD_STARTS: dict[str, ColdStart] = {
    # ~20 s to load the image from the node's cache plus ~20 s to load weights, more for big ones (triton#7474).
    "cached-image": ColdStart("cached-image", 20.0, 60.0),
    # Pulling a ~15 GB Triton image: 1-3 min on a datacenter link (vllm#41893, kserve#2529).
    "image-pull": ColdStart("image-pull", 60.0, 180.0),
    # A cluster autoscaler adding a GPU node first: 3-10 min (kserve#2529).
    "new-node": ColdStart("new-node", 180.0, 600.0),
}
"""Cold-start presets by name: uniform draws between low_s and high_s (seconds)."""


class Phase(enum.Enum):
    PENDING = "Pending"
    """Waiting for a GPU: not billed, not serving."""
    STARTING = "Starting"
    """Scheduled: billed, cold start running."""
    READY = "Ready"
    """Serving: in the Service's endpoints."""
    DRAINING = "Draining"
    """Deleted after it was Ready: out of the endpoints, finishing its queue, still billed."""
    RELEASED = "Released"
    """Gone: its GPU is free."""


@dataclass
class Pod:
    """One Triton pod. Mutable: the fleet moves it through its phases."""

    index: int
    """Creation order in the run, from 0: also names the pod's noise stream."""
    created_at: float
    """When the Deployment asked for it, seconds."""
    cold_start_s: float
    """Drawn at creation: scheduling to Ready, seconds (0 for the warm pods at t=0)."""
    phase: Phase = Phase.PENDING
    """Where it is in its life now."""
    scheduled_at: float | None = None
    """When it got a GPU (billing starts); None while Pending."""
    deleted_at: float | None = None
    """When scale-down picked it; None while it is wanted."""
    released_at: float | None = None
    """When its GPU was freed (billing ends); None until then."""
    batcher: ReplicaBatcher | None = None
    """Created when the pod becomes Ready, with the service's batching at that time."""
    last_done_s: float = 0.0
    """Time of the pod's latest completion: when a drained pod's queue actually emptied."""

    @property
    def ready_at(self) -> float | None:
        return None if self.scheduled_at is None else self.scheduled_at + self.cold_start_s

    def billed_s(self, end_s: float) -> float:
        """GPU seconds held from scheduling to release (or end_s)."""
        if self.scheduled_at is None:
            return 0.0
        until = end_s if self.released_at is None else min(self.released_at, end_s)
        return max(0.0, until - self.scheduled_at)


BatcherFactory = Callable[[Pod, Batching, float], ReplicaBatcher]
"""Makes a pod's batcher: (pod, batching, start time)."""


class GpuPool:
    """The cluster's GPUs (one per pod), shared by the fleets that join it; schedules their Pending pods."""

    def __init__(self, gpus: int) -> None:
        if gpus < 0:
            raise ValueError(f"gpus must be >= 0, got {gpus}")
        self.gpus = gpus
        self.in_use = 0
        """Pods holding a GPU (scheduled, not released), over every fleet."""
        self._fleets: list[Fleet] = []

    @property
    def free(self) -> int:
        return self.gpus - self.in_use

    def join(self, fleet: Fleet) -> int:
        """Add a fleet; its number breaks ties between pods queued at the same time (earlier joined first)."""
        self._fleets.append(fleet)
        return len(self._fleets) - 1

    def schedule(self, now: float) -> None:
        """Give free GPUs to Pending pods, oldest first over every fleet (creation time, fleet, creation order)."""
        free = self.free
        if free <= 0:
            return
        queued = [(p.created_at, f.number, p.index, f, p) for f in self._fleets for p in f.pending()]
        for *_, fleet, pod in heapq.nsmallest(free, queued, key=lambda q: q[:3]):
            fleet.bind(pod, now)


class Fleet:
    """The Deployment's pods and the cluster's GPUs: creation, scheduling, readiness, deletion, draining."""

    def __init__(self, gpus: int | GpuPool, cold_start: ColdStart, grace_s: float, rng: np.random.Generator,
                 make_batcher: BatcherFactory) -> None:
        self.pool = gpus if isinstance(gpus, GpuPool) else GpuPool(gpus)
        """The GPUs it schedules on: its own cluster (an int given), or one shared with other fleets."""
        self.number = self.pool.join(self)
        self.cold_start = cold_start
        self.grace_s = grace_s
        self._rng = rng
        self._make_batcher = make_batcher
        self.pods: list[Pod] = []
        """Every pod of the run, in creation order (released ones included)."""
        self.active: list[Pod] = []
        """The pods not released yet, in creation order."""
        self.cold_starts = 0
        """Pods that went through a cold start (the warm pods at t=0 do not count)."""

    @property
    def gpus(self) -> int:
        return self.pool.gpus

    # --- views -----------------------------------------------------------------------------------------------
    def in_phase(self, *phases: Phase) -> list[Pod]:
        if Phase.RELEASED in phases:
            return [p for p in self.pods if p.phase in phases]
        return [p for p in self.active if p.phase in phases]

    def pending(self) -> list[Pod]:
        """Pods waiting for a GPU, in creation order."""
        return [p for p in self.active if p.phase is Phase.PENDING]

    @property
    def ready(self) -> list[Pod]:
        """Ready pods in creation order: the Service's endpoints."""
        return self.in_phase(Phase.READY)

    @property
    def live(self) -> list[Pod]:
        """Pods the Deployment counts toward its replicas (not deleted)."""
        return self.in_phase(Phase.PENDING, Phase.STARTING, Phase.READY)

    @property
    def billed(self) -> list[Pod]:
        """Pods holding a GPU."""
        return self.in_phase(Phase.STARTING, Phase.READY, Phase.DRAINING)

    def serving(self) -> list[Pod]:
        """Pods whose batcher runs: Ready and draining."""
        return [p for p in self.in_phase(Phase.READY, Phase.DRAINING) if p.batcher is not None]

    def gpu_seconds(self, end_s: float) -> float:
        return sum(p.billed_s(end_s) for p in self.pods)

    # --- changes ---------------------------------------------------------------------------------------------
    def warm(self, count: int, batching: Batching) -> None:
        """The pods at t=0: already Ready, where GPUs allow (the rest are created as any later pod)."""
        for _ in range(count):
            if self.pool.free <= 0:
                self._create(0.0)
                continue
            pod = Pod(len(self.pods), 0.0, 0.0, Phase.READY, scheduled_at=0.0)
            pod.batcher = self._make_batcher(pod, batching, 0.0)
            self.pods.append(pod)
            self.active.append(pod)
            self.pool.in_use += 1

    def scale_to(self, replicas: int, now: float) -> None:
        live = self.live
        for _ in range(replicas - len(live)):
            self._create(now)
        if replicas < len(live):
            # Unscheduled first, then not ready, then ready; newest first within each.
            rank = {Phase.PENDING: 0, Phase.STARTING: 1, Phase.READY: 2}
            doomed = sorted(live, key=lambda p: (rank[p.phase], -p.index))[:len(live) - replicas]
            for pod in doomed:
                self._delete(pod, now)
        self._schedule(now)

    def update(self, now: float, batching: Batching) -> None:
        """Phase changes due by `now`: releases first (they free GPUs), then scheduling, then readiness."""
        self.release_drained(now)
        self._schedule(now)
        self.promote(now, batching)

    def release_drained(self, now: float) -> None:
        """Free the GPUs of draining pods whose queue emptied or whose grace period ended by `now`."""
        for pod in self.in_phase(Phase.DRAINING):
            self._release_if_drained(pod, now)

    def promote(self, now: float, batching: Batching) -> None:
        """Starting pods whose cold start is over by `now` become Ready with the service's batching."""
        for pod in self.in_phase(Phase.STARTING):
            ready_at = pod.ready_at
            if ready_at is not None and ready_at <= now:
                pod.phase = Phase.READY
                pod.batcher = self._make_batcher(pod, batching, ready_at)
                pod.last_done_s = ready_at

    def drain_deadline(self, pod: Pod) -> float:
        """Until when a pod may still serve: the end of its grace period when draining."""
        return float("inf") if pod.deleted_at is None else pod.deleted_at + self.grace_s

    # --- internals -------------------------------------------------------------------------------------------
    def bind(self, pod: Pod, now: float) -> None:
        """A Pending pod gets a GPU (the pool's scheduling decision): billed from now, cold start running."""
        pod.phase, pod.scheduled_at = Phase.STARTING, now
        self.pool.in_use += 1

    def _create(self, now: float) -> None:
        cold = float(self._rng.uniform(self.cold_start.low_s, self.cold_start.high_s))
        pod = Pod(len(self.pods), now, cold)
        self.pods.append(pod)
        self.active.append(pod)
        self.cold_starts += 1

    def _schedule(self, now: float) -> None:
        self.pool.schedule(now)

    def _delete(self, pod: Pod, now: float) -> None:
        pod.deleted_at = now
        if pod.phase is Phase.READY:
            pod.phase = Phase.DRAINING
            self._release_if_drained(pod, now)
        else:
            self._release(pod, now)

    def _release_if_drained(self, pod: Pod, now: float) -> None:
        batcher, deadline = pod.batcher, self.drain_deadline(pod)
        assert pod.deleted_at is not None
        if batcher is None or batcher.queued + batcher.executing == 0:
            self._release(pod, max(pod.deleted_at, min(pod.last_done_s, now)))
        elif now >= deadline:
            # The kubelet kills the container: requests still queued or executing never answer.
            self._release(pod, deadline)

    def _release(self, pod: Pod, at: float) -> None:
        """The pod is gone: its GPU (if it held one) goes back to the pool."""
        if pod.scheduled_at is not None:
            self.pool.in_use -= 1
        pod.phase, pod.released_at, pod.batcher = Phase.RELEASED, at, None
        self.active.remove(pod)
