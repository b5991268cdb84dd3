"""Reconcile at scale: N InferenceServices across K namespaces on a real control plane, then a spec edit on all.

Reports reconcile throughput, per-service reconcile time (p50/p95), the operator's memory with no services and
with N, the control loop at rest (tick lateness, starved services, kube-apiserver requests/s: bench/steady.py),
and a correctness verdict per service; exits 1 when any service is not reconciled correctly.

    python -m bench.reconcile_scale --out out/bench                      # 1,000 services in 20 namespaces
    python -m bench.reconcile_scale --services 100 --namespaces 5 --out /tmp/rs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from batchpilot_sandbox.cluster.controlplane import ControlPlane
from batchpilot_sandbox.cluster.kubectl import install_crd, kubectl
from bench.fleet import CREATE, Expectation, Fleet, edit_of
from bench.operator_process import Footprint, OperatorProcess
from bench.report import markdown
from bench.steady import api_rate, hold
from bench.tracker import Tracker

Say = Callable[[str], None]
PROGRESS_EVERY_S = 3.0
QUIET_CORES = 0.25


@dataclass
class PhaseResult:
    name: str
    change: str
    services: int
    reconciled: int
    apply_s: float
    wall_s: float
    """From the start of the applies to the last service reconciled (or the timeout)."""
    throughput_per_s: float
    p50_s: float | None
    p95_s: float | None
    max_s: float | None
    operator_cpu_s: float
    failures: int
    problems: dict[str, list[str]] = field(default_factory=dict)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def apply_fleet(kubeconfig: Path, fleet: Fleet, expect: Expectation) -> float:
    """One `kubectl apply` per namespace, all at once; returns the seconds until the last returned."""
    start = time.monotonic()
    docs = {ns: yaml.safe_dump_all(fleet.inference_services(ns, expect)) for ns in fleet.namespace_names}
    with ThreadPoolExecutor(max_workers=len(docs)) as pool:
        for done in [pool.submit(kubectl, kubeconfig, "apply", "-f", "-", stdin=d) for d in docs.values()]:
            done.result()
    return time.monotonic() - start


def run_phase(name: str, change: str, expect: Expectation, fleet: Fleet, cp: ControlPlane, op: OperatorProcess,
              tracker: Tracker, timeout_s: float, say: Say) -> PhaseResult:
    """Apply the phase's spec to every service and time until each is reconciled as expect says."""
    tracker.begin(expect)
    cpu_before = op.footprint().cpu_s
    start = time.monotonic()
    apply_s = apply_fleet(cp.kubeconfig, fleet, expect)
    say(f"{name}: applied {fleet.services} InferenceServices in {fleet.namespaces} namespaces ({apply_s:.1f}s)")
    deadline, next_line = start + timeout_s, start + PROGRESS_EVERY_S
    while len(tracker.done) < fleet.services and time.monotonic() < deadline and op.alive():
        time.sleep(0.2)
        if time.monotonic() >= next_line:
            say(f"{name}: {len(tracker.done)}/{fleet.services} reconciled ({time.monotonic() - start:.0f}s)"
                + _waiting(tracker))
            next_line = time.monotonic() + PROGRESS_EVERY_S
    if not op.alive():
        raise RuntimeError(f"the operator exited during {name}:\n{op.log_tail()}")
    end = max(tracker.done.values()) if len(tracker.done) == fleet.services else time.monotonic()
    cpu_s = op.footprint().cpu_s - cpu_before
    problems = {f"{ns}/{svc}": found for (ns, svc), found in tracker.problems(fresh=True).items()}
    durations = tracker.durations()
    wall = end - start
    say(f"{name}: {len(tracker.done)}/{fleet.services} reconciled in {wall:.1f}s, {len(problems)} wrong")
    return PhaseResult(
        name=name, change=change, services=fleet.services, reconciled=len(tracker.done), apply_s=round(apply_s, 2),
        wall_s=round(wall, 2), throughput_per_s=round(len(tracker.done) / wall, 2),
        p50_s=_round(percentile(durations, 50)), p95_s=_round(percentile(durations, 95)),
        max_s=_round(max(durations, default=None)), operator_cpu_s=round(cpu_s, 2), failures=len(problems),
        problems=problems,
    )


def settle(op: OperatorProcess, at_least_s: float, say: Say, window_s: float = 5.0,
           at_most_s: float = 180.0) -> tuple[float, float]:
    """Wait at least one control interval, then until the operator uses under QUIET_CORES over a window (its
    timers alone stay well below), so memory is read at rest; returns (seconds waited, cores used last)."""
    start = time.monotonic()
    say(f"settling: at least {at_least_s:.0f}s (one control interval), then until the operator is quiet")
    time.sleep(at_least_s)
    while True:
        before = op.footprint().cpu_s
        time.sleep(window_s)
        cores = (op.footprint().cpu_s - before) / window_s
        waited = time.monotonic() - start
        if cores < QUIET_CORES or waited > at_most_s:
            return round(waited, 1), round(cores, 2)
        say(f"operator still busy ({cores:.2f} cores) after {waited:.0f}s")


def _waiting(tracker: Tracker) -> str:
    reasons = tracker.waiting_on().most_common(1)
    return f"; most wait on: {reasons[0][0]} ({reasons[0][1]})" if reasons else ""


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def measure(args: argparse.Namespace, workdir: Path, say: Say) -> dict[str, Any]:
    """The whole run: control plane, operator, create phase, settle, edit phase."""
    fleet = Fleet(services=args.services, namespaces=args.namespaces)
    started = time.monotonic()
    load = os.getloadavg()[0]
    say("starting etcd, kube-apiserver, kube-controller-manager")
    with ControlPlane(workdir / "control-plane") as cp:
        install_crd(cp.kubeconfig)
        kubectl(cp.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(fleet.namespace_manifests()))
        say(f"control plane ready ({time.monotonic() - started:.0f}s); starting the operator")
        log = workdir / "operator.log"
        try:
            with OperatorProcess(cp, log, args.control_interval) as op, Tracker(cp.kubeconfig, fleet) as tracker:
                time.sleep(3)  # let kopf finish its initial listing
                idle_empty = op.footprint()
                idle_rate = api_rate(cp.kubeconfig, 10.0)
                say(f"operator idle with no services: RSS {idle_empty.rss_kib / 1024:.1f} MiB")
                create = run_phase("create", "new InferenceServices", CREATE, fleet, cp, op, tracker,
                                   args.timeout, say)
                settled_s, busy = settle(op, args.control_interval + 5, say)
                idle_full = op.footprint()
                ticked = tracker.metrics_unavailable()
                say(f"operator idle with {fleet.services} services: RSS {idle_full.rss_kib / 1024:.1f} MiB")
                steady = hold(tracker.tick_times, cp.kubeconfig, fleet.services, args.control_interval,
                              args.hold, idle_rate, lambda: op.footprint().cpu_s, say)
                edit = edit_of(CREATE, tracker.templates())
                change = (f"slo.latencyMs {CREATE.latency_ms:g} -> {edit.latency_ms:g}, batching."
                          f"maxQueueDelayMicroseconds {CREATE.queue_delay_us} -> {edit.queue_delay_us}")
                edited = run_phase("edit", change, edit, fleet, cp, op, tracker, args.timeout, say)
                final = op.footprint()
                errors, runs = op.log_errors(), op.handler_runs()
                restarts = sum(m.restarts for m in tracker.mirrors)
        finally:
            if log.exists():
                shutil.copy(log, args.out / "operator.log")
    return {
        "services": fleet.services, "namespaces": fleet.namespaces, "control_interval_s": args.control_interval,
        "cpus": os.cpu_count(), "load_average_at_start": round(load, 2),
        "phases": [asdict(create), asdict(edited)],
        "memory": _memory(idle_empty, idle_full, final, fleet.services),
        "control_loop_ran_on": ticked, "steady": asdict(steady), "handler_runs": runs, "settled_s": settled_s, "settled_cores": busy,
        "failures": create.failures + edited.failures,
        "operator_log_errors": errors[:20], "operator_log_error_count": len(errors), "watch_restarts": restarts,
        "total_wall_s": round(time.monotonic() - started, 1),
    }


def _memory(empty: Footprint, full: Footprint, final: Footprint, services: int) -> dict[str, float]:
    return {
        "idle_no_services_rss_mib": round(empty.rss_kib / 1024, 1),
        "idle_with_services_rss_mib": round(full.rss_kib / 1024, 1),
        "per_service_kib": round((full.rss_kib - empty.rss_kib) / services, 1),
        "after_edit_rss_mib": round(final.rss_kib / 1024, 1),
        "peak_rss_mib": round(final.peak_rss_kib / 1024, 1),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.reconcile_scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--services", type=int, default=1000, help="InferenceServices to create (default 1000)")
    p.add_argument("--namespaces", type=int, default=20, help="namespaces they are spread over (default 20)")
    p.add_argument("--out", type=Path, default=Path("out/bench"), help="where the report goes (default out/bench)")
    p.add_argument("--control-interval", type=float, default=15.0,
                   help="the operator's BATCHPILOT_CONTROL_INTERVAL_SECONDS (default 15, as in a cluster)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds each phase may take (default 300)")
    p.add_argument("--hold", type=float, default=60.0,
                   help="seconds the steady state is watched for tick lateness and API load (default 60)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.services < 1 or not 1 <= args.namespaces <= args.services:
        parser().error("need --services >= 1 and 1 <= --namespaces <= --services")
    args.out.mkdir(parents=True, exist_ok=True)

    def say(message: str) -> None:
        print(f"[bench] {message}", flush=True)

    with tempfile.TemporaryDirectory(prefix="batchpilot-bench-") as tmp:
        result = measure(args, Path(tmp), say)
    (args.out / "reconcile_scale.json").write_text(json.dumps(result, indent=1) + "\n")
    report = markdown(result)
    (args.out / "reconcile_scale.md").write_text(report)
    print(report)
    say(f"wrote {args.out / 'reconcile_scale.md'}, {args.out / 'reconcile_scale.json'} and operator.log")
    return 0 if result["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
