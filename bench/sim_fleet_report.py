"""The fleet benchmark's report (bench/sim_fleet.py): Markdown tables, per-service attainment against GPU-hours
for each policy on each shared pool (cluster-<factor>x.png), and the 1,000-replica runs' replicas over time
(scale.png)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

GOAL = 0.99
"""The issue's attainment target."""


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def write_report(out: Path, results: Sequence[dict[str, Any]], meta: dict[str, Any]) -> None:
    args = meta["args"]
    lines = ["# Simulator at fleet scale: 1,000 replicas, and 200 services on one GPU pool", "",
             f"{len(results)} runs in {meta['wall_s']:.0f} s wall on {meta['cpus']} CPUs (load average at the end "
             f"{', '.join(f'{x:.2f}' for x in meta['load_average'])}), `--jobs {args['jobs']}`, cold start "
             f"{args['cold_start']}, seed {args['seed']}, every trace {float(args['duration_s']):.0f} s. "
             f"Arguments: `{args}`.", "",
             "Attainment: share of requests answered within the SLO (timeouts are misses). GPU-h: GPU time billed "
             "from scheduling to release (cold starts and draining included). Decision time: wall time of the "
             "policy's step() per call; for Batchpilot that is the operator's decide() plus building its "
             "Observation from the simulated monitoring. Peak RSS: the worker process that ran the run (one fresh "
             "process per run).", ""]
    for name, m in meta["models"].items():
        lines.append(f"- **{name}**: profile {m['profile']} x{m['time_scale']:g}, maxBatchSize {m['max_batch_size']}, "
                     f"SLO p{m['percentile']} {m['slo_ms'] / 1000:g} s, peers' static batching queue delay "
                     f"{m['batching']['max_queue_delay_us']} us, measured capacity {m['capacity']:.2f} req/s per pod.")
    scale = [r for r in results if r["part"] == "scale"]
    cluster = [r for r in results if r["part"] == "cluster"]
    if scale:
        lines += _scale_section(scale, args)
        _scale_plot(out, scale)
    for factor in sorted({r["gpu_factor"] for r in cluster}):
        runs = [r for r in cluster if r["gpu_factor"] == factor]
        lines += _cluster_section(runs, factor)
        _cluster_plot(out, runs, factor)
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _scale_section(runs: Sequence[dict[str, Any]], args: dict[str, Any]) -> list[str]:
    r0 = runs[0]
    lines = ["", "## 1. One service up to 1,000 replicas", "",
             f"Step trace at {float(args['scale_pods']):g} pods' worth of measured capacity on average "
             f"({0.5 * float(args['scale_pods']):g} for the first third, then {1.25 * float(args['scale_pods']):g}), "
             f"{r0['requests']:,} requests; maxReplicas {args['max_replicas']}, {args['scale_gpus']} GPUs. "
             "![scale](scale.png)", "",
             "| policy | setting | attainment | GPU-h | peak replicas | peak ready | scale events | cold starts | "
             "decision p50 ms | p95 ms | decisions | wall s | sim h / wall s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        m, d = r["metrics"], r["decide"]
        lines.append(f"| {r['family']} | {r['setting']} | {_pct(m['attainment'])} | {m['gpu_hours']:.1f} | "
                     f"{r['peak_replicas']} | {r['peak_ready']} | {m['scale_events']} | {m['cold_starts']} | "
                     f"{d['p50_ms']:.3f} | {d['p95_ms']:.3f} | {d['calls']} | {r['wall_s']:.0f} | "
                     f"{r['sim_hours_per_wall_s']:.3f} | {r['peak_rss_mb']:.0f} |")
    return lines


def _cluster_section(runs: Sequence[dict[str, Any]], factor: float) -> list[str]:
    r0 = runs[0]
    services = r0["services"]
    demand = sum(s["mean_demand_pods"] for s in services)
    by_trace: dict[str, int] = {}
    for s in services:
        by_trace[s["trace"]] = by_trace.get(s["trace"], 0) + 1
    lines = ["", f"## 2. {len(services)} services on one pool of {r0['gpus']} GPUs ({factor:g}x the mean demand)", "",
             f"{len(services)} services, {r0['requests']:,} requests in all, each its own trace and seed "
             f"({', '.join(f'{k} x{v}' for k, v in by_trace.items())}), loads of "
             f"{min(s['load_pods'] for s in services):g}-{max(s['load_pods'] for s in services):g} pods' worth; "
             f"sum of mean demands {demand:.0f} pods, pool {r0['gpus']} GPUs ({factor:g}x, whole 8-GPU nodes). The "
             "services are stepped together on the one pool (sim/cluster.py): a pod that finds no free GPU stays "
             "Pending, unbilled, until one frees, oldest first across services. "
             f"![cluster](cluster-{factor:g}x.png)", "",
             "| policy | setting | total GPU-h | attainment mean | min | p10 | all requests | services >= 99% | "
             "replicas asked (mean, all services) | Pending pod-h | most Pending at once | minutes with Pending | "
             "services with Pending | peak GPUs in use | decision p50 ms | p95 ms | wall s | service-h / wall s | "
             "peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        a, p, d = r["attainment"], r["pending"], r["decide"]
        lines.append(f"| {r['family']} | {r['setting']} | {r['gpu_hours']:.1f} | {_pct(a['mean'])} | "
                     f"{_pct(a['min'])} | {_pct(a['p10'])} | {_pct(a['overall'])} | {a['services_at_99']} | "
                     f"{r['mean_desired_replicas']:.0f} | {p['pod_hours']:.2f} | {p['max_pods']} | {p['minutes_with_pending']:.1f} | "
                     f"{p['services_with_pending']} | {r['peak_gpus_in_use']} | {d['p50_ms']:.3f} | "
                     f"{d['p95_ms']:.3f} | {r['wall_s']:.0f} | {r['sim_hours_per_wall_s']:.2f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    lines += ["", "Worst services per policy (attainment, GPU-h, trace, load):", ""]
    for r in runs:
        worst = sorted(r["services"], key=lambda s: s["attainment"])[:5]
        lines.append(f"- {r['family']}: " + "; ".join(
            f"{s['name']} {_pct(s['attainment'])} / {s['gpu_hours']:.2f} GPU-h ({s['trace']}, {s['load_pods']:g} "
            f"pods' worth, {s['model']})" for s in worst))
    return lines


def _scale_plot(out: Path, runs: Sequence[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for r in runs:
        t = r["timeline"]
        ax.step(range(len(t["replicas"])), t["replicas"], where="post", label=f"{r['family']} replicas")
    load = runs[0]["timeline"]["load"]
    ax.plot(range(len(load)), [x / runs[0]["capacity"] for x in load], color="black", ls="--",
            label="offered load, pods' worth")
    ax.set_xlabel("minute")
    ax.set_ylabel("pods")
    ax.legend(fontsize=8)
    ax.set_title("One service up to 1,000 replicas: desired replicas per minute")
    fig.tight_layout()
    fig.savefig(out / "scale.png", dpi=110)
    plt.close(fig)


def _cluster_plot(out: Path, runs: Sequence[dict[str, Any]], factor: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for r in runs:
        services = r["services"]
        ax.scatter([s["gpu_hours"] for s in services], [100 * s["attainment"] for s in services], s=14,
                   alpha=0.6, marker="*" if r["family"] == "batchpilot" else "o",
                   label=f"{r['family']}: {r['gpu_hours']:.0f} GPU-h, mean {100 * r['attainment']['mean']:.1f}%")
    ax.axhline(100 * GOAL, color="red", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("GPU-hours of the service (billed)")
    ax.set_ylabel("SLO attainment of the service, % of requests")
    ax.set_title(f"{len(runs[0]['services'])} services on one pool of {runs[0]['gpus']} GPUs ({factor:g}x the mean "
                 "demand): one point per service", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"cluster-{factor:g}x.png", dpi=110)
    plt.close(fig)
