"""Batchpilot against the real KEDA and HPA in the sandbox: same service, same seeded load, one run after another.

    python -m bench.compare_real --out out/bench/compare                # 3 shapes x 5 configurations (~60 min)
    python -m bench.compare_real --quick --out out/bench/compare-quick  # step shape only, shortened (~15 min)
    python -m bench.compare_real --shapes bursty --configs batchpilot keda-rate --out /tmp/c

One sandbox with KEDA (4 emulated GPUs): per (shape, configuration) the sample InferenceService in a fresh
namespace, KEDA's ScaledObject where a peer owns the replicas (bench/compare_configs.py), the load generator
on the shape's seeded rate path (bench/compare_shapes.py), then the namespace is released. Then the simulator
replays the same arrivals with its models of the peers (bench/compare_sim.py), and the report
(bench/compare_report.py) gives both in the simulator report's format plus the gap between them.

The peers' per-replica capacity (keda-rate's AverageValue) is derived from the emulated GPU's profile, not
measured on the sandbox: `sizing.measure_capacity` is the Model Analyzer-style search a user runs offline on
one replica, on the very curve the emulator serves, and the simulator's KEDA model gets the same number, so
the sim-vs-real gap is about the autoscalers, not about two capacity estimates (and it costs no sandbox time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from batchpilot_sandbox.cluster.namespaces import release_namespace
from batchpilot_sandbox.cluster.stack import Sandbox, SandboxConfig
from batchpilot_sandbox.demo.run import HEADER, Row, line, plot, row, wait_ready
from batchpilot_sandbox.demo.service_watch import ServiceWatch
from batchpilot_sandbox.loadgen.cli import PodTargets, WindowReport, run_load
from batchpilot_sandbox.loadgen.stats import Phase, schedule_duration
from batchpilot_sandbox.process import poll
from bench.compare_configs import Config, configs, inference_service, scaled_object
from bench.compare_metrics import RealRun, load_start
from bench.compare_shapes import SHAPES, schedule_text
from bench.sim_compare import Service, sizing
from bench.sim_validate_stats import Series

SERVICE = Service("h100-resnet50-fp16", 10.0, 4, 200.0, max_replicas=4)
"""The sample service as bench/sim_compare.py describes one (batchpilot_sandbox/demo/sample.py's profile, slowdown, batch cap
and SLO): its sizing gives the peers' static batching and per-replica capacity."""
SEED = 0
"""Seed of every shape's rate path and of the load generator's arrivals (the simulator replays them)."""
CLIENT_TIMEOUT_S = 10.0
"""Per-request timeout of the load generator (as the demo): slower requests fail, and miss the SLO."""
SETUP_S = 45.0
"""Rough seconds per run besides the load (pod start, first metrics, namespace release), for the time left."""
HPA_WAIT_S = 60.0


def echo(text: str) -> None:
    print(f"[compare] {text}", flush=True)


@dataclass
class Progress:
    """Which run of how many, and the time left, for the live lines."""

    total: int
    load_s: float
    """Seconds of load per run."""
    index: int = 0

    def left_s(self, into_load_s: float = 0.0) -> float:
        runs_after = self.total - self.index
        return runs_after * (self.load_s + SETUP_S) + max(0.0, self.load_s - into_load_s)

    def tag(self, config: Config, shape: str) -> str:
        return f"{self.index}/{self.total} {shape} {config.key}"


def short_schedule(phases: list[Phase]) -> str:
    """The schedule as text, or its length and rate range when it has many phases (a binned ramp)."""
    if len(phases) <= 6:
        return schedule_text(phases)
    rates = [r for _, r in phases]
    return f"{len(phases)} phases over {schedule_duration(phases):g} s, {min(rates):.0f}..{max(rates):.0f} req/s"


def apply(sandbox: Sandbox, manifests: list[dict[str, Any]]) -> None:
    sandbox.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(manifests, sort_keys=False))


def get_json(sandbox: Sandbox, *args: str) -> Any:
    out = sandbox.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(out) if out.strip() else None


def start_peer(sandbox: Sandbox, config: Config) -> None:
    """The ScaledObject on the Deployment once the operator created it, then the HPA KEDA makes of it."""
    s = config.sample
    obj = scaled_object(config, sandbox.prometheus_url)
    if obj is None:
        return
    poll(f"Deployment {s.namespace}/{s.name}", lambda: get_json(sandbox, "deployment", "-n", s.namespace,
                                                                     s.name), 90)
    apply(sandbox, [obj])
    poll(f"KEDA's HPA keda-hpa-{s.name}", lambda: get_json(sandbox, "hpa", "-n", s.namespace,
                                                                f"keda-hpa-{s.name}"), HPA_WAIT_S)


def retunes(sandbox: Sandbox, namespace: str) -> int:
    """Retuned Events of the InferenceService (a repeated Event counts each time)."""
    events = get_json(sandbox, "events", "-n", namespace, "--field-selector",
                      "involvedObject.kind=InferenceService,reason=Retuned") or {"items": []}
    return sum(int(e.get("count") or (e.get("series") or {}).get("count") or 1) for e in events["items"])


def describe(sandbox: Sandbox, namespace: str) -> str:
    """What decided the run, for reading afterwards: the HPA KEDA made (if any), the InferenceService's status
    and the namespace's Events."""
    return "\n\n".join(sandbox.kubectl(*args, check=False) for args in (
        ("describe", "hpa", "-n", namespace),
        ("get", "inferenceservice", "-n", namespace, "-o", "jsonpath={.items[0].status}"),
        ("get", "events", "-n", namespace, "--sort-by=.lastTimestamp"),
    ))


@dataclass
class LoadResult:
    rows: list[Row]
    requests: list[tuple[float, float | None]]
    t0: float
    """Unix time of the load's start."""


def offer(sandbox: Sandbox, config: Config, watch: ServiceWatch, phases: list[Phase], progress: Progress,
          shape: str) -> LoadResult:
    """The load generator on phases against the service's ready pods; a live line per 5 s window."""
    s = config.sample
    rows: list[Row] = []
    requests: list[tuple[float, float | None]] = []
    echo_times: list[float] = []
    started = time.time()

    def on_interval(report: WindowReport) -> None:
        echo_times.append(time.time())
        rows.append(row(report, watch.latest()))
        left = progress.left_s(rows[-1].t_s) / 60.0
        print(f"[{progress.tag(config, shape)}, ~{left:.0f} min left] {line(rows[-1], s.latency_ms)}", flush=True)

    async def go() -> None:
        targets = PodTargets(sandbox.kubeconfig, s.namespace, s.name)
        try:
            await run_load(targets, s.model, phases, interval_s=5.0, on_interval=on_interval, seed=SEED,
                           timeout_s=CLIENT_TIMEOUT_S, on_request=lambda o, lat: requests.append((o, lat)))
        finally:
            targets.close()

    asyncio.run(go())
    return LoadResult(rows, requests, load_start(echo_times, [r.t_s for r in rows], started))


def run_one(sandbox: Sandbox, config: Config, shape: str, phases: list[Phase], progress: Progress,
            out: Path) -> RealRun:
    """One configuration through one shape in its own namespace, released afterwards."""
    s = config.sample
    tag = progress.tag(config, shape)
    apply(sandbox, inference_service(config))
    try:
        start_peer(sandbox, config)
        with ServiceWatch(sandbox.kubeconfig, s.namespace, s.name) as watch:
            wait_ready(watch)
            echo(f"{tag}: ready ({config.setting}); load {short_schedule(phases)}")
            print(HEADER, flush=True)
            load = offer(sandbox, config, watch, phases, progress, shape)
            samples = list(watch.samples)
        count = retunes(sandbox, s.namespace)
        (out / f"run-{shape}-{config.key}.txt").write_text(describe(sandbox, s.namespace))
    finally:
        sandbox.kubectl("delete", "scaledobjects.keda.sh", "--all", "-n", s.namespace, "--wait=true",
                        "--timeout=60s", check=False)
        release_namespace(sandbox, s.namespace)
    plot(load.rows, s.latency_ms, out / f"run-{shape}-{config.key}.png", title=f"{config.key} ({config.setting}), "
         f"{shape}: sandbox")
    series = Series(tuple(x.at - load.t0 for x in samples), tuple(x.replicas for x in samples),
                    tuple(x.ready_replicas for x in samples))
    return RealRun(config.key, config.setting, shape, SEED, s.latency_ms, schedule_duration(phases),
                   tuple(load.requests), series, count)


def run_all(args: argparse.Namespace, out: Path) -> tuple[list[RealRun], list[str]]:
    """Every (shape, configuration) in one sandbox with KEDA; failures are reported and skipped."""
    _, batching, capacity = sizing(SERVICE)
    plans = {name: SHAPES[name].phases(SEED, args.quick) for name in args.shapes}
    load_s = max(schedule_duration(p) for p in plans.values())
    progress = Progress(total=len(plans) * len(args.configs), load_s=load_s)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bp-compare-"))
    echo(f"peers' static batching: maxBatchSize {batching.max_batch_size}, queue delay {batching.max_queue_delay_us}"
         f" us; per-replica capacity {capacity:.1f} req/s (from the profile); sandbox in {workdir}")
    runs, failures = [], []
    config = SandboxConfig(workdir, gpus=4, keda=True)
    with Sandbox(config, progress=lambda m: echo(f"sandbox: {m}")) as sandbox:
        for shape, phases in plans.items():
            chosen = [c for c in configs(f"cmp-{shape}", batching.max_queue_delay_us, capacity)
                      if c.key in args.configs]
            for c in chosen:
                progress.index += 1
                try:
                    runs.append(run_one(sandbox, c, shape, phases, progress, out))
                except Exception as e:  # noqa: BLE001 - one failed run is reported, the others still run
                    failures.append(f"{shape} / {c.key}: {type(e).__name__}: {e}")
                    echo(f"{progress.tag(c, shape)} FAILED: {e}")
    return runs, failures


CONFIG_KEYS = ("batchpilot", "keda-rate", "keda-latency", "keda-queue-compute", "batching-only")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.compare_real", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/bench/compare"), help="report directory")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--configs", nargs="+", default=list(CONFIG_KEYS), choices=list(CONFIG_KEYS))
    p.add_argument("--quick", action="store_true", help="the step shape only, shortened (30 s + 120 s)")
    p.add_argument("--workdir", type=Path, help="sandbox workdir (default: a fresh temporary folder)")
    args = p.parse_args(argv)
    if args.quick and argv is not None and "--shapes" not in argv:
        args.shapes = ["step"]
    return args


def main(argv: list[str] | None = None) -> int:
    from bench.compare_report import write
    from bench.compare_sim import run_sims

    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started, load_before = time.monotonic(), os.getloadavg()
    runs, failures = run_all(args, args.out)
    echo(f"sandbox runs done ({len(runs)} ok, {len(failures)} failed) in {time.monotonic() - started:.0f}s; "
         "simulator on the same arrivals")
    sims = run_sims(runs, args.quick)
    machine = {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg()}
    write(args.out, runs, sims, failures, vars(args) | machine, time.monotonic() - started)
    echo(f"wrote {args.out / 'report.md'} ({time.monotonic() - started:.0f}s wall)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
