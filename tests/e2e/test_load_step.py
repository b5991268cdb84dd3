"""Closed loop in the sandbox: a load step overloads one replica; the operator adds replicas and the p95 that
clients see comes back under the SLO."""

from __future__ import annotations

from batchpilot.sandbox.demo import load_step, summarize
from batchpilot.sandbox.process import tail
from batchpilot.sandbox.sample import SampleService
from batchpilot.sandbox.stack import Sandbox

SAMPLE = SampleService(name="loadstep", namespace="e2e-loadstep", model="resnet50")
STEP_AT_S, STEP_RATE = 30.0, 120.0
SCHEDULE = f"{STEP_AT_S:g}s@15,150s@{STEP_RATE:g}"
RECOVERY_BOUND_S = 120.0
"""The bound we promise: from the step to a p95 that stays within the SLO. One replica saturates near 90/s;
scale-up needs a breach seen through Prometheus (2 s scrape, 15 s rate window, 5 s loop) and a new Triton
pod (seconds on CPU), one replica per 10 s cooldown, then the backlog of the overload to drain."""


def test_load_step_scales_up_and_p95_returns_under_slo(sandbox: Sandbox) -> None:
    lines: list[str] = []
    try:
        rows = load_step(sandbox, SAMPLE, SCHEDULE, lines.append)
    finally:
        sandbox.kubectl("delete", "namespace", SAMPLE.namespace, "--wait=true", "--timeout=120s", check=False)
    report = "\n".join(lines) + "\noperator log:\n" + tail(sandbox.logs / "operator.log", 30)
    summary = summarize(rows, SAMPLE.latency_ms, STEP_AT_S)
    print(report, "\n", summary)

    assert summary.replicas_before == 1, report
    assert summary.p95_before_ms is not None and summary.p95_before_ms <= SAMPLE.latency_ms, report
    assert max(r.p95_ms or 0 for r in rows if r.t_s > STEP_AT_S) > SAMPLE.latency_ms, \
        f"the step did not overload one replica, so it proves nothing\n{report}"
    assert summary.replicas_after >= 2, report
    assert summary.recovered_after_s is not None and summary.recovered_after_s <= RECOVERY_BOUND_S, report
    assert summary.p95_after_ms is not None and summary.p95_after_ms <= SAMPLE.latency_ms, report
    offered = sum(r.offered_rate * 5 for r in rows)
    assert summary.errors <= 0.02 * offered, report
