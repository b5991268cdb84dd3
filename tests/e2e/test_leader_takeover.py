"""Closed loop in the sandbox with two operator processes electing a leader through a Lease (as the chart runs
them): under a load step the leader is killed (SIGKILL) right after its first scale-up. The standby takes the Lease
within the lease duration (plus two retry periods) and ticks within one more control interval; the service keeps
being controlled with no failed request, and no action is doubled: the standby never acted while it stood by, and
the new leader does not repeat what the old one did (every scale Event is one step of a single chain)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import time
import urllib.request
from typing import Any

from batchpilot.election import JITTER_FACTOR, Timing
from batchpilot_sandbox.cluster.stack import Sandbox
from batchpilot_sandbox.demo.sample import SampleService
from batchpilot_sandbox.process import free_port, tail
from support import BackgroundLoad, http_status, release_namespace, wait_for

SAMPLE = SampleService(name="elected", namespace="e2e-leader", model="resnet50")
SCHEDULE = "20s@15,100s@120"
LEASE, LEASE_NS = "batchpilot-e2e", "default"
T = Timing()  # the defaults, as the chart sets them: 15 s lease, 10 s renew deadline, 2 s retry
NOT_SCALE = {"Reconciled", "Retuned"}
"""Normal Events that are not a replica change (every other Normal Event is a scale action, handlers.control)."""


def _holder(sandbox: Sandbox) -> str:
    out = sandbox.kubectl("get", "lease", LEASE, "-n", LEASE_NS, "-o", "jsonpath={.spec.holderIdentity}",
                          check=False)
    return out.strip()


def _leader_gauge(port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    match = re.search(r"^batchpilot_leader (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def _status(sandbox: Sandbox) -> dict[str, Any]:
    out = sandbox.kubectl("get", "inferenceservice", "-n", SAMPLE.namespace, SAMPLE.name, "-o", "json")
    status: dict[str, Any] = json.loads(out).get("status") or {}
    return status


def _observed_at(sandbox: Sandbox) -> float:
    at = (_status(sandbox).get("observed") or {}).get("at")
    return dt.datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp() if at else 0.0


def _scale_steps(sandbox: Sandbox) -> list[tuple[float, str, int, int]]:
    """(time, reason, from, to) of each scale Event of the service, oldest first."""
    items = json.loads(sandbox.kubectl("get", "events", "-n", SAMPLE.namespace, "--field-selector",
                                       f"involvedObject.kind=InferenceService,involvedObject.name={SAMPLE.name}",
                                       "-o", "json"))["items"]
    steps = []
    for e in items:
        if e["type"] != "Normal" or e["reason"] in NOT_SCALE:
            continue
        pairs = re.findall(r"(\d+) -> (\d+)", e["message"])
        assert pairs, f"a scale Event without its step: {e['reason']}: {e['message']}"
        stamp = e.get("eventTime") or e.get("firstTimestamp") or e["metadata"]["creationTimestamp"]
        at = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        steps.append((at, e["reason"], int(pairs[-1][0]), int(pairs[-1][1])))
    return sorted(steps)


def test_the_standby_takes_over_when_the_leader_is_killed(sandbox: Sandbox) -> None:
    ports = {"a": free_port(), "b": free_port()}

    def env(name: str) -> dict[str, str]:
        return {"BATCHPILOT_LEADER_ELECTION": "true", "BATCHPILOT_LEASE_NAME": LEASE,
                "BATCHPILOT_LEASE_NAMESPACE": LEASE_NS, "POD_NAME": f"operator-{name}",
                "BATCHPILOT_METRICS_PORT": str(ports[name])}

    def logs() -> str:
        return "\n".join(f"{n} log:\n" + tail(sandbox.logs / f"{n}.log", 15) for n in ("operator-a", "operator-b"))

    sandbox.stop_operator()  # the shared, election-less operator: two electing ones replace it for this test
    load: BackgroundLoad | None = None
    try:
        sandbox.start_operator("operator-a", env("a"))
        wait_for("operator-a to take the Lease", lambda: _holder(sandbox) == "operator-a", 60, logs)
        sandbox.start_operator("operator-b", env("b"))
        wait_for("operator-b ready as a standby", lambda: http_status(
            f"http://127.0.0.1:{ports['b']}/readyz") == 200 and _leader_gauge(ports["b"]) == 0, 60, logs)
        assert http_status(f"http://127.0.0.1:{ports['a']}/readyz") == 200 and _leader_gauge(ports["a"]) == 1

        load = BackgroundLoad(sandbox, SAMPLE, SCHEDULE)
        watch = load.start()
        first = wait_for("the first scale-up", lambda: next((s for s in watch.samples if s.replicas > 1), None),
                         90, logs)
        # Killed once the step is recorded (status.lastScaleTime, its Event): the scale and its record are two
        # writes (the Deployment's scale, then kopf's status patch and Event), and this test kills after both.
        wait_for("the scale-up recorded", lambda: _status(sandbox).get("lastScaleTime") and _scale_steps(sandbox),
                 10, logs)
        assert _holder(sandbox) == "operator-a"
        proc = sandbox.procs["operator-a"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed = time.time()
        took_over = wait_for("operator-b to take the Lease", lambda: time.time() if _holder(
            sandbox) == "operator-b" else None, T.lease_duration_s + 10, logs)
        acted = wait_for("a tick of operator-b", lambda: time.time() if _observed_at(
            sandbox) > killed + 1 else None, 60, logs)
        assert _leader_gauge(ports["b"]) == 1
        load.join()
        status = _status(sandbox)
        steps = _scale_steps(sandbox)
    finally:
        if load is not None:
            load.join()
        release_namespace(sandbox, SAMPLE.namespace)
        sandbox.stop_operator("operator-a")
        sandbox.stop_operator("operator-b")
        sandbox.kubectl("delete", "lease", LEASE, "-n", LEASE_NS, "--ignore-not-found", check=False)
        sandbox.start_operator()  # back as the other tests expect it (on this thread: see BackgroundLoad)
    assert load is not None
    takeover_s, first_tick_s = took_over - killed, acted - killed
    report = "\n".join(load.lines) + f"\nscale steps: {steps}\ntakeover after {takeover_s:.1f}s, first tick of " \
        f"the new leader after {first_tick_s:.1f}s\n" + logs()
    print(report)
    samples, rows = watch.samples, load.rows

    # Within the lease duration plus two jittered retry periods (the standby sees the last renewal up to one retry
    # after it, and tries up to one retry after expiry) and this test's 0.5 s polling; the first tick within one
    # control interval more.
    limit = T.lease_duration_s + 2 * JITTER_FACTOR * T.retry_period_s + 1.0
    assert takeover_s <= limit, report
    assert first_tick_s <= limit + sandbox.config.control_interval_s + 2.0, report
    # Not doubled: one chain of steps (two replicas acting on the same state would both post "1 -> 2"), the first
    # the killed leader's, and each change of the Deployment seen once among them (Events have whole seconds).
    assert steps and all(a[3] == b[2] for a, b in zip(steps, steps[1:], strict=False)), report
    assert (steps[0][2], steps[0][3]) == (1, first.replicas), report
    changes = [(b.at, a.replicas, b.replicas) for a, b in zip(samples, samples[1:], strict=False)
               if a.replicas != b.replicas]
    for at, old, new in changes:
        assert len([s for s in steps if (s[2], s[3]) == (old, new) and abs(s[0] - at) <= 5]) == 1, (at, report)
    for at, _, old, new in steps:
        if samples[0].at + 5 < at < samples[-1].at - 5:
            assert any((o, n) == (old, new) and abs(c - at) <= 5 for c, o, n in changes), (at, report)
    # Not lost: the new leader goes on observing and deciding; the service ends within the SLO, no request failed.
    observed_at = dt.datetime.strptime(status["observed"]["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert observed_at.timestamp() > killed + 60, status
    late = [r for r in rows if r.t_s > rows[-1].t_s - 30]
    # One 5 s window of ~600 requests may spike on a shared 2-core runner (CI once: 216 ms in one window, 87-93 ms in
    # the five others, the same replicas and batching throughout): the service is within the SLO if at most one is.
    over = [r for r in late if r.p95_ms is None or r.p95_ms > SAMPLE.latency_ms]
    assert late and len(over) <= 1, report
    assert sum(r.errors for r in rows) == 0, report
