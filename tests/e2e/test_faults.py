"""Fault matrix under load (issue 14, item 4): each test injects one real fault into a real component of the
sandbox while a load runs, then reads back what the product promises: failed requests (0 where it promises
none), actions lost or doubled (the chain of scale Events, status.lastDecision, pods' live configs) and the time
to recover. The machine is shared and noisy, so no test bounds a latency percentile tightly.

Faults: the API server restarted; one pod's Triton refusing a reload mid-retune; a pod whose statistics endpoint
accepts and never answers; another writer patching the InferenceService all the time (the status writes race
it); a pod deleted in the middle of a retune pass. Each prints its figures (the `FAULT` line) for the note's table. Prometheus restarted
with its data lost is tests/e2e/test_metrics_outage.py; the longer faults (the operator SIGKILLed mid-retune,
Prometheus down for 5 minutes) are in test_faults_long.py (also run alone, with a report, by `make bench-faults`).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from batchpilot.adapters.triton import STATS_TIMEOUT_S
from batchpilot.build.names import ChildNames
from batchpilot_sandbox.cluster.stack import Sandbox
from batchpilot_sandbox.demo.sample import SampleService
from support import (
    FAULT_RECOVERY_BOUND_S,
    BackgroundLoad,
    TickLog,
    broken_chain,
    fault_line,
    fault_report,
    isvc_events,
    isvc_status,
    live_queue_delay,
    observed_at,
    ready_pods,
    release_namespace,
    revert_pods,
    rfc3339_time,
    scale_steps,
    wait_for,
    wait_ready_pods,
)

HELD_MARGIN_S = STATS_TIMEOUT_S + 10.0
"""A tick gap above the period that still counts as the period held: one statistics timeout plus room for a loaded
machine; what the bound must rule out is a loop held by the repository API's 60 s timeout."""


def test_api_server_restart_under_load(sandbox: Sandbox) -> None:
    """kube-apiserver goes away for a few seconds just as a load step begins (SIGTERM, same port and etcd when it
    comes back). Triton pods keep serving (no request fails), the operator's watches and timers reconnect and the
    loop ticks again within FAULT_RECOVERY_BOUND_S, and the scale-up it owes the step is taken once, not lost or
    doubled.
    """
    sample = SampleService(name="apirestart", namespace="e2e-fault-api", model="resnet50")
    load = BackgroundLoad(sandbox, sample, "15s@15,35s@120")
    try:
        watch = load.start()
        # Down from 3 s into the run until after the step at 15 s (a restart takes ~10-15 s here): the loop must
        # see the step and scale for it once the API server is back.
        time.sleep(3)
        down_at = time.time()
        sandbox.control_plane.restart_apiserver(down_s=2.0)
        back_at = time.time()
        resumed = wait_for("a tick after the API server came back", lambda: observed_at(isvc_status(
            sandbox, sample.namespace, sample.name)) >= back_at or None, 120, lambda: fault_report(sandbox, load))
        resumed_at = time.time()
        load.join()
        status = isvc_status(sandbox, sample.namespace, sample.name)
        steps = scale_steps(isvc_events(sandbox, sample.namespace, sample.name))
    finally:
        load.join()
        release_namespace(sandbox, sample.namespace)
    down_s, recovery_s = back_at - down_at, resumed_at - back_at
    report = fault_report(sandbox, load, f"API server down {down_s:.1f}s; first tick {recovery_s:.1f}s after it "
                          f"came back; scale steps {steps}")
    print(report, fault_line("apiserver-restart", load, down_s=f"{down_s:.1f}", recovery_s=f"{recovery_s:.1f}",
                             steps=steps), sep="\n")

    assert resumed and recovery_s <= FAULT_RECOVERY_BOUND_S, report
    assert load.rows and sum(r.errors for r in load.rows) == 0, report
    assert steps and steps[0][0] == 1 and not broken_chain(steps), report  # acted, one chain: nothing doubled
    assert max(s.replicas for s in watch.samples) > 1 and status.get("lastScaleTime"), report
    # status.lastDecision ends where the last scale Event does (the record the next process resumes from).
    assert status["lastDecision"]["replicas"]["to"] == steps[-1][1], report


MAX_PASS_S = 8
"""A failing pass here: reload one pod (~1.5 s), the refused load, the rollback's reload; with room for a busy
machine."""
REJECTING_MODEL = """
raise RuntimeError("fault injected by test_faults: this pod's repository no longer loads")
"""
"""Appended to one pod's model.py: importing it (every load, a reload included) fails with this message."""


def _delays(pods: list[dict[str, Any]], model: str) -> dict[str, int | None] | None:
    """Each pod's live queue delay by IP; None when one did not answer (busy reloading: the next read counts)."""
    try:
        return {p["status"]["podIP"]: live_queue_delay(p["status"]["podIP"], model) for p in pods}
    except OSError:
        return None


def test_one_pod_rejects_a_reload_and_the_pass_rolls_back(sandbox: Sandbox) -> None:
    """Two pods in auto batching mode from a poor 300 ms queue delay, under light load; before the first retune,
    the model in the repository of the pod the pass reaches last is broken (its model.py raises on import), so
    Triton refuses to load it with any config. Every pass then reloads the first pod, fails on the second and
    loads the first back: no pod ever runs a delay the others do not, a RetuneFailed Event names the pod and
    Triton's message, status.batching never claims the new delay, and no request fails (Triton keeps the loaded
    model serving when a reload fails)."""
    poor = 300_000
    sample = SampleService(name="reject", namespace="e2e-fault-reload", model="resnet50", batching_mode="auto",
                           max_queue_delay_us=poor, min_replicas=2, max_replicas=2)
    selector = ChildNames(sample.name).selector_string
    sandbox.kubectl("apply", "-f", "-", stdin=sample.yaml())
    load = BackgroundLoad(sandbox, sample, "30s@20")
    delays: list[dict[str, int | None]] = []
    try:
        pods = wait_ready_pods(sandbox, sample.namespace, selector, 2)
        last = pods[-1]
        broken_ip = last["status"]["podIP"]
        roots = list((sandbox.config.workdir / "kubelet" / "pods").glob(
            f"{sample.namespace}_{last['metadata']['name']}_{last['metadata']['uid']}/volumes/**/model.py"))
        assert roots, f"no model.py in the volumes of pod {last['metadata']['name']}"
        for model_py in roots:
            model_py.write_text(model_py.read_text() + REJECTING_MODEL)
        applied_before = isvc_status(sandbox, sample.namespace, sample.name).get("batching")
        load.start()
        stop = threading.Event()

        def sample_delays() -> None:
            while not stop.is_set():
                seen = _delays(pods, sample.model)
                if seen is not None:
                    delays.append(seen)
                stop.wait(1.0)

        sampler = threading.Thread(target=sample_delays, daemon=True)
        sampler.start()
        load.join()
        stop.set()
        sampler.join(10)
        # Every pass reloads the first pod and loads it back when the second refuses: between two passes (one a
        # tick) every pod runs the previous delay again.
        final = wait_for("every pod back on the previous delay", lambda: (d := _delays(pods, sample.model)) and set(
            d.values()) == {poor} and d, 20, lambda: fault_report(sandbox, load))
        status = isvc_status(sandbox, sample.namespace, sample.name)
        events = isvc_events(sandbox, sample.namespace, sample.name)
    finally:
        load.join()
        release_namespace(sandbox, sample.namespace)
    failed = [e for e in events if e["reason"] == "RetuneFailed"]
    mixed = [d for d in delays if len(set(d.values())) > 1]
    longest = max((len(run) for run in "".join("m" if len(set(d.values())) > 1 else "." for d in delays).split(".")),
                  default=0)
    report = fault_report(sandbox, load, f"status.batching before {applied_before}, after {status.get('batching')}",
                          f"final delays {final}; {len(mixed)} of {len(delays)} samples saw pods on different delays, "
                          f"at most {longest} in a row",
                          *[f"{e['reason']} x{e.get('count', 1)}: {e['message']}" for e in events
                            if e["type"] == "Warning" or e["reason"] == "Retuned"])
    print(report, fault_line("reload-rejected", load, passes_failed=sum(int(e.get("count") or 1) for e in failed),
                             mixed_samples=f"{len(mixed)}/{len(delays)}",
                             longest_mixed_s=longest, final=final), sep="\n")

    assert applied_before is None or applied_before.get("maxQueueDelayMicroseconds") == poor, \
        f"a retune ran before the fault was injected: the test proves nothing\n{report}"
    assert failed, f"no RetuneFailed Event\n{report}"
    passes_failed = sum(int(e.get("count") or 1) for e in failed)
    # Failed passes are paced like any (one per RETUNE_INTERVAL_S, 30 s, over a run of about a minute): each
    # reloads the healthy pod twice; retried every tick they were 4-8 here, each a p95 spike of 1-1.5 s.
    assert passes_failed <= 3, report
    message = failed[-1]["message"]
    assert broken_ip in message and "fault injected by test_faults" in message, report
    assert "rolled back 1 pod(s)" in message, report  # the first pod had taken the delay and was loaded back
    assert set(final.values()) == {poor}, report  # every pod on its previous config
    assert longest <= MAX_PASS_S, report  # no pod left on the new delay past its pass (samples 1 s apart)
    assert (status.get("batching") or {}).get("maxQueueDelayMicroseconds", poor) == poor, report
    assert sum(r.errors for r in load.rows) == 0, report


HANG_SCRIPT = """
import os, socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((os.environ["POD_IP"], 8000))
s.listen(128)
held = []
while True:
    held.append(s.accept()[0])  # accepted, never answered
"""


def _hung_pod(sample: SampleService) -> str:
    """A Ready pod among sample's pods (its labels, no readiness probe) whose port 8000 accepts and never answers:
    a Triton hung so that even its statistics request waits forever."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "hung-triton", "namespace": sample.namespace,
                        "labels": ChildNames(sample.name).selector},
           "spec": {"containers": [{"name": "hang", "image": "python:3.11", "command": ["python3", "-c", HANG_SCRIPT],
                                    "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {
                                        "fieldPath": "status.podIP"}}}]}]}}
    return json.dumps(pod)


def test_a_hung_statistics_endpoint_costs_one_timeout_and_no_other_service_waits(sandbox: Sandbox) -> None:
    """Service `hung` has a Ready pod whose Triton port accepts and never answers; service `busy` runs a load step
    meanwhile. The hung pod costs `hung`'s loop at most the statistics timeout per tick (its period stays within
    interval + STATS_TIMEOUT_S), `busy`'s loop keeps its period, scales for its step and fails no request."""
    interval = sandbox.config.control_interval_s
    hung = SampleService(name="hung", namespace="e2e-fault-hang", model="resnet50", max_replicas=1)
    busy = SampleService(name="busy", namespace="e2e-fault-busy", model="resnet50")
    sandbox.kubectl("apply", "-f", "-", stdin=hung.yaml())
    load = BackgroundLoad(sandbox, busy, "10s@15,30s@120")
    try:
        wait_for("the hung service's first tick", lambda: observed_at(isvc_status(sandbox, hung.namespace,
                                                                                  hung.name)), 240)
        sandbox.kubectl("apply", "-f", "-", stdin=_hung_pod(hung))
        wait_ready_pods(sandbox, hung.namespace, ChildNames(hung.name).selector_string, 2, 60)
        hung_from = time.time()
        with TickLog(sandbox, [(hung.namespace, hung.name), (busy.namespace, busy.name)]) as ticks:
            watch = load.start()
            load.join()
        hung_gaps, busy_gaps = ticks.gaps(hung.namespace, hung.name, hung_from), ticks.gaps(busy.namespace, busy.name)
    finally:
        load.join()
        release_namespace(sandbox, hung.namespace)
        release_namespace(sandbox, busy.namespace)
    report = fault_report(sandbox, load, f"tick gaps hung {[round(g) for g in hung_gaps]}",
                          f"tick gaps busy {[round(g) for g in busy_gaps]}")
    print(report, fault_line("stats-hang", load, hung_max_gap_s=max(hung_gaps, default=None),
                             busy_max_gap_s=max(busy_gaps, default=None)), sep="\n")

    # observed.at has whole seconds and is sampled twice a second: 2 s of slack on each gap.
    assert len(hung_gaps) >= 4 and max(hung_gaps) <= interval + HELD_MARGIN_S, report
    assert len(busy_gaps) >= 4 and max(busy_gaps) <= interval + HELD_MARGIN_S, report
    assert max(s.replicas for s in watch.samples) > 1, report  # busy's loop acted on its step
    assert sum(r.errors for r in load.rows) == 0, report


def test_status_lands_while_another_writer_patches_the_service(sandbox: Sandbox) -> None:
    """Another client annotates and labels the InferenceService several times a second through a load step (each
    write a new resourceVersion, so a writer that sent the version it read would get 409 Conflict). The operator's
    status still lands every period, and every scale action it took is in Events once and in
    status.lastDecision last."""
    interval = sandbox.config.control_interval_s
    sample = SampleService(name="contended", namespace="e2e-fault-conflict", model="resnet50")
    load = BackgroundLoad(sandbox, sample, "10s@15,30s@120")
    writes = {"ok": 0, "failed": 0}
    stop = threading.Event()
    kubeconfig: Path = sandbox.kubeconfig

    def other_writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            for args in (["annotate", "--overwrite", f"e2e.example/seq={n}"], ["label", "--overwrite", f"seq={n}"]):
                done = subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", *args[:1], "-n", sample.namespace,
                                       "inferenceservice", sample.name, *args[1:]], capture_output=True, timeout=30)
                writes["ok" if done.returncode == 0 else "failed"] += 1

    writer = threading.Thread(target=other_writer, daemon=True)
    try:
        with TickLog(sandbox, [(sample.namespace, sample.name)]) as ticks:
            watch = load.start()
            started = time.time()
            writer.start()
            load.join()
            stop.set()
            writer.join(30)
        status = isvc_status(sandbox, sample.namespace, sample.name)
        events = isvc_events(sandbox, sample.namespace, sample.name)
    finally:
        stop.set()
        load.join()
        release_namespace(sandbox, sample.namespace)
    gaps = ticks.gaps(sample.namespace, sample.name, started)
    steps = scale_steps(events)
    report = fault_report(sandbox, load, f"other writer: {writes}; tick gaps {[round(g) for g in gaps]}; steps {steps}",
                          f"lastDecision {status.get('lastDecision')}")
    print(report, fault_line("status-contention", load, other_writes=writes["ok"], max_gap_s=max(gaps, default=None),
                             steps=steps), sep="\n")

    assert writes["ok"] >= 50, f"the other writer hardly wrote: the test proves nothing\n{report}"
    assert len(gaps) >= 5 and max(gaps) <= interval + HELD_MARGIN_S, report
    assert steps and not broken_chain(steps), report
    assert watch.samples[-1].replicas == steps[-1][1], report  # the Deployment is where the last action left it
    assert status["lastDecision"]["replicas"]["to"] == steps[-1][1], report  # and status recorded that action
    assert sum(r.errors for r in load.rows) == 0, report


def _live(ips: list[str], model: str) -> dict[str, int | None]:
    """Each pod's live queue delay by IP, a pod that does not answer (stopped, or busy reloading) as -1."""
    delays: dict[str, int | None] = {}
    for ip in ips:
        try:
            delays[ip] = live_queue_delay(ip, model)
        except OSError:
            delays[ip] = -1
    return delays


def test_a_pod_deleted_in_the_middle_of_a_retune(sandbox: Sandbox) -> None:
    """Three pods in auto batching mode under load, tuned by the operator (away from a poor 300 ms queue delay);
    then reverted to the poor delay behind its back, so its next tick runs a pass that reloads them one at a time
    (in IP order, as test_faults_long.py does; a spec.batching edit would roll the pods instead, the config hash being
    in the pod template). The moment the first pod is seen on the operator's delay again and the last is not, the
    pod the pass reaches next is deleted (as `kubectl delete pod` does: the preStop sleep, then SIGTERM) while the
    Deployment controller starts a replacement. The pass either completes or rolls back, and says which in an
    Event; every remaining pod and the replacement end on the delay status.batching records; no request fails; no
    scale action is lost or doubled."""
    started = time.monotonic()
    poor = 300_000
    sample = SampleService(name="podgone", namespace="e2e-fault-podgone", model="resnet50", batching_mode="auto",
                           max_queue_delay_us=poor, min_replicas=3, max_replicas=4)
    selector = ChildNames(sample.name).selector_string
    sandbox.kubectl("apply", "-f", "-", stdin=sample.yaml())
    load = BackgroundLoad(sandbox, sample, "45s@40")
    between: dict[str, int | None] = {}
    try:
        pods = wait_ready_pods(sandbox, sample.namespace, selector, 3)
        ips = [p["status"]["podIP"] for p in pods]  # the pass's order (adapters/kube.py placement)
        load.start()

        def tuned() -> tuple[int] | None:  # a tuple: the delay the operator picks may well be 0
            applied = (isvc_status(sandbox, sample.namespace, sample.name).get("batching") or {}).get(
                "maxQueueDelayMicroseconds")
            return (applied,) if applied not in (None, poor) and set(_live(ips, sample.model).values()) == {
                applied} else None

        (target,) = wait_for("every pod tuned by the operator", tuned, 45, lambda: fault_report(sandbox, load))
        for _ in range(3):  # a pass seen only once finished (reloads take ~1-2 s) is caught on the next revert
            revert_pods(ips, sample.model, poor)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not between:
                seen = _live(ips, sample.model)
                if seen[ips[0]] == target and seen[ips[2]] == poor:
                    between = seen
                elif set(seen.values()) == {target}:
                    break  # the pass finished between two looks
                else:
                    time.sleep(0.05)
            if between:
                break
        assert between, f"never saw a pass between two pods\n{fault_report(sandbox, load)}"
        victim = pods[1]
        sandbox.kubectl("delete", "pod", "-n", sample.namespace, victim["metadata"]["name"], "--wait=false")
        deleted_at = time.time()

        def converged() -> tuple[dict[str, int | None], list[str]] | None:
            applied = (isvc_status(sandbox, sample.namespace, sample.name).get("batching") or {}).get(
                "maxQueueDelayMicroseconds")
            now_ips = [p["status"]["podIP"] for p in ready_pods(sandbox, sample.namespace, selector)
                       if p["metadata"]["uid"] != victim["metadata"]["uid"]]
            if applied is None or len(now_ips) < 3 or victim["status"]["podIP"] in now_ips:
                return None
            live = _live(now_ips, sample.model)
            return (live, now_ips) if set(live.values()) == {applied} else None

        final, final_ips = wait_for("the remaining pods and the replacement on the recorded delay", converged, 60,
                                    lambda: fault_report(sandbox, load))
        recovery_s = time.time() - deleted_at
        load.join()
        status = isvc_status(sandbox, sample.namespace, sample.name)
        events = isvc_events(sandbox, sample.namespace, sample.name)
        replicas = json.loads(sandbox.kubectl("get", "deployment", "-n", sample.namespace, sample.name, "-o",
                                              "json"))["spec"]["replicas"]
    finally:
        load.join()
        release_namespace(sandbox, sample.namespace)
    # The interrupted pass's Event: posted once its tick ends, after the deletion (stamps have whole seconds).
    passes = [e for e in events if e["reason"] in ("Retuned", "RetuneFailed") and rfc3339_time(
        e.get("eventTime") or e.get("lastTimestamp") or e["metadata"]["creationTimestamp"]) >= int(deleted_at) - 1]
    steps = scale_steps(events)
    wall_s = time.monotonic() - started
    report = fault_report(sandbox, load, f"between pods {between}; deleted {victim['status']['podIP']}; converged "
                          f"{recovery_s:.1f}s after the deletion: {final}; status.batching {status.get('batching')}; "
                          f"scale steps {steps}; Deployment replicas {replicas}; wall {wall_s:.0f}s",
                          *[f"{e['reason']} x{e.get('count', 1)}: {e['message']}" for e in passes])
    print(report, fault_line("pod-deleted-mid-retune", load, between=between, recovery_s=f"{recovery_s:.1f}",
                             passes=[e["reason"] for e in passes], steps=steps, wall_s=f"{wall_s:.0f}"), sep="\n")

    # The first pod reloaded and the last not yet reached, a moment before the deletion: it landed inside a pass.
    assert between[ips[0]] == target and between[ips[2]] == poor, report
    assert passes, f"no Retuned or RetuneFailed Event after the deletion: the pass said nothing\n{report}"
    assert all("rolled back" in e["message"] for e in passes if e["reason"] == "RetuneFailed"), report
    applied = status["batching"]["maxQueueDelayMicroseconds"]
    assert applied != poor and set(final.values()) == {applied}, report  # one delay, the one status records
    assert victim["status"]["podIP"] not in final_ips and len(final_ips) >= 3, report
    assert not broken_chain(steps), report
    assert replicas == (steps[-1][1] if steps else 3), report  # the Deployment where the last action left it
    assert sum(r.errors for r in load.rows) == 0, report
