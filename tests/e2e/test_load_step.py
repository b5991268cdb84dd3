"""Closed loop in the sandbox: a load step overloads one replica; the operator adds replicas and the p95 that
clients see comes back under the SLO; when the load drops, it removes them after the window, SLO still met. Over
the same run, every query of the chart's Grafana dashboard has data in the sandbox's Prometheus."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from batchpilot_sandbox.cluster.stack import Sandbox
from batchpilot_sandbox.demo.run import load_step, summarize
from batchpilot_sandbox.demo.sample import SampleService
from batchpilot_sandbox.process import tail
from support import release_namespace

SAMPLE = SampleService(name="loadstep", namespace="e2e-loadstep", model="resnet50")
STEP_AT_S, DROP_AT_S = 30.0, 150.0
SCHEDULE = f"{STEP_AT_S:g}s@15,{DROP_AT_S - STEP_AT_S:g}s@120,100s@15"
RECOVERY_BOUND_S = 120.0
"""The bound we promise: from the step to a p95 that stays within the SLO. One replica saturates near 90/s;
scale-up needs the overload seen through Prometheus (2 s scrape, 15 s rate window, 5 s loop) and a new Triton
pod (seconds on CPU), then the backlog of the overload to drain."""
SCALE_DOWN_BOUND_S = 90.0
"""From the drop to fewer replicas: the 15 s rate window, the 30 s stabilization window, loop periods."""


DASHBOARD = Path(__file__).resolve().parents[2] / "charts/batchpilot/dashboards/batchpilot.json"
NO_DATA_HERE = {"GPU utilization": "nv_gpu_utilization"}
"""Panels whose data cannot exist in the sandbox, with the Triton metric whose absence says why (CPU only)."""


def dashboard_queries(namespace: str, name: str) -> dict[str, list[str]]:
    """Every panel's (and the annotations') PromQL, by title, with Grafana's variables filled in as it would."""
    dashboard = json.loads(DASHBOARD.read_text())
    fill = {"$namespace": namespace, "$inferenceservice": name, "$__rate_interval": "30s"}

    def filled(expr: str) -> str:
        for var, value in fill.items():
            expr = expr.replace(var, value)
        return expr

    queries = {p["title"]: [filled(t["expr"]) for t in p["targets"]] for p in dashboard["panels"]}
    queries.update({f"annotation {a['name']}": [filled(a["expr"])] for a in dashboard["annotations"]["list"]})
    return queries


def prometheus_range(sandbox: Sandbox, expr: str, start: float) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": time.time(), "step": "5"})
    with urllib.request.urlopen(f"{sandbox.prometheus_url}/api/v1/query_range?{query}", timeout=30) as resp:
        result: list[dict[str, Any]] = json.loads(resp.read())["data"]["result"]
        return result


def test_load_step_scales_up_then_down_and_p95_stays_under_slo(sandbox: Sandbox) -> None:
    lines: list[str] = []
    started = time.time()
    try:
        rows = load_step(sandbox, SAMPLE, SCHEDULE, lines.append)
        # The chart's Grafana dashboard over this run: every query has data from the real Prometheus.
        empty = {(title, expr) for title, exprs in dashboard_queries(SAMPLE.namespace, SAMPLE.name).items()
                 for expr in exprs if not prometheus_range(sandbox, expr, started)}
    finally:
        release_namespace(sandbox, SAMPLE.namespace)
    for title, metric in NO_DATA_HERE.items():
        assert not prometheus_range(sandbox, metric, started), f"{metric} exists now: drop {title!r} from NO_DATA_HERE"
    assert {title for title, _ in empty} <= set(NO_DATA_HERE), f"dashboard queries without data: {sorted(empty)}"
    report = "\n".join(lines) + "\noperator log:\n" + tail(sandbox.logs / "operator.log", 30)
    step = summarize([r for r in rows if r.t_s <= DROP_AT_S], SAMPLE.latency_ms, STEP_AT_S)
    print(report, "\n", step)

    # (a) the step: scale-up, and p95 back under the SLO within the bound
    assert step.replicas_before == 1, report
    assert step.p95_before_ms is not None and step.p95_before_ms <= SAMPLE.latency_ms, report
    assert max(r.p95_ms or 0 for r in rows if r.t_s > STEP_AT_S) > SAMPLE.latency_ms, \
        f"the step did not overload one replica, so it proves nothing\n{report}"
    assert step.replicas_after >= 2, report
    assert step.recovered_after_s is not None and step.recovered_after_s <= RECOVERY_BOUND_S, report
    assert step.p95_after_ms is not None and step.p95_after_ms <= SAMPLE.latency_ms, report

    # (c) the drop: fewer replicas after the window, and the SLO still met
    peak = max(r.replicas for r in rows if r.t_s <= DROP_AT_S + 5)
    down = next((r for r in rows if r.t_s > DROP_AT_S and r.replicas < peak), None)
    assert down is not None and down.t_s - DROP_AT_S <= SCALE_DOWN_BOUND_S, report
    after_drop = [r for r in rows if r.t_s > DROP_AT_S + 5]
    assert all(r.p95_ms is not None and r.p95_ms <= SAMPLE.latency_ms for r in after_drop), report

    offered = sum(r.offered_rate * 5 for r in rows)
    assert sum(r.errors for r in rows) <= 0.02 * offered, report
