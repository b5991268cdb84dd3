"""Fault matrix under load, the longer faults (issue 14, item 4): part of `make test` (its two workers run this
file beside the others, ~10 min), and of `make bench-faults` (bench/faults.py), which runs it alone and writes
the figures to a report. The shorter faults are tests/e2e/test_faults.py.

Faults: the operator SIGKILLed in the middle of a retune pass; Prometheus down for 5 minutes under steady load
(`make test` has a 60 s outage under load that ends with the data lost, tests/e2e/test_metrics_outage.py).
Each prints its figures (the `FAULT` line) for the note's table.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from batchpilot.build.names import ChildNames
from batchpilot_sandbox.cluster.stack import Sandbox
from batchpilot_sandbox.demo.sample import SampleService
from support import (
    FAULT_RECOVERY_BOUND_S,
    METRICS_CONDITION_LAG_S,
    BackgroundLoad,
    actions_between,
    fault_line,
    fault_report,
    first_metrics_state,
    isvc_events,
    isvc_status,
    live_queue_delay,
    metrics_flipped_at,
    observed_at,
    prometheus_outage,
    release_namespace,
    revert_pods,
    scale_steps,
    wait_for,
    wait_ready_pods,
)


def test_an_operator_killed_mid_retune_leaves_no_pod_half_applied(sandbox: Sandbox) -> None:
    """Two pods in auto batching mode under steady load: once the operator has tuned them, both are reloaded with
    the old poor delay behind its back, so its next tick retunes them again, one pod at a time. The operator is
    SIGKILLed between the two reloads (one pod on the new delay, one on the old) and started again: the new
    process finishes the pass, so every pod reads back the same delay, the one status.batching records, and no
    request fails meanwhile."""
    poor = 300_000
    sample = SampleService(name="halfway", namespace="e2e-fault-kill", model="resnet50", batching_mode="auto",
                           max_queue_delay_us=poor, min_replicas=2, max_replicas=2)
    selector = ChildNames(sample.name).selector_string
    load = BackgroundLoad(sandbox, sample, "45s@30")
    half: dict[str, int | None] = {}
    try:
        load.start()
        ips = [p["status"]["podIP"] for p in wait_ready_pods(sandbox, sample.namespace, selector, 2, 120)]

        def tuned() -> tuple[int] | None:  # a tuple: the delay the operator picks may well be 0
            applied = (isvc_status(sandbox, sample.namespace, sample.name).get("batching") or {}).get(
                "maxQueueDelayMicroseconds")
            delays = {live_queue_delay(ip, sample.model) for ip in ips}
            return (applied,) if applied is not None and applied != poor and delays == {applied} else None

        (target,) = wait_for("both pods tuned by the operator", tuned, 90, lambda: fault_report(sandbox, load))
        for _ in range(3):  # the kill must land inside a ~1-2 s reload: a pass seen finished is tried again
            revert_pods(ips, sample.model, poor)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not half:
                with contextlib.suppress(OSError):
                    delays = {ip: live_queue_delay(ip, sample.model) for ip in ips}
                    if set(delays.values()) == {target, poor}:
                        half = delays
                        break
                    if set(delays.values()) == {target}:
                        break  # the pass finished between two looks
                time.sleep(0.05)
            if half:
                break
        assert half, f"never saw the operator between two pods of a pass\n{fault_report(sandbox, load)}"
        proc = sandbox.procs["operator"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed = time.time()
        at_kill = {ip: live_queue_delay(ip, sample.model) for ip in ips}
        sandbox.start_operator()  # on this thread: the sandbox ties a process to the thread that starts it

        def repaired() -> float | None:
            status = isvc_status(sandbox, sample.namespace, sample.name)
            applied = (status.get("batching") or {}).get("maxQueueDelayMicroseconds")
            delays = {live_queue_delay(ip, sample.model) for ip in ips}
            return time.time() if observed_at(status) > killed and delays == {applied} else None

        repaired_at = wait_for("every pod on the delay status records", repaired, 90,
                               lambda: fault_report(sandbox, load))
        load.join()
        final = {ip: live_queue_delay(ip, sample.model) for ip in ips}
        status = isvc_status(sandbox, sample.namespace, sample.name)
    finally:
        load.join()
        release_namespace(sandbox, sample.namespace)
    repair_s = repaired_at - killed
    report = fault_report(sandbox, load, f"seen half-applied {half}; at the kill {at_kill}; repaired {repair_s:.1f}s "
                          f"after the kill; final {final}; status.batching {status.get('batching')}")
    print(report, fault_line("operator-killed-mid-retune", load, half_applied=half, repair_s=f"{repair_s:.1f}",
                             final=final), sep="\n")

    assert len(set(final.values())) == 1, report
    assert set(final.values()) == {status["batching"]["maxQueueDelayMicroseconds"]}, report
    assert repair_s <= FAULT_RECOVERY_BOUND_S + 15, report  # a process start (~5-10 s here) plus the bound
    assert sum(r.errors for r in load.rows) == 0, report


def test_five_minute_prometheus_outage_under_steady_load(sandbox: Sandbox) -> None:
    """Steady load holds the service above its minimum when Prometheus goes away for 5 minutes, five times the
    30 s stabilization window after which a loop that read no data as no load would remove replicas. While
    blind (MetricsAvailable False, within METRICS_CONDITION_LAG_S) the outage policy (hold) keeps the count and
    the batching: the Deployment never shrinks, status.batching never moves, no scale or Retuned Event. Triton
    serves on without Prometheus: no request fails. Prometheus comes back with its data; the load drops as it
    does, so the loop has something to do: MetricsAvailable is True again within FAULT_RECOVERY_BOUND_S, and the
    scale-down follows within that plus the stabilization window and one rate window."""
    warm_s, outage_s, after_s = 60.0, 300.0, 120.0
    sample = SampleService(name="blind5", namespace="e2e-fault-outage5", model="resnet50")
    act_bound_s = FAULT_RECOVERY_BOUND_S + sample.scale_down_stabilization_seconds + sandbox.config.metrics_window_s
    load = BackgroundLoad(sandbox, sample, f"{warm_s + outage_s:g}s@120,{after_s:g}s@15")
    try:
        watch = load.start()
        time.sleep(warm_s)
        ns, name = sample.namespace, sample.name
        with prometheus_outage(sandbox) as outage:
            # The first blind tick: from it on, an action Event would be one taken blind.
            first_blind_tick = wait_for("MetricsAvailable False",
                                        lambda: metrics_flipped_at(sandbox, ns, name, "False", outage.down_at),
                                        METRICS_CONDITION_LAG_S + 10, lambda: fault_report(sandbox, load))
            time.sleep(max(0.0, outage.down_at + outage_s - time.time()))
        assert outage.back_at is not None
        back_at = outage.back_at
        first_fresh_tick = wait_for("MetricsAvailable True after the restart",
                                    lambda: metrics_flipped_at(sandbox, ns, name, "True", back_at),
                                    act_bound_s, lambda: fault_report(sandbox, load))
        went_blind = first_metrics_state(watch.samples, outage.down_at, "False")
        assert went_blind is not None, fault_report(sandbox, load, "the watch never saw MetricsAvailable False")
        available_at = wait_for("the watch seeing MetricsAvailable True",
                                lambda: first_metrics_state(watch.samples, back_at, "True"), 10).at
        held = went_blind.replicas

        def scaled_down() -> float | None:
            return next((s.at for s in watch.samples if s.at >= available_at and s.replicas < held), None)

        acted_at = wait_for(f"a scale-down from {held} once metrics are back", scaled_down, act_bound_s,
                            lambda: fault_report(sandbox, load))
        load.join()
        events = isvc_events(sandbox, sample.namespace, sample.name)
    finally:
        load.join()
        release_namespace(sandbox, sample.namespace)
    blind = [s for s in watch.samples if went_blind.at <= s.at < available_at]
    replicas = sorted({s.replicas for s in blind})
    batching = sorted({(s.queue_delay_us, s.instance_count) for s in blind}, key=str)
    # Up to the first tick that read metrics again: an action it takes is the loop's ordinary work, not blind.
    while_blind = actions_between(events, first_blind_tick, first_fresh_tick)
    blind_s, available_s, acted_s = went_blind.at - outage.down_at, available_at - back_at, acted_at - back_at
    report = fault_report(sandbox, load, f"{held} replica(s) when it went blind, {blind_s:.1f}s after the stop; "
                          f"down {back_at - outage.down_at:.0f}s; replicas while blind {replicas}, batching (delay us, "
                          f"instances) {batching}; actions while blind {while_blind}; MetricsAvailable True "
                          f"{available_s:.1f}s after the restart; scale-down {acted_s:.1f}s after it; "
                          f"steps {scale_steps(events)}")
    print(report, fault_line("prometheus-outage-5min", load, down_s=f"{back_at - outage.down_at:.0f}",
                             held=held, blind_after_s=f"{blind_s:.1f}", metrics_back_s=f"{available_s:.1f}",
                             scale_down_after_s=f"{acted_s:.1f}", actions_while_blind=len(while_blind)), sep="\n")

    assert held > sample.min_replicas, f"the load did not scale the service up, so the outage proves nothing\n{report}"
    assert blind_s <= METRICS_CONDITION_LAG_S, report
    assert all(s.metrics_available == "False" for s in blind), report
    assert blind and min(replicas) >= held, report  # the Deployment never shrank while blind
    assert len(batching) == 1 and while_blind == [], report  # no retune, no scale action either
    assert available_s <= FAULT_RECOVERY_BOUND_S, report
    assert acted_s <= act_bound_s, report
    assert sum(r.errors for r in load.rows) == 0, report
