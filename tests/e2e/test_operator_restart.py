"""Closed loop in the sandbox: the operator is killed (SIGKILL) right after its first scale-up under a load
step and started again. The new process neither repeats that action nor loses the loop: it resumes the
cooldown from status.lastDecision and the service still converges under the SLO."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time

from batchpilot_sandbox.cluster.stack import Sandbox
from batchpilot_sandbox.demo.sample import SampleService
from batchpilot_sandbox.loadgen.stats import percentile
from batchpilot_sandbox.process import tail
from support import BackgroundLoad, release_namespace, wait_for

SAMPLE = SampleService(name="restart", namespace="e2e-restart", model="resnet50")
SCHEDULE = "20s@15,120s@120"


def test_a_killed_operator_resumes_without_repeating_its_action(sandbox: Sandbox) -> None:
    load = BackgroundLoad(sandbox, SAMPLE, SCHEDULE)
    try:
        watch = load.start()
        first = wait_for("the first scale-up", lambda: next((s for s in watch.samples if s.replicas > 1), None),
                         90)
        proc = sandbox.procs["operator"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed = time.time()
        sandbox.start_operator()  # on this thread: the sandbox ties a process to the thread that starts it
        load.join()
        status = json.loads(sandbox.kubectl("get", "inferenceservice", "-n", SAMPLE.namespace, SAMPLE.name,
                                            "-o", "json"))["status"]
    finally:
        release_namespace(sandbox, SAMPLE.namespace)
    report = "\n".join(load.lines) + "\noperator log:\n" + tail(sandbox.logs / "operator.log", 20)
    print(report)
    samples = watch.samples
    rows = load.rows

    # Not doubled: a breach adds a replica at most once per metrics window (evidence newer than the last change),
    # so until a window after the killed process's scale-up the count stays where it left it. The restarted
    # process ticks within that time (startup plus one interval): without the resumed cooldown it would scale
    # again at once. (Two seconds less: lastScaleTime has whole seconds, the samples come once a second.)
    resumed_until = first.at + sandbox.config.metrics_window_s - 2
    assert resumed_until > killed + 2 * sandbox.config.control_interval_s, "the window proves nothing"
    window = [s for s in samples if killed <= s.at < resumed_until]
    assert window and all(s.replicas == first.replicas for s in window), \
        f"{[s.replicas for s in window]} after the restart, {first.replicas} before\n{report}"
    assert status.get("lastScaleTime"), status
    # Not lost: the restarted operator goes on observing and deciding, and the service ends within the SLO.
    observed_at = dt.datetime.strptime(status["observed"]["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert observed_at.timestamp() > killed + 60, status
    # The SLO's p95 over the last 30 s, all its requests together (one 5 s window of the table holds ~600: a
    # single stall of ~0.3 s on these 2 shared cores puts that window's p95 over the SLO, not the service's).
    late = sorted(latency for sent, latency in load.requests if latency is not None and sent > rows[-1].t_s - 30)
    windows = [(r.t_s, round(r.p95_ms or 0)) for r in rows if r.t_s > rows[-1].t_s - 30]
    p95_ms = percentile(late, 95) * 1000 if late else float("inf")
    assert len(late) > 1000 and p95_ms <= SAMPLE.latency_ms, \
        f"p95 {p95_ms:.0f} ms over {len(late)} requests of the last 30 s, per window {windows}\n{report}"
    assert sum(r.errors for r in rows) == 0, report
