"""bench/sim_validate.py's outputs: the Markdown table of windows and errors, and the side-by-side plot."""

from __future__ import annotations

from pathlib import Path

from batchpilot.sim.types import ColdStart
from bench.sim_validate_stats import Errors, Series, Window


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _num(v: float | None, fmt: str = ".1f", unit: str = "") -> str:
    return "-" if v is None else f"{v:{fmt}}{unit}"


def errors_table(e: Errors) -> str:
    rows = [
        ("windows compared", f"{e.windows}"),
        ("mean abs replica difference (desired, per window)", f"{e.replica_mae:.2f}"),
        ("mean abs replica difference (ready, per window)", f"{e.ready_mae:.2f}"),
        ("replica-seconds sandbox / sim", f"{e.sandbox_replica_s:.0f} / {e.sim_replica_s:.0f}"),
        ("replica-seconds ratio sim / sandbox", _num(e.replica_s_ratio, ".3f")),
        ("max replicas sandbox / sim", f"{e.sandbox_max_replicas} / {e.sim_max_replicas}"),
        ("windows with a p95 on both sides", f"{e.p95_windows}"),
        ("p95 median abs error", f"{_num(e.p95_median_abs_ms, unit=' ms')} ({_num(e.p95_median_abs_pct, unit=' %')})"),
        ("p95 median signed error (sim - sandbox)", _num(e.p95_median_signed_ms, unit=" ms")),
        ("first scale-up sandbox / sim", f"{_num(e.sandbox_first_scale_up_s, '.0f', ' s')} / "
                                         f"{_num(e.sim_first_scale_up_s, '.0f', ' s')}"),
    ]
    return "| error | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


def table(schedule: str, cold: ColdStart, sandbox: list[Window] | None, sim: list[Window],
          errors: Errors | None) -> str:
    """validate.md: the settings, the errors, then one row per window (replicas as ready/desired)."""
    head = (f"# Simulator vs sandbox: Batchpilot, schedule `{schedule}`\n\n"
            f"Simulated cold start: {cold.name} {cold.low_s:.1f}..{cold.high_s:.1f} s. "
            "Replicas are ready/desired at the window end; p95 is the client p95 of requests completing in the "
            "window, ms.\n\n")
    if errors is not None:
        head += errors_table(errors) + "\n"
    lines = ["| t (s) | offered/s sandbox | offered/s sim | p95 sandbox | p95 sim | p95 err | replicas sandbox | "
             "replicas sim | err sandbox | err sim |", "|---:" * 10 + "|"]
    for i, b in enumerate(sim):
        a = sandbox[i] if sandbox and i < len(sandbox) else None
        err = "-" if a is None or a.p95_ms is None or b.p95_ms is None else f"{b.p95_ms - a.p95_ms:+.0f}"
        lines.append(
            f"| {b.end_s:.0f} | {_num(a.offered_rate if a else None)} | {b.offered_rate:.1f} | "
            f"{_ms(a.p95_ms if a else None)} | "
            f"{_ms(b.p95_ms)} | {err} | {f'{a.ready}/{a.desired}' if a else '-'} | {b.ready}/{b.desired} | "
            f"{a.errors if a else '-'} | {b.errors} |")
    return head + "\n".join(lines) + "\n"


Side = tuple[list[Window], Series]


def plot(sandbox: Side | None, sim: Side, slo_ms: float, path: Path) -> None:
    """Offered rate, p95 (log) and replicas over time, the sandbox solid and the simulator dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, mid, low) = plt.subplots(3, 1, sharex=True, figsize=(10, 8))
    for label, side, style in (("sandbox", sandbox, "-"), ("sim", sim, "--")):
        if side is None:
            continue
        windows, series = side
        t = [w.end_s for w in windows]
        top.plot(t, [w.offered_rate for w in windows], style, color="C0", label=label)
        mid.plot(t, [w.p95_ms if w.p95_ms is not None else float("nan") for w in windows], style, color="C1",
                 marker=".", label=f"p95 {label}")
        low.step(series.t, series.desired, style, color="C2", where="post", label=f"desired {label}")
        low.step(series.t, series.ready, style, color="C3", where="post", alpha=0.7, label=f"ready {label}")
    top.set_ylabel("offered requests/s")
    top.legend(loc="upper right")
    mid.axhline(slo_ms, color="red", linestyle=":", label=f"SLO {slo_ms:g} ms")
    mid.set_ylabel("client p95, ms")
    mid.set_yscale("log")
    mid.legend(loc="upper right")
    low.set_ylabel("replicas")
    low.set_xlabel("seconds since load start")
    low.legend(loc="upper right", ncol=2)
    fig.suptitle("Batchpilot: sandbox (solid) vs simulator (dashed), same arrivals")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
