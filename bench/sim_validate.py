"""Validation of the simulator against the sandbox: one trace, one profile, Batchpilot on both, side by side.

    python -m bench.sim_validate --out out/bench/validate                 # sandbox, then simulator
    python -m bench.sim_validate --sim-only --out /tmp/v                  # simulator only (cold start --cold-start)
    python -m bench.sim_validate --sandbox-json out/bench/validate/validate.json --out /tmp/v   # re-run the sim

Sandbox side: the demo's machinery (batchpilot_sandbox/demo/run.py `load_step`): real Triton with the GPU emulator, real
Prometheus and the operator, the sample service (batchpilot_sandbox/demo/sample.py: H100 ResNet-50 slowed 10x, maxBatchSize 4,
SLO p95 200 ms, 1..4 replicas, scale-down stabilization 30 s) under the load generator's seeded Poisson schedule.
Simulator side: the very same arrival times (loadgen_stats.poisson_arrivals with the load generator's seed), the
same curve and spec, Batchpilot's planner every control interval, and a SimConfig set to the sandbox's periods;
the cold start is the one measured on the sandbox run (desired replicas up to ready).

Writes validate.md (per-window table and errors), validate.json and validate.png to --out.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from batchpilot.sim.engine import SimConfig, simulate
from batchpilot.sim.policies.batchpilot import BatchpilotPolicy, service_spec
from batchpilot.sim.profile import load_curve
from batchpilot.sim.types import ColdStart, Trace
from batchpilot_sandbox.demo.sample import SampleService
from batchpilot_sandbox.loadgen.stats import parse_schedule, poisson_arrivals, schedule_duration
from bench.sim_validate_plot import plot, table
from bench.sim_validate_stats import Errors, Series, Window, cold_starts, compare, request_windows

SCHEDULE = "40s@15,150s@120,60s@30"
"""Quiet, a step past one replica's ~95/s, then back down far enough for the 30 s stabilization to scale in."""
LOADGEN_SEED = 0
"""run_load's default seed (demo.py passes none): the sim replays the very arrival times the sandbox offered."""
CLIENT_TIMEOUT_S = 10.0
"""The demo's per-request timeout (demo.py `_load` timeout_s): slower requests fail on both sides."""
DEFAULT_COLD_START = (4.0, 8.0)
"""Sandbox pod start to Ready, seconds, when no sandbox run measured it (process start plus model load)."""


@dataclass(frozen=True)
class Side:
    """One side's run reduced for comparison."""

    windows: list[Window]
    series: Series


def echo(text: str) -> None:
    print(f"[validate] {text}", flush=True)


def run_sandbox(schedule: str, workdir: Path, gpus: int) -> tuple[Side, list[dict[str, Any]]]:
    """The demo's load step on a fresh sandbox; windows from the load generator, series from ServiceWatch."""
    from batchpilot_sandbox.cluster.stack import Sandbox, SandboxConfig
    from batchpilot_sandbox.demo.run import line, load_step
    from batchpilot_sandbox.demo.service_watch import ServiceWatch

    sample = SampleService()
    started: dict[str, Any] = {}

    row_times: list[float] = []

    def on_start(watch: ServiceWatch) -> None:
        started["t0"], started["watch"] = time.time(), watch

    def echo_row(text: str) -> None:
        if "watch" in started:  # after on_start only the load's window lines are echoed (demo.py `_load`)
            row_times.append(time.time())
        echo(f"sandbox {text}")

    with Sandbox(SandboxConfig(workdir, gpus=gpus), progress=lambda m: echo(f"sandbox: {m}")) as sandbox:
        rows = load_step(sandbox, sample, schedule, echo_row, on_start=on_start)
    if not rows:
        raise RuntimeError("the sandbox run ended before its first window")
    # The load generator's clock starts after target discovery, a little after on_start: each window line is
    # echoed as its window closes, so the load's start in Unix time is best read off those.
    t0 = float(np.median([at - r.t_s for at, r in zip(row_times, rows, strict=False)])) if row_times \
        else started["t0"]
    echo(f"sandbox: load started {t0 - started['t0']:+.2f} s after on_start")
    samples = [s for s in started["watch"].samples if s.at - t0 <= schedule_duration(parse_schedule(schedule))]
    series = Series(tuple(s.at - t0 for s in samples), tuple(s.replicas for s in samples),
                    tuple(s.ready_replicas for s in samples))
    windows = [Window(end_s=r.t_s, offered_rate=r.offered_rate, p95_ms=r.p95_ms, errors=r.errors,
                      desired=series.at(r.t_s)[0], ready=series.at(r.t_s)[1]) for r in rows]
    echo(f"sandbox: {len(rows)} windows, {len(samples)} replica samples; last {line(rows[-1], sample.latency_ms)}")
    return Side(windows, series), [asdict(r) for r in rows]


def sim_trace(schedule: str, seed: int) -> Trace:
    """The load generator's own arrival times for (schedule, seed): the same requests, not just the same rate."""
    phases = parse_schedule(schedule)
    arrivals = np.fromiter(poisson_arrivals(phases, random.Random(seed)), dtype=np.float64)
    return Trace(name=f"schedule {schedule}", arrivals=arrivals, duration_s=schedule_duration(phases), seed=seed)


def sim_config(cold: ColdStart, sample: SampleService) -> SimConfig:
    """The sandbox as the simulator sees it: batchpilot_sandbox/cluster/stack.py SandboxConfig periods, 4 GPUs, the demo timeout."""
    return SimConfig(curve=load_curve(sample.profile_name, sample.time_scale), slo_ms=sample.latency_ms,
                     cold_start=cold, gpus=4, scrape_s=2.0, rate_window_s=15.0, client_timeout_s=CLIENT_TIMEOUT_S)


def run_sim(schedule: str, cold: ColdStart, seed: int, control_interval_s: float) -> Side:
    sample = SampleService()
    config = sim_config(cold, sample)
    spec = service_spec(config.curve, sample.latency_ms, 95, sample.max_batch_size, sample.min_replicas,
                        sample.max_replicas, max_queue_delay_us=sample.max_queue_delay_us,
                        extra={"autoscaling": {"scaleDown": {
                            "stabilizationSeconds": sample.scale_down_stabilization_seconds}}})
    policy = BatchpilotPolicy(spec, sample.min_replicas, period_s=control_interval_s)
    trace = sim_trace(schedule, LOADGEN_SEED)
    record = simulate(trace, policy, config, seed)
    echo(f"sim: {len(trace.arrivals)} requests, {record.scale_events} scale events, {record.cold_starts} cold "
         f"starts, {record.reloads} reloads, {record.wall_s:.1f} s wall")
    series = Series(tuple(record.timeline_t), tuple(record.timeline_replicas), tuple(record.timeline_ready))
    return Side(request_windows(record.arrival, record.latency_ms, series, trace.duration_s), series)


def cold_start_from(series: Series | None, override: str | None) -> ColdStart:
    """--cold-start LOW,HIGH, else the range measured on the sandbox's series, else DEFAULT_COLD_START."""
    if override:
        low, high = (float(x) for x in override.split(","))
        return ColdStart("given", low, high)
    measured = cold_starts(series) if series else []
    if measured:
        echo(f"sandbox cold starts (desired up to ready): {', '.join(f'{c:.1f}' for c in measured)} s")
        return ColdStart("sandbox", min(measured), max(measured))
    return ColdStart("default", *DEFAULT_COLD_START)


def load_sandbox(path: Path) -> tuple[Side, list[dict[str, Any]]]:
    """A previous run's sandbox side from its validate.json."""
    data = json.loads(path.read_text())["sandbox"]
    s = data["series"]
    series = Series(tuple(s["t"]), tuple(s["desired"]), tuple(s["ready"]))
    return Side([Window(**w) for w in data["windows"]], series), data.get("rows", [])


def write(out: Path, args: argparse.Namespace, cold: ColdStart, sandbox: Side | None, sim: Side,
          errors: Errors | None, rows: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)

    def side(s: Side | None, extra: dict[str, Any]) -> dict[str, Any] | None:
        return None if s is None else {"windows": [asdict(w) for w in s.windows], "series": asdict(s.series),
                                       **extra}

    data = {"schedule": args.schedule, "seed": args.seed, "control_interval_s": args.control_interval,
            "cold_start": asdict(cold), "errors": asdict(errors) if errors else None,
            "sandbox": side(sandbox, {"rows": rows}), "sim": side(sim, {})}
    (out / "validate.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "validate.md").write_text(table(args.schedule, cold, sandbox.windows if sandbox else None, sim.windows, errors))
    plot((sandbox.windows, sandbox.series) if sandbox else None, (sim.windows, sim.series), 200.0, out / "validate.png")
    echo(f"wrote {out / 'validate.md'}, {out / 'validate.json'}, {out / 'validate.png'}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.sim_validate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/bench/validate"), help="output folder")
    p.add_argument("--schedule", default=SCHEDULE, help=f"load phases DURATION@RATE,... (default {SCHEDULE})")
    p.add_argument("--seed", type=int, default=0, help="simulator seed: cold starts, routing, batch noise")
    p.add_argument("--control-interval", type=float, default=5.0,
                   help="operator control interval, s (SandboxConfig.control_interval_s, default 5)")
    p.add_argument("--gpus", type=int, default=4, help="sandbox GPUs (default 4)")
    p.add_argument("--workdir", type=Path, help="sandbox workdir (default: a fresh temporary folder)")
    p.add_argument("--sim-only", action="store_true", help="skip the sandbox; only the simulator side")
    p.add_argument("--sandbox-json", type=Path, help="reuse the sandbox side of a previous validate.json")
    p.add_argument("--cold-start", help="simulated cold start LOW,HIGH seconds (default: measured on the sandbox)")
    args = p.parse_args(argv)
    parse_schedule(args.schedule)  # a bad schedule fails before anything starts
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sandbox: Side | None = None
    rows: list[dict[str, Any]] = []
    if args.sandbox_json:
        sandbox, rows = load_sandbox(args.sandbox_json)
        echo(f"sandbox side from {args.sandbox_json}")
    elif not args.sim_only:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bp-validate-"))
        echo(f"sandbox in {workdir}, schedule {args.schedule}")
        sandbox, rows = run_sandbox(args.schedule, workdir, args.gpus)
    cold = cold_start_from(sandbox.series if sandbox else None, args.cold_start)
    echo(f"sim: cold start {cold.name} {cold.low_s:.1f}..{cold.high_s:.1f} s, seed {args.seed}")
    sim = run_sim(args.schedule, cold, args.seed, args.control_interval)
    duration = schedule_duration(parse_schedule(args.schedule))
    errors = compare(sandbox.windows, sim.windows, sandbox.series, sim.series, duration) if sandbox else None
    write(args.out, args, cold, sandbox, sim, errors, rows)
    print(table(args.schedule, cold, sandbox.windows if sandbox else None, sim.windows, errors), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
