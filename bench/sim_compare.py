"""Batchpilot against the autoscalers people run today, in the simulator: same traces, seeds and cold starts.

    python -m bench.sim_compare --out out/bench/sim            # every trace and service, 5 seeds
    python -m bench.sim_compare --quick --out /tmp/sim          # one short trace, one seed (the smoke test)

Per (profile, trace): every threshold peer is swept on seed 0 and its best setting (fewest GPU-hours at
>= 99% attainment, else the highest attainment) is then run on every seed beside its documented default,
Batchpilot, static peak provisioning and the oracle. Writes report.md (tables), results.json (every run's
metrics), pareto-<profile>-<trace>.png and timeline-<profile>-<trace>.png.

Each run is also stored in runs.jsonl as it finishes, with a fingerprint of the code that made it: run the same
command again (after a kill, a reboot, or with more traces or seeds) and the runs that code already made are read
back, not simulated again; --fresh runs everything again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from batchpilot.control.queue_policy import queue_timeout_us
from batchpilot.sim.engine import SimConfig, simulate
from batchpilot.sim.lifecycle import COLD_STARTS
from batchpilot.sim.metrics import RunMetrics, run_metrics, summarize
from batchpilot.sim.policies import FAMILIES, PeerContext, make, settings
from batchpilot.sim.policies.batchpilot import BatchpilotPolicy, service_spec
from batchpilot.sim.policies.sizing import best_static_batching, measure_capacity, replicas_for
from batchpilot.sim.profile import ComputeCurve, load_curve
from batchpilot.sim.traces import TRACES, with_warmup
from batchpilot.sim.types import Policy, RunRecord, Trace

BATCHPILOT_UTILIZATION_SWEEP = (0.5, 0.6, 0.7, 0.9, 0.95)
"""Batchpilot's own headroom knob (spec.autoscaling.targetUtilization, default 0.85) swept like the peers'
thresholds, both ways: the same rule picks its best value per trace. Above the default it trades attainment for
GPU-hours (1 seed, late requests rejected, resnet50: 0.9 used 9% fewer GPU-h on step and 11% on gamma-cv4 at
0.01-0.1 points less attainment; on MMPP 6% fewer at 1 point less)."""
ATTAINMENT_GOAL = 0.99
"""A swept setting counts as meeting the SLO at this share of requests within it (the issue's target)."""


@dataclass(frozen=True)
class Service:
    """One served model: profile, how much heavier than the measured H100 curve, batch cap and SLO."""

    profile: str
    time_scale: float
    max_batch_size: int
    slo_ms: float
    percentile: int = 95
    load_pods: float = 5.0
    """Trace scale: the mean load in pods' worth of measured capacity (so every profile needs ~5 pods)."""
    max_replicas: int = 40


SERVICES = {
    # 10x the H100 ResNet-50 curve (a batch of 32 in ~43 ms), as the sandbox's sample service: per-pod rates a
    # Python simulator serves in seconds per simulated hour.
    "resnet50": Service("h100-resnet50-fp16", 10.0, 32, 200.0),
    "bert": Service("h100-bert-base-seq128-fp16", 20.0, 32, 300.0),
    # 10x the H200 ResNet-50 kernel-time curve (bench/gpu_profile.py): no launch-bound flat part, so batching
    # buys 8x from batch 1 to 32 (a batch of 32 in ~36 ms) where the H100 eager curve buys 35x.
    "resnet50-h200": Service("h200-resnet50-fp16-kernels", 10.0, 32, 200.0),
}


@dataclass(frozen=True)
class RunSpec:
    """One run: picklable, so workers rebuild trace and policy themselves."""

    service: str
    trace: str
    seed: int
    family: str
    """"batchpilot" or a peer family."""
    setting: float | None
    cold_start: str
    duration_s: float | None = None
    """Cut the trace (the smoke test); None: the whole trace."""
    reject_late: bool = False
    """Every policy's Triton rejects requests that can no longer meet the SLO (spec.batching.rejectLateRequests
    for Batchpilot, the same queue timeout in the peers' static batching)."""
    max_instances: int | None = None
    """Batchpilot's spec.batching.maxInstanceCount (None: unset, one instance per pod like the peers)."""
    warmup_s: float = 0.0
    """Seconds of the first minute's load before the trace, not measured (traces.with_warmup); 0: none."""


def sized(service: str) -> tuple[ComputeCurve, Any, float]:
    """(curve, best static batching, measured per-pod capacity req/s) of a service; cached per process."""
    return sizing(SERVICES[service])


@lru_cache(maxsize=16)
def sizing(s: Service) -> tuple[ComputeCurve, Any, float]:
    """sized() of a Service given whole (bench/sim_fleet.py defines its own)."""
    curve = load_curve(s.profile, s.time_scale)
    batching = best_static_batching(curve, s.max_batch_size, s.slo_ms, s.percentile)
    return curve, batching, measure_capacity(curve, batching, s.slo_ms, s.percentile)


def trace_for(spec: RunSpec) -> Trace:
    return _trace(spec.service, spec.trace, spec.seed, spec.duration_s, spec.warmup_s)


WARMUP_MARGIN_S = 300.0
"""--warmup past the longest cold start: the HPA's 300 s scale-down stabilization window (KEDA scales through the
HPA). The run starts at or under what each policy keeps for the first minute's load (the count at full measured
capacity), so the warm-up waits for scale-ups, not for Ray Serve's 600 s downscale delay."""


def warmup_for(cold_start: str) -> float:
    """--warmup's length: a pod asked for at the start is Ready by the preset's longest cold start, and every
    policy's windows have filled WARMUP_MARGIN_S later."""
    return COLD_STARTS[cold_start].high_s + WARMUP_MARGIN_S


@lru_cache(maxsize=1)
def _trace(service: str, name: str, seed: int, duration_s: float | None, warmup_s: float) -> Trace:
    """Kept for the next run, read-only: a worker's runs come in plan order, so most in a row share their trace
    (a sweep's settings; the policies of one seed), and an hour's 13 million arrivals take 0.3-3 s to draw."""
    _, _, capacity = sized(service)
    trace = TRACES[name](SERVICES[service].load_pods * capacity, seed)
    if duration_s is not None and duration_s < trace.duration_s:
        trace = replace(trace, arrivals=trace.arrivals[trace.arrivals < duration_s], duration_s=duration_s)
    trace = with_warmup(trace, warmup_s)
    trace.arrivals.flags.writeable = False
    return trace


def policy_for(spec: RunSpec, trace: Trace) -> Policy:
    return make_policy(SERVICES[spec.service], spec.family, spec.setting, trace, spec.cold_start, spec.reject_late,
                       spec.max_instances)


def make_policy(s: Service, family: str, setting: float | None, trace: Trace, cold_start: str,
                reject_late: bool = False, max_instances: int | None = None) -> Policy:
    """A fresh policy of `family` ("batchpilot" or a peer) at `setting` (None: its default) for one run."""
    curve, batching, capacity = sizing(s)
    first_minute = float(np.sum(trace.arrivals < 60.0)) / 60.0
    initial = min(s.max_replicas, replicas_for(first_minute, capacity))
    extra: dict[str, Any] = {"batching": {"rejectLateRequests": reject_late}}
    if family == "batchpilot" and setting is not None:
        extra["autoscaling"] = {"targetUtilization": setting}
    bp = service_spec(curve, s.slo_ms, s.percentile, s.max_batch_size, 1, s.max_replicas,
                      max_queue_delay_us=max(batching.max_queue_delay_us, 10_000), max_instance_count=max_instances,
                      extra=extra)
    if family == "batchpilot":
        label = "default" if setting is None else f"swept targetUtilization {setting:g}"
        return BatchpilotPolicy(bp, initial, setting=label)
    # The peers' Triton rejects late requests exactly as Batchpilot's would: the same queue timeout.
    peer_batching = replace(batching, queue_timeout_us=queue_timeout_us(bp) or 0)
    ctx = PeerContext(1, s.max_replicas, initial, peer_batching, capacity, s.slo_ms, s.percentile, trace,
                      COLD_STARTS[cold_start])
    return make(family, setting, ctx)


@dataclass(frozen=True)
class RunResult:
    spec: RunSpec
    policy: str
    setting: str
    metrics: RunMetrics
    wall_s: float
    simulated_s: float
    timeline: dict[str, list[float]]
    """Seed 0 only: per minute, offered load, replicas, latency at the percentile (for the plots)."""


def run_one(spec: RunSpec) -> RunResult:
    s = SERVICES[spec.service]
    curve, batching, _ = sized(spec.service)
    trace = trace_for(spec)
    policy = policy_for(spec, trace)
    config = SimConfig(curve, s.slo_ms, s.percentile, cold_start=COLD_STARTS[spec.cold_start], batching=batching)
    record = simulate(trace, policy, config, spec.seed)
    timeline = minute_timeline(record) if spec.seed == 0 else {}
    return RunResult(spec, policy.name, policy.setting, run_metrics(record), record.wall_s, trace.duration_s,
                     timeline)


def minute_timeline(record: RunRecord) -> dict[str, list[float]]:
    """Per minute: offered req/s, mean desired replicas, latency at the percentile (failures as inf)."""
    minutes = int(np.ceil(record.duration_s / 60.0))
    arrival, latency_ms = record.arrival, record.latency_ms
    if not np.all(arrival[1:] >= arrival[:-1]):  # a simulated run's are sorted, a sandbox run's may not be
        order = np.argsort(arrival, kind="stable")
        arrival, latency_ms = arrival[order], latency_ms[order]
    # minute m holds the arrivals in [60 m, 60 (m + 1)); the last one every arrival from its start on
    bounds = np.searchsorted(arrival, 60.0 * np.arange(minutes + 1))
    bounds[-1] = arrival.size
    load, latency = [], []
    for m in range(minutes):
        chunk = latency_ms[bounds[m]:bounds[m + 1]]
        load.append(len(chunk) / 60.0)
        latency.append(float(np.percentile(chunk, record.percentile, method="inverted_cdf")) if len(chunk) else 0.0)
    t = np.asarray(record.timeline_t)
    reps = np.asarray(record.timeline_replicas, dtype=np.float64)
    replicas = [float(reps[(t >= 60 * m) & (t < 60 * (m + 1))].mean()) if len(t) else 0.0 for m in range(minutes)]
    return {"load": load, "replicas": replicas, "latency_ms": latency}


RUNS_FILE = "runs.jsonl"
"""Every finished run of the report directory, one JSON line each, written as it finishes."""
SOURCES = ("operator/batchpilot", "bench/sim_compare.py")
"""What a run's result depends on (the planner, the simulator, its policies and profiles, the services here),
from the repository root."""
ROOT = Path(__file__).resolve().parent.parent


def code_fingerprint(root: Path = ROOT) -> str:
    """Digest of SOURCES (paths and bytes, caches left out) and numpy's version: a stored run counts only for
    the very code that made it."""
    digest = hashlib.sha256(f"numpy {np.__version__}".encode())
    for source in SOURCES:
        top = root / source
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


class RunStore:
    """The runs.jsonl of a report directory: a benchmark stopped part way (hours on 2 cores) resumes where it
    stopped, and a run planned twice (the best setting's seed-0 run is its sweep run) runs once. Lines of other
    code (another fingerprint) are dropped when it opens; `fresh` drops every line."""

    def __init__(self, path: Path, fingerprint: str, fresh: bool = False) -> None:
        self.path, self.fingerprint = path, fingerprint
        self.runs: dict[RunSpec, RunResult] = {}
        lines = [] if fresh or not path.exists() else path.read_text().splitlines()
        kept = []
        for line in lines:
            try:
                entry = json.loads(line)
                if entry["code"] != fingerprint:
                    continue
                result = result_from(entry["run"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill, or of an older format: that run runs again
            self.runs[result.spec] = result
            kept.append(line)
        self.dropped = len(lines) - len(kept)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{line}\n" for line in kept))

    def add(self, result: RunResult) -> None:
        self.runs[result.spec] = result
        with self.path.open("a") as f:
            f.write(json.dumps({"code": self.fingerprint, "run": result_dict(result)}) + "\n")


def run_all(specs: Sequence[RunSpec], jobs: int, label: str, store: RunStore) -> list[RunResult]:
    """The runs of `specs` in their order: those in `store` read back, the others in `jobs` processes (each
    stored as it finishes), printing progress (long work shows where it is)."""
    todo = list(dict.fromkeys(s for s in specs if s not in store.runs))
    if len(todo) < len(specs):
        print(f"[sim] {label}: {len(specs) - len(todo)} of {len(specs)} runs read back from {store.path} "
              "(same code)", flush=True)
    started, done = time.perf_counter(), 0
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for future in as_completed([pool.submit(run_one, spec) for spec in todo]):
            store.add(future.result())
            done += 1
            if done % max(1, len(todo) // 10) == 0 or done == len(todo):
                print(f"[sim] {label}: {done}/{len(todo)} runs, {time.perf_counter() - started:.0f}s", flush=True)
    return [store.runs[s] for s in specs]


def best_setting(results: Sequence[RunResult]) -> float | None:
    """The swept value with the fewest GPU-hours at >= ATTAINMENT_GOAL, else the highest attainment."""
    meeting = [r for r in results if r.metrics.attainment >= ATTAINMENT_GOAL]
    if meeting:
        return min(meeting, key=lambda r: r.metrics.gpu_hours).spec.setting
    return max(results, key=lambda r: r.metrics.attainment).spec.setting if results else None


def plan(args: argparse.Namespace) -> tuple[list[RunSpec], list[tuple[str, str, str]]]:
    """The sweep runs (seed 0) and the (service, trace, family) groups whose best setting they pick."""
    sweeps, groups = [], []
    for service in args.services:
        _, batching, capacity = sized(service)
        s = SERVICES[service]
        ctx = PeerContext(1, s.max_replicas, 1, batching, capacity, s.slo_ms, s.percentile)
        for trace in args.traces:
            for family in args.families:
                found = settings(family, ctx) if family != "batchpilot" else None
                sweep = BATCHPILOT_UTILIZATION_SWEEP if family == "batchpilot" else found.sweep if found else ()
                if not sweep or not args.sweep:
                    continue
                groups.append((service, trace, family))
                sweeps += [RunSpec(service, trace, 0, family, v, args.cold_start, args.duration_s, args.reject_late,
                                   args.max_instances, args.warmup_s) for v in sweep]
    return sweeps, groups


def final_specs(args: argparse.Namespace, best: dict[tuple[str, str, str], float | None]) -> list[RunSpec]:
    specs = []
    for service in args.services:
        for trace in args.traces:
            for seed in range(args.seeds):
                def spec(family: str, setting: float | None, seed: int = seed, trace: str = trace,
                         service: str = service) -> RunSpec:
                    return RunSpec(service, trace, seed, family, setting, args.cold_start, args.duration_s,
                                   args.reject_late, args.max_instances, args.warmup_s)
                for family in args.families:
                    specs.append(spec(family, None))
                    chosen = best.get((service, trace, family))
                    if chosen is not None:
                        specs.append(spec(family, chosen))
    return specs


WORKER_BYTES = 1.5 * 2**30
"""Memory one worker process may take: one peaked at 0.93 GB on the 2-hour compressed day (26 million arrivals,
Batchpilot, ru_maxrss; its trace is kept for the next run)."""


def default_jobs() -> int:
    """One worker per CPU this process may use, fewer where memory would not hold them."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(cpus, int(memory // WORKER_BYTES)))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.sim_compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/bench/sim"), help="report directory")
    p.add_argument("--services", nargs="+", default=list(SERVICES), choices=list(SERVICES))
    p.add_argument("--traces", nargs="+", default=list(TRACES), choices=list(TRACES))
    p.add_argument("--seeds", type=int, default=5, help="seeds per configuration (default 5)")
    p.add_argument("--cold-start", default="cached-image", choices=list(COLD_STARTS))
    p.add_argument("--duration", dest="duration_s", type=float, default=None,
                   help="cut every trace to this many seconds")
    p.add_argument("--jobs", type=int, default=default_jobs(),
                   help="worker processes (default: one per CPU, as memory allows at 1.5 GiB each)")
    p.add_argument("--families", nargs="+", default=["batchpilot", *FAMILIES], choices=["batchpilot", *FAMILIES],
                   help="policies to run (default: Batchpilot and every peer)")
    p.add_argument("--no-sweep", dest="sweep", action="store_false",
                   help="peers at their defaults only (the sweep is most of the work)")
    p.add_argument("--reject-late", action="store_true",
                   help="every policy's Triton rejects requests that can no longer meet the SLO (Batchpilot's "
                        "spec.batching.rejectLateRequests; the peers get the same queue timeout)")
    p.add_argument("--max-instances", type=int, default=None, metavar="N",
                   help="Batchpilot's spec.batching.maxInstanceCount: auto batching may run up to N model instances "
                        "per pod (the simulator slows batches in flight together by the profile's measured "
                        "contention); the peers keep one")
    p.add_argument("--warmup", action="store_true",
                   help="begin every run with a warm-up at the first minute's load, not measured: the cold-start "
                        "preset's longest plus 5 minutes, so each policy meets the trace in its own steady state "
                        "(default: none; every policy starts with the replicas the first minute needs at full "
                        "measured capacity)")
    p.add_argument("--fresh", action="store_true",
                   help=f"run everything again: drop the runs stored in OUT/{RUNS_FILE} (by default a run stored "
                        "there by the same code is read back, so a stopped benchmark resumes)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: step trace, resnet50, 1 seed, 30 minutes (the step at 20), defaults only (no sweep)")
    args = p.parse_args(argv)
    if args.quick:
        args.services, args.traces, args.seeds, args.sweep = ["resnet50"], ["step"], 1, False
        args.duration_s = args.duration_s or 1800.0
    args.warmup_s = warmup_for(args.cold_start) if args.warmup else 0.0
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.max_instances is not None and not 1 <= args.max_instances <= 16:
        p.error(f"--max-instances must be 1..16 (spec.batching.maxInstanceCount), got {args.max_instances}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from bench.sim_report import write_report  # matplotlib is imported only when writing

    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for service in args.services:
        _, batching, capacity = sized(service)
        print(f"[sim] {service}: best static batching {batching}, measured capacity {capacity:.0f} req/s per pod",
              flush=True)
    store = RunStore(args.out / RUNS_FILE, code_fingerprint(), fresh=args.fresh)
    if store.runs or store.dropped:
        print(f"[sim] {store.path}: {len(store.runs)} runs of this code kept, {store.dropped} dropped (other code, or "
              "cut short by a kill; --fresh runs everything again)", flush=True)
    stored = set(store.runs)
    sweeps, groups = plan(args)
    swept = run_all(sweeps, args.jobs, "sweep (seed 0)", store)
    best = {g: best_setting([r for r in swept if (r.spec.service, r.spec.trace, r.spec.family) == g])
            for g in groups}
    results = run_all(final_specs(args, best), args.jobs, "runs", store)
    wall = time.perf_counter() - started
    simulated_h = sum(r.simulated_s for r in [*swept, *results]) / 3600.0
    run_wall = sum(r.wall_s for r in [*swept, *results])
    meta = {"args": {k: str(v) for k, v in vars(args).items()}, "wall_s": wall,
            "read_back": len({r.spec for r in [*swept, *results]} & stored),
            "simulated_hours": simulated_h, "simulated_hours_per_wall_s": simulated_h / max(run_wall, 1e-9),
            "services": {k: asdict(SERVICES[k]) | {"capacity": sized(k)[2], "batching": asdict(sized(k)[1])}
                         for k in args.services}}
    (args.out / "results.json").write_text(json.dumps(
        {"meta": meta, "sweep": [result_dict(r) for r in swept], "runs": [result_dict(r) for r in results]},
        indent=1) + "\n")
    write_report(args.out, results, swept, meta, summarize)
    print(f"[sim] wrote {args.out / 'report.md'} ({len(swept) + len(results)} runs, {wall:.0f}s wall, "
          f"{meta['simulated_hours_per_wall_s']:.2f} simulated hours per wall second per process)")
    return 0


def result_dict(r: RunResult) -> dict[str, Any]:
    return {"spec": asdict(r.spec), "policy": r.policy, "setting": r.setting, "metrics": asdict(r.metrics),
            "wall_s": r.wall_s, "simulated_s": r.simulated_s, "timeline": r.timeline}


def result_from(d: dict[str, Any]) -> RunResult:
    """result_dict's inverse."""
    return RunResult(RunSpec(**d["spec"]), d["policy"], d["setting"], RunMetrics(**d["metrics"]), d["wall_s"],
                     d["simulated_s"], d["timeline"])


if __name__ == "__main__":
    sys.exit(main())
