"""`bench.compare_real`'s report: the simulator report's format (bench/sim_report.py) for the sandbox runs and for
their simulated twins, plus the per-run figures and the sim-vs-real gap table.

Writes report.md, results.json, the simulator report's pareto-/timeline- plots, run-<shape>-<config>.png (one per
sandbox run, from the run itself) and sim/report.md (the same shapes and arrivals in the simulator).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from batchpilot.sim.metrics import run_metrics, summarize
from batchpilot_sandbox.paths import keda_bins_dir
from bench.compare_configs import configs
from bench.compare_metrics import RealRun, clip_series, record
from bench.compare_real import SERVICE
from bench.compare_shapes import SCALE_RPS
from bench.compare_sim import SimRun
from bench.sim_compare import RunResult, RunSpec, minute_timeline, result_dict, sizing
from bench.sim_report import write_report
from bench.sim_validate_stats import replica_seconds


def real_result(run: RealRun) -> RunResult:
    """A sandbox run as the simulator benchmark's RunResult (the report helpers read those)."""
    rec = record(run)
    spec = RunSpec("sandbox", run.shape, run.seed, run.policy, None, "sandbox")
    return RunResult(spec, run.policy, run.setting, run_metrics(rec), 0.0, run.duration_s, minute_timeline(rec))


def gap_rows(real: Sequence[RealRun], sims: Sequence[SimRun]) -> list[dict[str, Any]]:
    """Per (configuration, shape) with a simulated twin: attainment and desired replica-seconds on both sides."""
    out = []
    for r in real:
        twin = next((s for s in sims if s.config == r.policy and s.result.spec.trace == r.shape), None)
        if twin is None:
            continue
        real_att = real_result(r).metrics.attainment
        real_rs = replica_seconds(clip_series(r.series, r.duration_s), r.duration_s)
        sim_rs = replica_seconds(twin.series, r.duration_s)
        out.append({"config": r.policy, "sim_policy": twin.result.policy, "shape": r.shape,
                    "real_attainment": real_att, "sim_attainment": twin.result.metrics.attainment,
                    "attainment_gap_pp": 100.0 * (twin.result.metrics.attainment - real_att),
                    "real_replica_s": real_rs, "sim_replica_s": sim_rs,
                    "replica_s_ratio": sim_rs / real_rs if real_rs > 0 else None})
    return out


def meta(args: dict[str, Any], wall_s: float) -> dict[str, Any]:
    _, batching, capacity = sizing(SERVICE)
    service = asdict(SERVICE) | {"capacity": capacity, "batching": asdict(batching),
                                 "percentile": 95, "load_pods": SCALE_RPS / capacity}
    return {"args": {k: str(v) for k, v in args.items()}, "wall_s": wall_s, "simulated_hours_per_wall_s": 0.0,
            "services": {"sandbox": service}}


def config_lines() -> list[str]:
    _, batching, capacity = sizing(SERVICE)
    lines = ["## Configurations", "", "| config | setting | KEDA Prometheus trigger query | simulator model |",
             "|---|---|---|---|"]
    for c in configs("NS", batching.max_queue_delay_us, capacity):
        query = f"`{c.trigger.query}`" if c.trigger else "- (Batchpilot plans replicas)"
        lines.append(f"| {c.key} | {c.setting} | {query} | {c.sim_family or 'none'} |")
    return lines


def run_lines(real: Sequence[RealRun]) -> list[str]:
    lines = ["## Per run (sandbox)", "", "| shape | config | requests | attainment | replica-s | scale events | "
             "pods started | retunes | failed | timeline |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in real:
        rec = record(r)
        m = run_metrics(rec)
        lines.append(f"| {r.shape} | {r.policy} | {rec.arrival.size} | {100 * m.attainment:.2f}% | "
                     f"{rec.gpu_seconds:.0f} | {m.scale_events} | {m.cold_starts} | {m.reloads} | {m.failed} | "
                     f"![run](run-{r.shape}-{r.policy}.png) |")
    return lines


def gap_lines(gaps: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["## Simulator vs sandbox (issue 10 item 4)", "",
             "Same arrivals, curve, SLO, bounds and static batching; cold starts as measured on the sandbox runs "
             "(sim/report.md). Gap: sim minus sandbox, percentage points; replica-s: desired replicas integrated "
             "over the load on both sides.", "",
             "| config | sim model | shape | attainment sandbox | sim | gap (pp) | replica-s sandbox | sim | "
             "ratio sim/sandbox |", "|---|---|---|---|---|---|---|---|---|"]
    for g in gaps:
        ratio = "-" if g["replica_s_ratio"] is None else f"{g['replica_s_ratio']:.2f}"
        lines.append(f"| {g['config']} | {g['sim_policy']} | {g['shape']} | {100 * g['real_attainment']:.2f}% | "
                     f"{100 * g['sim_attainment']:.2f}% | {g['attainment_gap_pp']:+.2f} | {g['real_replica_s']:.0f}"
                     f" | {g['sim_replica_s']:.0f} | {ratio} |")
    return lines


INTRO = ("One sandbox (real kube-apiserver, kube-controller-manager's HPA, KEDA {keda}, Prometheus, Triton with "
         "the GPU emulator on 4 emulated GPUs), one run per configuration and shape, {n} runs, {wall:.0f} s wall. "
         "Batchpilot runs batching fixed at the peers' static setting, so only the replica plan differs; "
         "batching-only is Batchpilot's batching (auto) under keda-rate's ScaledObject. Arguments: `{args}`.")
GPU_HOURS_DESIRED = ("the Deployment's desired replicas integrated over the load, one GPU each (the sandbox bills no "
                     "scheduling; the simulator's runs on the same arrivals, below, bill from scheduling)")
"""What GPU-h counts in the sandbox runs."""


def keda_version() -> str:
    """The KEDA build the sandbox runs (the cache's current link names it), e.g. v2.18.3."""
    try:
        return keda_bins_dir().resolve().name.removeprefix("keda-")
    except FileNotFoundError:
        return "(build not found)"


def write(out: Path, real: Sequence[RealRun], sims: Sequence[SimRun], failures: Sequence[str],
          args: dict[str, Any], wall_s: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    m = meta(args, wall_s)
    results = [real_result(r) for r in real]
    with_bp = {r.spec.trace for r in results if r.policy == "batchpilot"}
    intro = INTRO.format(keda=keda_version(), n=len(results), wall=wall_s, args=m["args"])
    if with_bp:  # the simulator report's tables are relative to Batchpilot
        write_report(out, [r for r in results if r.spec.trace in with_bp], [], m, summarize,
                     title="Sandbox: Batchpilot against the real KEDA and HPA", intro=intro,
                     gpu_hours=GPU_HOURS_DESIRED)
    head = (out / "report.md").read_text().rstrip("\n").split("\n") if with_bp else [
        "# Sandbox: Batchpilot against the real KEDA and HPA", "", intro]
    gaps = gap_rows(real, sims)
    extra = ["", *config_lines(), "", *run_lines(real), "", *gap_lines(gaps)]
    if failures:
        extra += ["", "## Failed runs", "", *(f"- {f}" for f in failures)]
    (out / "report.md").write_text("\n".join(head + extra) + "\n")
    sim_results = [s.result for s in sims]
    if any(r.policy == "batchpilot" for r in sim_results):
        (out / "sim").mkdir(exist_ok=True)
        write_report(out / "sim", sim_results, [], m, summarize, title="Simulator: the sandbox comparison's shapes "
                     "and arrivals", intro="The same arrivals as the sandbox runs (../report.md), through the "
                     "simulator's Batchpilot and its models of KEDA and the HPA.")
    data = {"meta": m, "runs": [result_dict(r) | {"series": asdict(clip_series(x.series, x.duration_s))}
                                for r, x in zip(results, real, strict=True)],
            "sim_runs": [result_dict(s.result) | {"config": s.config} for s in sims], "gap": gaps,
            "failures": list(failures)}
    (out / "results.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
