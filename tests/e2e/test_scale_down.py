"""Closed loop in the sandbox: replicas scaled 1 -> 4 -> 1 again and again under a steady load fail no request.

A scale-down deletes a serving pod while clients still hold it as a target. As on a real node, the sandbox
kubelet runs the pod's preStop hook (a sleep, build/children.py) before it sends Triton SIGTERM, so the pod has
left the targets of every client (the load generator drops pods with a deletionTimestamp, as the endpoints
controller does) before its server stops. Without the hook the server stopped while requests were still sent
to it: 2 failed requests of ~17,000 in one CI run (issue 14).
"""

from __future__ import annotations

import time

from batchpilot_sandbox.cluster.stack import Sandbox
from batchpilot_sandbox.demo.sample import SampleService
from batchpilot_sandbox.demo.service_watch import ServiceWatch
from support import BackgroundLoad, release_namespace, wait_for

# fixed batching: nothing but the replica count changes; 80 req/s fits on one replica (~95/s)
SAMPLE = SampleService(name="scaledown", namespace="e2e-scale-down", model="resnet50", batching_mode="fixed")
SCHEDULE = "130s@80"
CYCLES = 3
PEAK = 4  # every GPU of the sandbox: each cycle removes 3 serving pods


def _scale(sandbox: Sandbox, replicas: int) -> None:
    sandbox.kubectl("scale", "inferenceservice", "-n", SAMPLE.namespace, SAMPLE.name, f"--replicas={replicas}")


def _pods(sandbox: Sandbox) -> int:
    names = sandbox.kubectl("get", "pods", "-n", SAMPLE.namespace, "-o", "name", check=False)
    return len([n for n in names.split() if n.startswith("pod/")])


def _cycle(sandbox: Sandbox, watch: ServiceWatch) -> float:
    """PEAK replicas, then back to 1; returns when the removed pods are gone (their processes stopped)."""
    _scale(sandbox, PEAK)
    wait_for(f"{PEAK} ready replicas", lambda: watch.samples and watch.samples[-1].ready_replicas == PEAK, 90)
    time.sleep(3)  # the load spreads over all of them
    scaled_down = time.time()
    _scale(sandbox, 1)
    wait_for("the scale-down to 1 pod", lambda: watch.samples[-1].replicas == 1 and _pods(sandbox) == 1, 90,
             lambda: sandbox.kubectl("get", "pods", "-n", SAMPLE.namespace, check=False))
    return scaled_down


def test_repeated_scale_down_under_load_fails_no_request(sandbox: Sandbox) -> None:
    load = BackgroundLoad(sandbox, SAMPLE, SCHEDULE)
    downs: list[float] = []
    try:
        watch = load.start()
        for _ in range(CYCLES):
            downs.append(_cycle(sandbox, watch))
        during_load = load.running  # every scale-down was done while requests were still being sent
        load.join()
    finally:
        release_namespace(sandbox, SAMPLE.namespace)
    report = "\n".join(load.lines)
    print(report)
    rows = load.rows
    assert during_load, f"the load ended before the last scale-down was done\n{report}"
    assert len(downs) == CYCLES and rows, report
    assert sum(r.errors for r in rows) == 0, report
