"""Batchpilot at fleet scale in the simulator (issue 15): one service up to 1,000 replicas, and 200 services
sharing one pool of GPUs.

    python -m bench.sim_fleet --out out/bench/fleet        # both parts, about 10 minutes on 2 cores
    python -m bench.sim_fleet --quick --out /tmp/fleet      # smoke test: 60 replicas, 12 services, 25 min

1. **Scale**: one service on the step trace scaled to `--scale-pods` pods' worth of measured capacity (700:
   350 pods' worth for 20 min, then 875), maxReplicas 1000 on a cluster of `--scale-gpus` GPUs, under
   Batchpilot and each peer at its default, one seed. Per run: attainment, GPU-hours, the policy's wall time
   per decision (p50/p95; for Batchpilot that is decide() and building its Observation), simulated hours per
   wall second and the worker's peak RSS (each run in a fresh process).
2. **Cluster**: `--services` services, each with its own trace (the standard shapes in turn, its own seed, a
   load of 1-12 pods' worth drawn log-uniformly, one of two models), stepped together on one shared GPU pool
   sized each of `--gpu-factors` x the sum of their mean demands (sim/cluster.py: Pending pods wait, oldest
   first): 1.3x, tight, and 3x, where the pool never binds and each policy shows what it would ask for. Every
   service runs the same policy; one cluster run per policy and pool. Per run: total GPU-hours, attainment
   per service (mean, min, p10), pod-hours spent Pending, wall time.

The models are the sandbox's sample models made 100x heavier than in bench.sim_compare (a batch of 32 takes
4.3 s on the ResNet-50 curve, 7.4 s on the BERT one, like a generative model's whole answer; SLO p95 20 s and
30 s): a pod then serves about 7 req/s, and a thousand pods make ~17 M requests an hour, which a simulator that
tracks every request holds in memory. Writes report.md, results.json, cluster-<factor>x.png and scale.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from batchpilot.sim.cluster import ServiceRun, simulate_cluster
from batchpilot.sim.engine import SimConfig, simulate
from batchpilot.sim.lifecycle import COLD_STARTS
from batchpilot.sim.metrics import run_metrics
from batchpilot.sim.traces import TRACES
from batchpilot.sim.types import Action, Policy, Trace, View
from bench.sim_compare import Service, make_policy, minute_timeline, sizing

MODELS = {
    "resnet50-heavy": Service("h100-resnet50-fp16", 1000.0, 32, 20_000.0),
    "bert-heavy": Service("h100-bert-base-seq128-fp16", 2000.0, 32, 30_000.0),
}
"""The two models of this bench: bench.sim_compare's services with every time x100 (SLO included)."""
SCALE_MODEL = "resnet50-heavy"
FAMILIES = ("batchpilot", "static", "keda-rate", "hpa-queue-compute")
"""Batchpilot and the peers every service runs here, at their defaults."""
CLUSTER_TRACES = tuple(TRACES)
"""Services take the standard shapes in turn (the 2 h diurnal one cut to the common duration)."""
LOAD_PODS = (1.0, 12.0)
"""Range of a cluster service's mean load, in pods' worth of measured capacity (log-uniform)."""
NODE_GPUS = 8
"""The pool is sized in whole 8-GPU nodes."""


class Timed:
    """A policy whose decisions are timed: wall seconds of each step() call."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.name, self.setting, self.period_s = inner.name, inner.setting, inner.period_s
        self.step_s: list[float] = []

    def initial(self) -> Action:
        return self.inner.initial()

    def step(self, view: View) -> Action:
        started = time.perf_counter()
        action = self.inner.step(view)
        self.step_s.append(time.perf_counter() - started)
        return action


def cut(trace: Trace, duration_s: float | None) -> Trace:
    """The trace's first duration_s seconds (the whole trace when None or longer)."""
    if duration_s is None or duration_s >= trace.duration_s:
        return trace
    return replace(trace, arrivals=trace.arrivals[trace.arrivals < duration_s], duration_s=duration_s)


def config_for(model: Service, cold_start: str, gpus: int = 64) -> SimConfig:
    curve, batching, _ = sizing(model)
    return SimConfig(curve, model.slo_ms, model.percentile, cold_start=COLD_STARTS[cold_start], batching=batching,
                     gpus=gpus)


def _ms(samples: Sequence[float]) -> dict[str, float]:
    if not samples:
        return {"p50_ms": math.nan, "p95_ms": math.nan, "calls": 0}
    return {"p50_ms": 1000 * float(np.percentile(samples, 50)), "p95_ms": 1000 * float(np.percentile(samples, 95)),
            "calls": len(samples)}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


@dataclass(frozen=True)
class Job:
    """One run in a worker: part "scale" or "cluster", one policy family."""

    part: str
    family: str
    args: dict[str, Any]


def scale_run(family: str, a: dict[str, Any]) -> dict[str, Any]:
    """Part 1: one service at up to maxReplicas on the step trace."""
    model = replace(MODELS[SCALE_MODEL], load_pods=a["scale_pods"], max_replicas=a["max_replicas"])
    _, _, capacity = sizing(model)
    trace = cut(TRACES["step"](model.load_pods * capacity, a["seed"]), a["duration_s"])
    policy = Timed(make_policy(model, family, None, trace, a["cold_start"]))
    record = simulate(trace, policy, config_for(model, a["cold_start"], a["scale_gpus"]), a["seed"])
    m = run_metrics(record)
    return {"part": "scale", "family": family, "setting": policy.setting, "metrics": asdict(m),
            "requests": int(record.arrival.size), "wall_s": record.wall_s,
            "sim_hours_per_wall_s": trace.duration_s / 3600.0 / record.wall_s, "decide": _ms(policy.step_s),
            "peak_replicas": max(record.timeline_replicas), "peak_ready": max(record.timeline_ready),
            "peak_rss_mb": _peak_rss_mb(), "timeline": minute_timeline(record), "capacity": capacity}


def cluster_services(a: dict[str, Any]) -> list[dict[str, Any]]:
    """Each service's model, trace, seed and load: a pure function of the service count and the base seed."""
    rng = np.random.default_rng(a["seed"] + 1000)
    out = []
    for i in range(a["services"]):
        load = float(np.exp(rng.uniform(math.log(LOAD_PODS[0]), math.log(LOAD_PODS[1]))))
        out.append({"name": f"svc-{i:03d}", "model": list(MODELS)[int(rng.integers(len(MODELS)))],
                    "trace": CLUSTER_TRACES[i % len(CLUSTER_TRACES)], "seed": a["seed"] + i,
                    "load_pods": round(load, 2), "max_replicas": max(8, math.ceil(4 * load))})
    return out


def cluster_traces(a: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Trace], int]:
    """The services, their traces, and the pool: gpu_factor x the sum of mean demands, in whole nodes."""
    services, traces, demand = cluster_services(a), [], 0.0
    for s in services:
        _, _, capacity = sizing(MODELS[s["model"]])
        trace = cut(TRACES[s["trace"]](s["load_pods"] * capacity, s["seed"]), a["duration_s"])
        traces.append(trace)
        s["mean_demand_pods"] = trace.arrivals.size / trace.duration_s / capacity
        demand += s["mean_demand_pods"]
    gpus = NODE_GPUS * math.ceil(a["gpu_factor"] * demand / NODE_GPUS)
    return services, traces, gpus


def cluster_run(family: str, a: dict[str, Any]) -> dict[str, Any]:
    """Part 2: every service under `family`, all on one shared pool."""
    services, traces, gpus = cluster_traces(a)
    runs, timed = [], []
    for s, trace in zip(services, traces, strict=True):
        model = replace(MODELS[s["model"]], load_pods=s["load_pods"], max_replicas=s["max_replicas"])
        policy = Timed(make_policy(model, family, None, trace, a["cold_start"]))
        timed.append(policy)
        runs.append(ServiceRun(trace, policy, config_for(model, a["cold_start"]), s["seed"]))
    record = simulate_cluster(runs, gpus)
    per_service = []
    for s, r, pending_s in zip(services, record.runs, record.pending_pod_s, strict=True):
        m = run_metrics(r)
        per_service.append({**s, "attainment": m.attainment, "gpu_hours": m.gpu_hours, "failed": m.failed,
                            "pending_pod_s": pending_s, "cold_starts": m.cold_starts,
                            "mean_replicas": m.mean_replicas})
    att = np.array([p["attainment"] for p in per_service])
    pending = np.array(record.timeline_pending)
    duration = traces[0].duration_s
    labels = sorted({p.setting for p in timed})  # thresholds that follow a service's capacity differ by model
    setting = " / ".join(labels) if len(labels) <= 2 else f"per service ({len(labels)} settings)"
    return {"part": "cluster", "family": family, "setting": setting, "gpus": gpus,
            "gpu_factor": a["gpu_factor"],
            "services": per_service, "requests": int(sum(t.arrivals.size for t in traces)),
            "gpu_hours": float(sum(p["gpu_hours"] for p in per_service)),
            "attainment": {"mean": float(att.mean()), "min": float(att.min()),
                           "p10": float(np.percentile(att, 10)),
                           "overall": float(sum(p["attainment"] * t.arrivals.size
                                                for p, t in zip(per_service, traces, strict=True))
                                            / max(1, sum(t.arrivals.size for t in traces))),
                           "services_at_99": int(np.sum(att >= 0.99))},
            "pending": {"pod_hours": float(sum(record.pending_pod_s)) / 3600.0,
                        "max_pods": int(pending.max()) if pending.size else 0,
                        "minutes_with_pending": float(np.count_nonzero(pending)) * runs[0].config.dt_s / 60.0,
                        "services_with_pending": int(sum(1 for v in record.pending_pod_s if v > 0))},
            "peak_gpus_in_use": max(record.timeline_in_use),
            "mean_desired_replicas": float(sum(p["mean_replicas"] for p in per_service)),
            "mean_demand_pods": float(sum(s["mean_demand_pods"] for s in services)), "wall_s": record.wall_s,
            "sim_hours_per_wall_s": duration / 3600.0 * len(runs) / record.wall_s,
            "decide": _ms([x for p in timed for x in p.step_s]), "peak_rss_mb": _peak_rss_mb()}


def run_job(job: Job) -> dict[str, Any]:
    return (scale_run if job.part == "scale" else cluster_run)(job.family, job.args)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.sim_fleet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/bench/fleet"), help="report directory")
    p.add_argument("--parts", nargs="+", default=["scale", "cluster"], choices=["scale", "cluster"])
    p.add_argument("--families", nargs="+", default=list(FAMILIES), help="Batchpilot and peers at their defaults")
    p.add_argument("--scale-pods", type=float, default=700.0, help="part 1: step trace mean load in pods' worth")
    p.add_argument("--max-replicas", type=int, default=1000, help="part 1: maxReplicas of every policy")
    p.add_argument("--scale-gpus", type=int, default=1024, help="part 1: GPUs in the cluster")
    p.add_argument("--services", type=int, default=200, help="part 2: services sharing the pool")
    p.add_argument("--gpu-factors", type=float, nargs="+", default=[1.3, 3.0],
                   help="part 2: pool sizes over the sum of mean demands, one cluster run per policy each")
    p.add_argument("--duration", dest="duration_s", type=float, default=3600.0, help="seconds of every trace")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cold-start", default="cached-image", choices=list(COLD_STARTS))
    p.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)), help="worker processes")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 40 pods' worth (maxReplicas 60, 64 GPUs) and 12 services, 1500 s each")
    args = p.parse_args(argv)
    if args.quick:
        args.scale_pods, args.max_replicas, args.scale_gpus = 40.0, 60, 64
        args.services, args.duration_s = 12, 1500.0
    unknown = [f for f in args.families if f != "batchpilot" and f not in FAMILIES + ("knative", "ray-serve")]
    if unknown:
        p.error(f"--families: unknown {unknown}; use batchpilot, static, keda-rate, hpa-queue-compute, knative, "
                "ray-serve")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from bench.sim_fleet_report import write_report  # matplotlib is imported only when writing

    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    shared = {k: v for k, v in vars(args).items()
              if k not in ("out", "parts", "families", "jobs", "quick", "gpu_factors")}
    # Cluster runs first: they are the longest, so two workers finish together.
    jobs = [Job("cluster", f, {**shared, "gpu_factor": g}) for g in args.gpu_factors for f in args.families
            if "cluster" in args.parts]
    jobs += [Job("scale", f, shared) for f in args.families if "scale" in args.parts]
    started, results = time.perf_counter(), []
    # A fresh process per run: its peak RSS is that run's alone.
    with ProcessPoolExecutor(max_workers=args.jobs, max_tasks_per_child=1) as pool:
        for result in pool.map(run_job, jobs):
            results.append(result)
            where = f" {result['gpu_factor']:g}x pool" if result["part"] == "cluster" else ""
            print(f"[fleet] {result['part']}{where} {result['family']}: {result['wall_s']:.0f}s wall, "
                  f"{time.perf_counter() - started:.0f}s so far", flush=True)
    meta = {"args": {k: str(v) for k, v in vars(args).items()}, "wall_s": time.perf_counter() - started,
            "cpus": os.cpu_count(), "load_average": os.getloadavg(),
            "models": {k: asdict(m) | {"capacity": sizing(m)[2], "batching": asdict(sizing(m)[1])}
                       for k, m in MODELS.items()}}
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "runs": results}, indent=1) + "\n")
    write_report(args.out, results, meta)
    print(f"[fleet] wrote {args.out / 'report.md'} ({len(results)} runs, {meta['wall_s']:.0f}s wall)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
