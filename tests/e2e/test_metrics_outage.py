"""Closed loop in the sandbox: Prometheus stops while the load drops. No scale-down while blind, the
MetricsAvailable condition says why, and the loop resumes (and scales down) once Prometheus is back."""

from __future__ import annotations

import time

from batchpilot_sandbox.cluster.stack import Sandbox
from batchpilot_sandbox.demo.sample import SampleService
from batchpilot_sandbox.process import tail
from support import (
    METRICS_CONDITION_LAG_S,
    BackgroundLoad,
    first_metrics_state,
    prometheus_outage,
    release_namespace,
)

SAMPLE = SampleService(name="outage", namespace="e2e-outage", model="resnet50")
DROP_AT_S, OUTAGE_S = 60.0, 60.0
SCHEDULE = f"{DROP_AT_S:g}s@120,140s@15"
"""High load scales the service up; at the drop Prometheus goes away for OUTAGE_S, longer than the 30 s
stabilization window after which the operator would otherwise remove replicas."""


def test_no_scale_down_while_blind_and_recovery_when_metrics_return(sandbox: Sandbox) -> None:
    load = BackgroundLoad(sandbox, SAMPLE, SCHEDULE)
    try:
        watch = load.start()
        time.sleep(DROP_AT_S)
        with prometheus_outage(sandbox) as outage:
            time.sleep(OUTAGE_S)
        load.join()
    finally:
        release_namespace(sandbox, SAMPLE.namespace)
    stopped, restarted = outage.down_at, outage.back_at
    assert restarted is not None
    report = "\n".join(load.lines) + "\noperator log:\n" + tail(sandbox.logs / "operator.log", 20)
    print(report)
    watched = watch.samples

    went_blind = first_metrics_state(watched, stopped, "False")
    assert went_blind is not None and went_blind.at <= stopped + METRICS_CONDITION_LAG_S, report
    blind = [s for s in watched if went_blind.at <= s.at < restarted]
    after = [s for s in watched if s.at >= restarted]
    # From the moment it knows it is blind. A scale-down in the seconds before, decided on the last metrics read
    # before the stop, is the loop's ordinary work (a CI run once saw 3 -> 2 due at the very second of the stop).
    scaled_to = went_blind.replicas
    assert scaled_to >= 2, f"the load did not scale the service up, so the outage proves nothing\n{report}"
    assert blind and all(s.replicas >= scaled_to for s in blind), report
    assert all(s.metrics_available == "False" for s in blind if s.at >= stopped + METRICS_CONDITION_LAG_S), \
        [s.metrics_available for s in blind]
    assert first_metrics_state(after, restarted, "True") is not None, report
    assert after[-1].replicas < scaled_to, f"no scale-down after metrics returned\n{report}"
    assert load.rows and sum(r.errors for r in load.rows) == 0, report
