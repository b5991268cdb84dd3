"""One run: a trace served by one Triton Deployment whose replicas and batching one policy decides.

Time advances in slices of `dt_s`. At each slice's start: pod phase changes (lifecycle.Fleet), a scrape when
due, a per-second sample of ongoing requests, a decision when due (the policy's View, then its Action); then the
slice's arrivals are routed uniformly at random among Ready pods (kube-proxy's iptables mode picks a backend at
random) and every serving pod's batcher runs to the slice's end. A change of batching is rolled out one Ready
pod at a time, `reload_s` apart, as the operator's retune pass does (retune.py); each pod starts no batch for
`reload_stall_s` as its reload lands.

Fairness: cold starts, routing and each pod's batcher noise come from separate streams seeded by (seed, name),
so two policies on the same seed see the same cold-start sequence and a run is reproducible.

A trace with a warm-up (traces.with_warmup) runs whole, and the record leaves its first `Trace.warmup_s` out:
requests, timeline, GPU time, scale events, cold starts and reloads, with times counted from its end.
"""

from __future__ import annotations

import bisect
import math
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from batchpilot.sim.batcher import ReplicaBatcher
from batchpilot.sim.lifecycle import COLD_STARTS, Fleet, GpuPool, Phase, Pod
from batchpilot.sim.observe import Monitor
from batchpilot.sim.profile import ComputeCurve
from batchpilot.sim.types import Action, Batching, ColdStart, FloatArray, Policy, RunRecord, Trace

IdArray = npt.NDArray[np.int64]
NO_REQUESTS: IdArray = np.zeros(0, dtype=np.int64)


def _stream(seed: int, name: str, *more: int) -> np.random.Generator:
    """An rng of its own for (seed, name): crc32 keeps the name's code stable across runs and Pythons."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), *more])


@dataclass(frozen=True)
class SimConfig:
    """The simulated cluster, service and monitoring; max batch size and the like come from the policy."""

    curve: ComputeCurve
    """GPU compute time per batch size of the served model."""
    slo_ms: float
    """Latency objective, recorded with the run (the policies carry their own copy)."""
    percentile: int = 95
    """SLO percentile: also the quantile of Triton's latency summary the View reports."""
    cold_start: ColdStart = field(default_factory=lambda: COLD_STARTS["cached-image"])
    """Pod scheduling to Ready, drawn per pod (lifecycle.COLD_STARTS)."""
    gpus: int = 64
    """GPUs in the cluster (eight 8-GPU nodes): pods beyond them stay Pending, unbilled."""
    batching: Batching | None = None
    """Batching at t=0 when the policy's initial Action gives none."""
    scrape_s: float = 5.0
    """Prometheus scrape interval, seconds (our PodMonitor's interval)."""
    rate_window_s: float = 30.0
    """rate() window, seconds (operator setting metrics_window_seconds, default 30)."""
    summary_window_s: float = 60.0
    """Span of Triton's latency summary, seconds (about a minute: control/planner.py SUMMARY_WINDOW_S)."""
    stale_after_s: float = 60.0
    """A last scrape older than this is no data, seconds (spec.autoscaling.metricsOutage.staleAfterSeconds)."""
    client_timeout_s: float = 60.0
    """A request slower than this fails, seconds (tritonclient.http InferenceServerClient network_timeout
    default 60 s); Triton still serves it: nothing cancels a request already queued."""
    grace_s: float = 40.0
    """A deleted pod's most draining time, seconds (PRE_STOP_SECONDS + 35 in build/children.py)."""
    reload_s: float = 1.3
    """One pod's model reload for a retune, seconds (FACTS.md: 1.4 s on CPU); the operator's pass reloads the
    pods one after another, this far apart."""
    reload_stall_s: float = 0.08
    """How long a reloading pod starts no batch, seconds. Triton loads the new model beside the old one, which
    serves meanwhile, then swaps them. Measured here (wheel tritonserver on CPU, 60 req/s, five reloads of 1.3 s
    loaded over gRPC as retune.py does): requests sent during a reload p99 176 ms, max 212 ms; the others p99 127,
    max 132 ms: up to 80 ms more. Over HTTP, as before, the requests on the loading thread's connections waited
    out the whole load (p99 1,380 ms), which the 1.3 s stall modelled until 2026-12-04."""
    noise_cv: float = 0.03
    """Coefficient of variation of one batch's compute time around the curve (GPU run-to-run jitter)."""
    contention: float | None = None
    """How batches in flight on one GPU slow each other, one coefficient for every batch size (1.0: instances take
    turns; 0: never slow each other); None: the profile's measured coefficient per batch size where it has one
    (the H200 curves), else 1.0."""
    dt_s: float = 1.0
    """The engine's slice, seconds: routing, readiness and decisions happen on slice boundaries."""


def simulate(trace: Trace, policy: Policy, config: SimConfig, seed: int) -> RunRecord:
    """Serve `trace` under `policy`; deterministic for a seed."""
    started = time.perf_counter()
    record = Simulation(trace, policy, config, seed).run()
    record.wall_s = time.perf_counter() - started
    return record


class Simulation:
    """The state of one run (simulate() is the way in; tests read `fleet` and `monitor` after run())."""

    def __init__(self, trace: Trace, policy: Policy, config: SimConfig, seed: int, pool: GpuPool | None = None
                 ) -> None:
        """pool: GPUs shared with other services' runs (cluster.py); None: config.gpus of its own."""
        self.trace, self.policy, self.config, self.seed = trace, policy, config, seed
        self.arrivals = np.asarray(trace.arrivals, dtype=np.float64)
        self.latency: FloatArray = np.full(len(self.arrivals), np.inf)
        self.routing = _stream(seed, "routing")
        self.fleet = Fleet(config.gpus if pool is None else pool, config.cold_start, config.grace_s,
                           _stream(seed, "cold-start"), self._batcher)
        self.monitor = Monitor(config.percentile, config.scrape_s, config.rate_window_s, config.summary_window_s,
                               config.stale_after_s)
        self.record = RunRecord(policy=policy.name, setting=policy.setting, trace=trace.name, seed=seed,
                                slo_ms=config.slo_ms, percentile=config.percentile, duration_s=trace.duration_s,
                                arrival=self.arrivals)
        initial = policy.initial()
        batching = initial.batching or config.batching
        if batching is None:
            raise ValueError(f"policy {policy.name!r} gave no batching at t=0 and SimConfig.batching is unset: "
                             "set one of them")
        self.batching: Batching = batching
        self.desired = max(0, initial.replicas)
        self.reloads: dict[int, list[float]] = {}
        """Pod index -> times its model reload for the current batching is due."""
        self.slices = math.ceil(trace.duration_s / config.dt_s - 1e-9)
        self._edges = np.searchsorted(self.arrivals, np.arange(self.slices + 1) * config.dt_s)
        """Slice k's arrivals are requests _edges[k] .. _edges[k + 1] - 1."""
        self._edges[-1] = len(self.arrivals)
        self._next_scrape, self._next_decision = 0.0, policy.period_s
        self._counted_before: tuple[int, int, int] | None = (0, 0, 0) if trace.warmup_s == 0 else None
        """(scale events, cold starts, reloads) when the warm-up ended: what the record leaves out."""

    def _batcher(self, pod: Pod, batching: Batching, start_s: float) -> ReplicaBatcher:
        c = self.config
        return ReplicaBatcher(c.curve, batching, _stream(self.seed, "batcher", pod.index), noise_cv=c.noise_cv,
                              contention=c.contention, start_s=start_s)

    def run(self) -> RunRecord:
        self.start()
        for k in range(self.slices):
            self.fleet.update(k * self.config.dt_s, self.batching)
            self.step(k)
        return self.finish()

    def start(self) -> None:
        """The warm pods at t=0; then Fleet.update and step() for each slice, then finish()."""
        self.fleet.warm(self.desired, self.batching)

    def step(self, k: int) -> None:
        """Slice k, its pod phase changes already made (Fleet.update): monitoring, a decision, arrivals, serving."""
        c = self.config
        t = k * c.dt_s
        end = min(t + c.dt_s, self.trace.duration_s)
        if self._counted_before is None and t + 1e-9 >= self.trace.warmup_s:
            self._counted_before = (self.record.scale_events, self.fleet.cold_starts, self.record.reloads)
        ready = {p.index: p.batcher for p in self.fleet.ready if p.batcher is not None}
        if t + 1e-9 >= self._next_scrape:
            self.monitor.scrape(t, ready)
            self._next_scrape += c.scrape_s
        self.monitor.sample(ready)
        if t + 1e-9 >= self._next_decision:
            self._decide(t, ready)
            self._next_decision += self.policy.period_s
        self._timeline(t)
        inbox = self._route(int(self._edges[k]), int(self._edges[k + 1]))
        for pod in self.fleet.serving():
            self._advance(pod, inbox.get(pod.index, NO_REQUESTS), t, end)

    def _decide(self, now: float, ready: dict[int, ReplicaBatcher]) -> None:
        pending = len(self.fleet.in_phase(Phase.PENDING))
        view = self.monitor.view(now, self.desired, len(ready), pending, self.batching, ready)
        self._act(self.policy.step(view), now)

    def _act(self, action: Action, now: float) -> None:
        replicas = max(0, action.replicas)
        if replicas != self.desired:
            self.record.scale_events += 1
            self.desired = replicas
            self.fleet.scale_to(replicas, now)
        if action.batching is not None and action.batching != self.batching:
            # Rolling reload: pods created from now on start with the new batching (the ConfigMap).
            self.batching = action.batching
            apart = self.config.reload_s
            self.reloads = {p.index: [now + i * apart] for i, p in enumerate(self.fleet.ready)}

    def _timeline(self, t: float) -> None:
        r = self.record
        r.timeline_t.append(t)
        r.timeline_replicas.append(self.desired)
        r.timeline_ready.append(len(self.fleet.ready))
        r.timeline_billed.append(len(self.fleet.billed))

    def _route(self, lo: int, hi: int) -> dict[int, IdArray]:
        """Requests lo..hi-1 by Ready pod, picked at random; with none they fail at once (latency stays inf)."""
        ready = self.fleet.ready
        if hi <= lo or not ready:
            return {}
        choice = self.routing.integers(0, len(ready), size=hi - lo)
        order = np.argsort(choice, kind="stable").astype(np.int64) + lo  # each pod's ids stay in arrival order
        ends = np.cumsum(np.bincount(choice, minlength=len(ready))).tolist()
        return {pod.index: order[start:end]
                for pod, start, end in zip(ready, [0, *ends[:-1]], ends, strict=True) if end > start}

    def _advance(self, pod: Pod, ids: IdArray, t: float, end: float) -> None:
        """Run a pod's batcher over its requests to the slice end (its drain deadline if sooner), reloading
        where due: arrivals before a reload are enqueued before it, the rest after, so the batcher's clock
        never runs past an arrival it has not seen."""
        batcher, until = pod.batcher, min(end, self.fleet.drain_deadline(pod))
        if batcher is None or until <= t:
            return
        due = [r for r in self.reloads[pod.index] if r < until] if pod.index in self.reloads else []
        for at in due:
            if pod.deleted_at is not None:
                break  # a draining pod is not retuned
            cut = int(np.searchsorted(self.arrivals[ids], at))
            self._enqueue(batcher, ids[:cut])
            ids = ids[cut:]
            self._collect(pod, *batcher.advance(max(at, t)))
            batcher.reconfigure(self.batching, max(at, t), self.config.reload_stall_s)
            self.record.reloads += 1
        if due:
            self.reloads[pod.index] = [r for r in self.reloads[pod.index] if r >= until]
        self._enqueue(batcher, ids)
        self._collect(pod, *batcher.advance(until))
        batcher.take_rejected()  # rejected by the queue timeout: failed, their latency stays inf

    def _enqueue(self, batcher: ReplicaBatcher, ids: IdArray) -> None:
        if len(ids):
            batcher.enqueue(self.arrivals[ids], ids)

    def _collect(self, pod: Pod, ids: IdArray, done: FloatArray) -> None:
        if not len(ids):
            return
        latency = (done - self.arrivals[ids]) * 1000.0
        self.monitor.record(pod.index, done, latency)
        self.latency[ids] = np.where(latency > self.config.client_timeout_s * 1000.0, np.inf, latency)
        pod.last_done_s = max(pod.last_done_s, float(done.max()))

    def finish(self) -> RunRecord:
        """Serve out what is still queued, then the record."""
        # Requests still queued or running when the trace ends are served out (no new arrivals, no decisions):
        # only those slower than the client timeout fail, not every request of the last second.
        tail_end = self.trace.duration_s + self.config.client_timeout_s
        for pod in self.fleet.serving():
            if pod.batcher is not None:
                self._collect(pod, *pod.batcher.advance(tail_end))
                pod.batcher.take_rejected()
        r = self.record
        r.latency_ms = self.latency
        r.gpu_seconds = self.fleet.gpu_seconds(self.trace.duration_s)
        r.cold_starts = self.fleet.cold_starts
        if self.trace.warmup_s > 0:
            self._after_warmup(r)
        return r

    def _after_warmup(self, r: RunRecord) -> None:
        """Leave the warm-up out of the record: its requests, samples, GPU time and counts; times from its end."""
        w = self.trace.warmup_s
        first = int(np.searchsorted(self.arrivals, w))
        r.arrival, r.latency_ms = self.arrivals[first:] - w, self.latency[first:]
        kept = bisect.bisect_left(r.timeline_t, w - 1e-9)
        r.timeline_t = [t - w for t in r.timeline_t[kept:]]
        r.timeline_replicas, r.timeline_ready = r.timeline_replicas[kept:], r.timeline_ready[kept:]
        r.timeline_billed = r.timeline_billed[kept:]
        r.gpu_seconds -= self.fleet.gpu_seconds(w)
        events, cold_starts, reloads = self._counted_before or (r.scale_events, r.cold_starts, r.reloads)
        r.scale_events, r.cold_starts, r.reloads = (r.scale_events - events, r.cold_starts - cold_starts,
                                                    r.reloads - reloads)
        r.duration_s = self.trace.duration_s - w
