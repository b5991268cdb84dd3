"""`make demo`: the sandbox, a sample InferenceService, a load step, a live table, a summary and a plot.

Everything it starts is stopped on exit or Ctrl-C (the sandbox's processes also die with this one).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from batchpilot_sandbox.cluster.stack import Sandbox, SandboxConfig
from batchpilot_sandbox.demo.sample import SampleService
from batchpilot_sandbox.demo.service_watch import ServiceSample, ServiceWatch
from batchpilot_sandbox.loadgen.cli import PodTargets, WindowReport, parse_schedule, run_load
from batchpilot_sandbox.loadgen.runner import OnRequest
from batchpilot_sandbox.paths import default_workdir


@dataclass(frozen=True)
class Row:
    """One line of the live table: a load-generator window joined with the service's state at its end."""

    t_s: float
    offered_rate: float
    achieved_rate: float
    errors: int
    p95_ms: float | None
    """Client-side p95 of the window (what users saw)."""
    observed_p95_ms: float | None
    """The operator's p95 from Prometheus (status.observed.latencyMs)."""
    replicas: int
    ready_replicas: int
    reason: str
    avg_batch_size: float | None = None
    """Inferences per model execution (status.observed.avgBatchSize)."""
    queue_delay_us: int | None = None
    """The queue delay the pods run (status.batching, auto mode)."""
    instance_count: int | None = None
    """Model instances per pod (status.batching, auto mode)."""


HEADER = f"{'time':>6} {'offered/s':>9} {'ok/s':>7} {'err':>4} {'p95 ms':>8} {'op p95':>8} {'SLO':>5} " \
         f"{'replicas':>8} {'batch':>5} {'delay us':>8} {'inst':>4}  decision"


def row(report: WindowReport, sample: ServiceSample | None) -> Row:
    return Row(
        t_s=report.start_s + report.duration_s, offered_rate=report.offered_rate,
        achieved_rate=report.achieved_rate, errors=report.error_count, p95_ms=report.p95_ms,
        observed_p95_ms=sample.observed_latency_ms if sample else None,
        replicas=sample.replicas if sample else 0, ready_replicas=sample.ready_replicas if sample else 0,
        reason=sample.reason if sample else "",
        avg_batch_size=sample.avg_batch_size if sample else None,
        queue_delay_us=sample.queue_delay_us if sample else None,
        instance_count=sample.instance_count if sample else None,
    )


def line(r: Row, slo_ms: float) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    batch = "-" if r.avg_batch_size is None else f"{r.avg_batch_size:.1f}"
    return (f"{r.t_s:5.0f}s {r.offered_rate:9.1f} {r.achieved_rate:7.1f} {r.errors:4d} {ms(r.p95_ms):>8} "
            f"{ms(r.observed_p95_ms):>8} {slo_ms:5.0f} {r.ready_replicas:>3}/{r.replicas:<4} {batch:>5} "
            f"{ms(r.queue_delay_us):>8} {ms(r.instance_count):>4}  {r.reason}")


@dataclass(frozen=True)
class Summary:
    slo_ms: float
    step_at_s: float
    replicas_before: int
    replicas_after: int
    p95_before_ms: float | None
    """Client p95 over the last 20 s before the step."""
    p95_after_ms: float | None
    """Client p95 over the last 30 s of the run."""
    recovered_after_s: float | None
    """From the step until the client p95 of every later window is within the SLO (None: never)."""
    errors: int
    peak_offered_rate: float = 0.0
    """The highest offered rate of a window, requests/s."""
    peak_replicas: int = 0
    """The most replicas the loop asked for."""
    peak_batch_size: float | None = None
    """The largest average batch size the operator observed."""
    replicas_at_batch_1: int | None = None
    """Replicas a replica-only plan would need for the peak if every request ran alone (batch 1), each at
    100% of its batch-1 throughput: what the batching bought. None without a profile to say it."""


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def summarize(rows: list[Row], slo_ms: float, step_at_s: float, batch1_ms: float | None = None) -> Summary:
    """batch1_ms: the model's compute time at batch 1 (its profile), for replicas_at_batch_1."""
    before = [r for r in rows if step_at_s - 20 <= r.t_s <= step_at_s]
    after = [r for r in rows if r.t_s >= rows[-1].t_s - 30] if rows else []
    recovered: float | None = None
    for i, r in enumerate(rows):
        if r.t_s > step_at_s and all(x.p95_ms is not None and x.p95_ms <= slo_ms for x in rows[i:]):
            recovered = r.t_s - step_at_s
            break
    return Summary(
        slo_ms=slo_ms, step_at_s=step_at_s,
        replicas_before=before[-1].replicas if before else 0, replicas_after=rows[-1].replicas if rows else 0,
        p95_before_ms=_mean([r.p95_ms for r in before]), p95_after_ms=_mean([r.p95_ms for r in after]),
        recovered_after_s=recovered, errors=sum(r.errors for r in rows), **_batching(rows, batch1_ms),
    )


def _batching(rows: list[Row], batch1_ms: float | None) -> dict[str, Any]:
    peak = max((r.offered_rate for r in rows), default=0.0)
    batches = [r.avg_batch_size for r in rows if r.avg_batch_size is not None]
    at_batch_1 = math.ceil(peak * batch1_ms / 1000.0) if batch1_ms and peak else None
    return {"peak_offered_rate": peak, "peak_replicas": max((r.replicas for r in rows), default=0),
            "peak_batch_size": max(batches) if batches else None, "replicas_at_batch_1": at_batch_1}


def plot(rows: list[Row], slo_ms: float, path: Path, title: str = "Batchpilot: load step on the sandbox") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r.t_s for r in rows]
    fig, (top, mid, low, batching) = plt.subplots(4, 1, sharex=True, figsize=(9, 9))
    top.plot(t, [r.offered_rate for r in rows], label="offered")
    top.plot(t, [r.achieved_rate for r in rows], label="answered")
    top.set_ylabel("requests/s")
    top.legend(loc="upper left")
    mid.plot(t, [r.p95_ms for r in rows], label="p95 (load generator)")
    mid.plot(t, [r.observed_p95_ms for r in rows], label="p95 (operator, Prometheus)")
    mid.axhline(slo_ms, color="red", linestyle="--", label=f"SLO {slo_ms:g} ms")
    mid.set_ylabel("ms")
    mid.set_yscale("log")
    mid.legend(loc="upper left")
    low.step(t, [r.replicas for r in rows], where="post", label="desired")
    low.step(t, [r.ready_replicas for r in rows], where="post", label="ready")
    low.set_ylabel("replicas")
    low.legend(loc="upper left")
    batching.plot(t, [r.avg_batch_size for r in rows], label="average batch size")
    batching.step(t, [r.instance_count for r in rows], where="post", label="instances per pod")
    batching.set_ylabel("batch, instances")
    batching.set_xlabel("seconds since load start")
    batching.legend(loc="upper left")
    delay = batching.twinx()
    delay.step(t, [None if r.queue_delay_us is None else r.queue_delay_us / 1000 for r in rows], where="post",
               color="gray", linestyle=":", label="queue delay")
    delays = [r.queue_delay_us / 1000 for r in rows if r.queue_delay_us is not None]
    delay.set_ylim(0, max([1.0, *delays]) * 1.1)
    delay.set_ylabel("queue delay, ms")
    delay.legend(loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def wait_ready(watch: ServiceWatch, timeout_s: float = 180.0) -> None:
    """Until a replica is ready and the operator has read the service's metrics once.

    The first tick that reads metrics also makes the first decision, and in auto batching mode that usually
    retunes the queue delay: a model reload that holds the only pod's requests for ~0.1-1 s. Load that starts
    before it sees that start-up reload in whichever window it falls (a CI run once read a 693 ms p95 at 13 req/s
    there, failing the load-step test's baseline); load that starts after it sees the service as it runs.
    """
    deadline = time.monotonic() + timeout_s
    last: ServiceSample | None = None
    while time.monotonic() < deadline:
        try:
            last = watch.sample()
            if last.ready_replicas >= 1 and last.metrics_available == "True":
                return
        except Exception:  # noqa: BLE001 - the Deployment may not exist yet
            pass
        time.sleep(1)
    state = "no sample" if last is None else \
        f"{last.ready_replicas} ready, MetricsAvailable {last.metrics_available or 'not set'}"
    raise TimeoutError(f"{watch.namespace}/{watch.name} not ready with metrics after {timeout_s:.0f}s ({state})")


async def _load(sandbox: Sandbox, sample: SampleService, watch: ServiceWatch, schedule: str,
                rows: list[Row], echo: Callable[[str], None], on_request: OnRequest | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():  # signal handlers only work there
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    targets = PodTargets(sandbox.kubeconfig, sample.namespace, sample.name)

    def on_interval(report: WindowReport) -> None:
        rows.append(row(report, watch.latest()))
        echo(line(rows[-1], sample.latency_ms))
        if report.errors:  # which kind failed is what tells a fault from an overload
            echo(f"{'':7}failed: " + ", ".join(f"{k} {v}" for k, v in sorted(report.errors.items())))

    try:
        await run_load(targets, sample.model, parse_schedule(schedule), interval_s=5.0, on_interval=on_interval,
                       stop=stop, timeout_s=10.0, on_request=on_request)
    finally:
        targets.close()


def load_step(sandbox: Sandbox, sample: SampleService, schedule: str, echo: Callable[[str], None],
              on_start: Callable[[ServiceWatch], None] | None = None,
              on_request: OnRequest | None = None) -> list[Row]:
    """Apply the sample, wait for its first replica, offer the schedule's load; one Row per 5 s window.

    on_start(watch) is called as the load starts (tests use it to schedule faults against the run);
    on_request(offset, latency) sees every request (run_load's).
    """
    sandbox.kubectl("apply", "-f", "-", stdin=sample.yaml())
    echo(f"[demo] applied InferenceService {sample.namespace}/{sample.name} "
         f"(SLO p95 {sample.latency_ms:g} ms, replicas {sample.min_replicas}..{sample.max_replicas})")
    rows: list[Row] = []
    with ServiceWatch(sandbox.kubeconfig, sample.namespace, sample.name) as watch:
        wait_ready(watch)
        echo(f"[demo] first replica ready, metrics read by the operator; load schedule {schedule}")
        echo(HEADER)
        if on_start is not None:
            on_start(watch)
        asyncio.run(_load(sandbox, sample, watch, schedule, rows, echo, on_request))
    return rows


def run(args: argparse.Namespace) -> int:
    workdir: Path = (args.workdir or default_workdir()).resolve()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    sample = SampleService()
    step_at = parse_schedule(args.schedule)[0][0]  # fails on a bad schedule before anything starts

    def echo(text: str) -> None:
        print(text, flush=True)

    with Sandbox(SandboxConfig(workdir, gpus=args.gpus), progress=lambda m: echo(f"[demo] {m}")) as sandbox:
        rows = load_step(sandbox, sample, args.schedule, echo)
    if not rows:
        echo("[demo] interrupted before the first window")
        return 1
    summary = summarize(rows, sample.latency_ms, step_at, sample.profile()["points"][0]["latencyMs"])
    write(out, rows, summary)
    print_summary(summary, out)
    return 0


def write(out: Path, rows: list[Row], summary: Summary) -> None:
    with open(out / "timeline.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=1) + "\n")
    plot(rows, summary.slo_ms, out / "timeline.png")


def print_summary(s: Summary, out: Path) -> None:
    def ms(v: Any) -> str:
        return "-" if v is None else f"{v:.0f} ms"

    recovered = "never" if s.recovered_after_s is None else f"{s.recovered_after_s:.0f}s after the step"
    print(f"\nsummary: replicas {s.replicas_before} -> {s.replicas_after}; p95 before the step "
          f"{ms(s.p95_before_ms)}, at the end {ms(s.p95_after_ms)} (SLO {s.slo_ms:g} ms); back under the SLO "
          f"{recovered}; {s.errors} failed requests")
    if s.replicas_at_batch_1 is not None and s.peak_batch_size is not None:
        print(f"batching: average batch up to {s.peak_batch_size:.1f}; the peak of {s.peak_offered_rate:.0f} req/s ran "
              f"on {s.peak_replicas} replica(s), where a replica-only plan at batch 1 would need at least "
              f"{s.replicas_at_batch_1}")
    print(f"wrote {out / 'summary.json'}, {out / 'timeline.csv'}, {out / 'timeline.png'}")
