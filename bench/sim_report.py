"""The simulator benchmark's report: Markdown tables with 95% intervals over seeds, and plots a person reads at a
glance (GPU-hours vs attainment per trace; a timeline of load, replicas and latency per policy)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.sim_compare import RunResult

GOAL = 0.99
"""Attainment the issue sets for Batchpilot, and the bar a peer must clear to count as "best"."""
TIMELINE_FAMILIES = ("batchpilot", "keda-rate", "hpa-queue-compute", "knative", "static", "oracle")
"""Policies drawn in the timelines (Batchpilot at its default, the peers at their best setting where swept): every
policy would be unreadable."""

Row = dict[str, Any]


def group(results: Sequence[RunResult]) -> dict[tuple[str, str], dict[tuple[str, str], list[RunResult]]]:
    """(service, trace) -> (policy, setting) -> the runs over seeds."""
    out: dict[tuple[str, str], dict[tuple[str, str], list[RunResult]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        out[(r.spec.service, r.spec.trace)][(r.policy, r.setting)].append(r)
    return out


def rows(runs: dict[tuple[str, str], list[RunResult]], summarize: Callable[..., Any]) -> list[Row]:
    table = []
    for (policy, setting), rs in runs.items():
        s = summarize([r.metrics for r in rs])
        table.append({"policy": policy, "setting": setting, "seeds": len(rs), "att": s["attainment"],
                      "win": s["window_attainment"], "gpu": s["gpu_hours"],
                      "events": sum(r.metrics.scale_events for r in rs) / len(rs),
                      "cold": sum(r.metrics.cold_starts for r in rs) / len(rs),
                      "failed": sum(r.metrics.failed for r in rs) / len(rs),
                      "reloads": sum(r.metrics.reloads for r in rs) / len(rs)})
    return sorted(table, key=lambda r: (r["policy"] != "batchpilot", r["policy"], r["setting"]))


def _pm(pair: tuple[float, float], pct: bool = False) -> str:
    mean, half = pair
    if pct:
        return f"{100 * mean:.2f}%" + ("" if half != half else f" ±{100 * half:.2f}")
    return f"{mean:.3f}" + ("" if half != half else f" ±{half:.3f}")


def best_peer(table: list[Row], swept: bool) -> Row | None:
    """Fewest GPU-hours among peers (defaults, or swept settings) meeting GOAL; else the highest attainment."""
    peers = [r for r in table if r["policy"] not in ("batchpilot", "oracle", "static")
             and r["setting"].startswith("swept") == swept]
    meeting = [r for r in peers if r["att"][0] >= GOAL]
    if meeting:
        return min(meeting, key=lambda r: r["gpu"][0])
    return max(peers, key=lambda r: r["att"][0]) if peers else None


def verdict(table: list[Row]) -> Row:
    """Batchpilot against the issue's targets on one (service, trace)."""
    bp = next(r for r in table if r["policy"] == "batchpilot")
    oracle = next((r for r in table if r["policy"] == "oracle"), None)
    out: Row = {"bp_att": bp["att"][0], "bp_gpu": bp["gpu"][0]}
    for key, peer in (("default", best_peer(table, False)), ("swept", best_peer(table, True)), ("oracle", oracle)):
        if peer is not None:
            out[key] = f"{peer['policy']} {peer['setting']}"
            out[f"{key}_att"] = peer["att"][0]
            out[f"{key}_ratio"] = bp["gpu"][0] / peer["gpu"][0] if peer["gpu"][0] else float("nan")
    return out


TITLE = "Simulator benchmark: Batchpilot and the autoscalers people run"


GPU_HOURS_BILLED = "GPU time billed from scheduling (cold starts and draining included)"
"""What GPU-h counts in the simulator: every pod holding a GPU, from its scheduling to its release."""


def write_report(out: Path, results: Sequence[RunResult], swept: Sequence[RunResult], meta: dict[str, Any],
                 summarize: Callable[..., Any], title: str = TITLE, intro: str | None = None,
                 gpu_hours: str = GPU_HOURS_BILLED) -> None:
    """report.md and the plots; `title`, `intro` (the line on runs and wall time) and `gpu_hours` (what GPU-h
    counts) let bench/compare_report.py write the sandbox comparison in the same format."""
    grouped = group(results)
    lines = [f"# {title}", "",
             intro or f"{len(results)} runs plus {len(swept)} sweep runs"
             + (f" ({meta['read_back']} distinct runs read back from runs.jsonl, made by the same code)"
                if meta.get("read_back") else "") + f", {meta['wall_s']:.0f} s wall, "
             f"{meta['simulated_hours_per_wall_s']:.2f} simulated hours per wall second per process. "
             f"Arguments: `{meta['args']}`.", "",
             "Attainment: share of requests answered within the SLO (timeouts and drops are misses); window: share "
             f"of 1-minute windows whose percentile latency meets the SLO; GPU-h: {gpu_hours}. "
             "± is the 95% interval over seeds. Ratios are Batchpilot's "
             "GPU-hours over the other's (below 1: Batchpilot uses fewer). Best peer: fewest GPU-hours among peers "
             f"at >= {GOAL:.0%} attainment, else the peer with the highest attainment.", "",
             "Late requests: " + ("every policy's Triton rejects a request that can no longer meet the SLO "
                                  "(Batchpilot's spec.batching.rejectLateRequests; the peers' static batching gets "
                                  "the same queue timeout); a rejection is a miss."
                                  if meta["args"].get("reject_late") == "True" else
                                  "served however late (Triton's default, every policy)."), ""]
    for name, svc in meta["services"].items():
        lines.append(f"- **{name}**: profile {svc['profile']} x{svc['time_scale']:g}, maxBatchSize "
                     f"{svc['max_batch_size']}, SLO p{svc['percentile']} {svc['slo_ms']:g} ms, peers' static batching "
                     f"{svc['batching']['max_queue_delay_us']} us queue delay, measured capacity "
                     f"{svc['capacity']:.0f} req/s per pod, traces scaled to {svc['load_pods']:g} pods' worth.")
    lines += ["", "## Summary", "",
              "| service | trace | Batchpilot att. | GPU-h | best default peer (att.) | ratio | best swept peer "
              "(att.) | ratio | oracle ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for (service, trace), runs in grouped.items():
        v = verdict(rows(runs, summarize))
        lines.append(
            f"| {service} | {trace} | {100 * v['bp_att']:.2f}% | {v['bp_gpu']:.3f} | "
            f"{v.get('default', '-')} ({100 * v.get('default_att', float('nan')):.2f}%) | "
            f"{v.get('default_ratio', float('nan')):.2f} | {v.get('swept', '-')} "
            f"({100 * v.get('swept_att', float('nan')):.2f}%) | {v.get('swept_ratio', float('nan')):.2f} | "
            f"{v.get('oracle_ratio', float('nan')):.2f} |")
    for (service, trace), runs in grouped.items():
        table = rows(runs, summarize)
        bp_gpu = next(r for r in table if r["policy"] == "batchpilot")["gpu"][0]
        lines += ["", f"## {service} / {trace}", "", f"![pareto](pareto-{service}-{trace}.png) "
                  f"![timeline](timeline-{service}-{trace}.png)", "",
                  "| policy | setting | seeds | attainment | window att. | GPU-h | vs Batchpilot | scale events | "
                  "cold starts | reloads | failed |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in table:
            ratio = bp_gpu / r["gpu"][0] if r["gpu"][0] else float("nan")
            lines.append(f"| {r['policy']} | {r['setting']} | {r['seeds']} | {_pm(r['att'], True)} | "
                         f"{_pm(r['win'], True)} | {_pm(r['gpu'])} | {ratio:.2f} | {r['events']:.1f} | "
                         f"{r['cold']:.1f} | {r['reloads']:.1f} | {r['failed']:.0f} |")
        sweep_rows = [s for s in swept if (s.spec.service, s.spec.trace) == (service, trace)]
        if sweep_rows:
            lines += ["", "Sweep (seed 0): " + "; ".join(
                f"{s.policy} {s.setting}: {100 * s.metrics.attainment:.1f}% / {s.metrics.gpu_hours:.3f} GPU-h"
                for s in sweep_rows)]
        _plots(out, service, trace, table, runs, sweep_rows, meta["services"][service]["slo_ms"])
    (out / "report.md").write_text("\n".join(lines) + "\n")


def timeline_runs(runs: dict[tuple[str, str], list[RunResult]]) -> list[tuple[tuple[str, str], RunResult]]:
    """The runs a timeline draws, each TIMELINE_FAMILIES policy once, on seed 0: Batchpilot at its default (what a
    user runs), every peer at its best swept setting where there is one, else at its default."""
    drawn: dict[str, tuple[tuple[str, str], RunResult]] = {}
    for (family, setting), rs in runs.items():
        seed0 = next((r for r in rs if r.timeline), None)
        swept = setting.startswith("swept")
        if seed0 is None or family not in TIMELINE_FAMILIES or (family == "batchpilot" and swept):
            continue
        if family not in drawn or swept:
            drawn[family] = ((family, setting), seed0)
    return list(drawn.values())


def _plots(out: Path, service: str, trace: str, table: list[Row], runs: dict[tuple[str, str], list[RunResult]],
           sweep: Sequence[RunResult], slo_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for i, s in enumerate(sweep):
        ax.scatter(s.metrics.gpu_hours, 100 * s.metrics.attainment, s=12, color="0.75",
                   label="a setting of the sweep (seed 0)" if i == 0 else None)
    for r in table:  # a legend, not labels by the points: the best ones crowd the top left
        marker = "*" if r["policy"] == "batchpilot" else ("s" if r["setting"].startswith("swept") else "o")
        ax.scatter(r["gpu"][0], 100 * r["att"][0], marker=marker, s=160 if marker == "*" else 40,
                   label=f"{r['policy']} {r['setting'].split(' (')[0]}")
    ax.axhline(100 * GOAL, color="red", lw=0.8, ls="--", label=f"{100 * GOAL:g}% of requests")
    ax.set_xlabel("GPU-hours (billed)")
    ax.set_ylabel("SLO attainment, % of requests")
    ax.set_title(f"{service} / {trace}: upper left is better (mean of the seeds)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out / f"pareto-{service}-{trace}.png", dpi=110)
    plt.close(fig)

    fig, (load_ax, rep_ax, lat_ax) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    shown = timeline_runs(runs)
    for (policy, setting), r in shown:
        minutes = range(len(r.timeline["load"]))
        # Batchpilot thick and on top: a peer that runs the same count (static peak, the oracle) would hide it.
        ours = {"lw": 2.4, "zorder": 3} if policy == "batchpilot" else {"lw": 1.0, "zorder": 2}
        rep_ax.step(minutes, r.timeline["replicas"], where="post", label=f"{policy} {setting.split(' (')[0]}", **ours)
        lat_ax.plot(minutes, [min(v, 10 * slo_ms) for v in r.timeline["latency_ms"]], **ours)
    if shown:
        load = shown[0][1].timeline["load"]
        load_ax.plot(range(len(load)), load, color="black")
    load_ax.set_ylim(bottom=0)
    load_ax.set_ylabel("offered req/s")
    rep_ax.set_ylabel("replicas")
    rep_ax.legend(fontsize=7, ncol=2)
    lat_ax.axhline(slo_ms, color="red", ls="--", lw=0.8)
    lat_ax.set_yscale("log")
    lat_ax.set_ylabel("latency at the SLO percentile\nper minute, ms (failed: 10x SLO)")
    lat_ax.set_xlabel("minute")
    load_ax.set_title(f"{service} / {trace}, seed 0 (Batchpilot at its default, peers at their best swept "
                      f"setting, else default)")
    fig.tight_layout()
    fig.savefig(out / f"timeline-{service}-{trace}.png", dpi=110)
    plt.close(fig)
