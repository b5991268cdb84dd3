"""The control loop learns compute time per batch size from a real Triton's statistics (GPU emulator on CPU).

One tritonserver; Kubernetes and Prometheus are stand-ins, so every tick reads the real per-pod statistics,
takes their difference since the last tick, and feeds the very planner the operator runs.
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from batchpilot.adapters.prometheus import ServiceMetrics
from batchpilot.adapters.triton import STATS_TIMEOUT_S, TritonAdmin, batch_stats
from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.build.batching import with_tuning
from batchpilot.build.status import applied_batching
from batchpilot.control.batch_stats import MIN_EXECUTIONS
from batchpilot.control.capacity import MIN_OVERLAP
from batchpilot.control.limits import RETUNE_INTERVAL_S
from batchpilot.control.types import History, Tuning
from batchpilot.control_loop import PodSnapshots, Tick, tick
from batchpilot.settings import OperatorSettings
from batchpilot_sandbox.gpu_emulator import model_files
from batchpilot_sandbox.gpu_emulator.profile_curve import ProfileCurve
from batchpilot_sandbox.loadgen.cli import run_load
from support import emulator_triton, wait_for

ADDRESS = "127.0.0.208"  # clear of the sandbox kubelet's pool (127.0.0.2-200) and every other test's address
REFUSING = "127.0.0.209"  # a "ready" pod where nothing listens
HANGING = "127.0.0.210"  # a "ready" pod that accepts and never answers
TIME_SCALE = 10.0  # 10x slower than an H100, so timings stand well above Python's overheads
CONFIG = """backend: "python"
max_batch_size: 64
dynamic_batching { max_queue_delay_microseconds: 5000 }
instance_group [{ kind: KIND_CPU, count: 1 }]
"""
CURVE = ProfileCurve.from_json(model_files()["profile.json"])
HUNG_BOUND_S = STATS_TIMEOUT_S + 15.0
"""A tick with a hanging pod costs one statistics timeout; the bound only has to tell that from the repository
API's 60 s timeout, with room for a loaded machine (a correctness bound, not a speed target)."""
OWNER = {"apiVersion": "batchpilot.dev/v1alpha1", "kind": "InferenceService",
         "metadata": {"namespace": "team-a", "name": "emulator", "uid": "0"}, "status": {}}


def expected_ms(batch_size: int) -> float:
    return float(CURVE.latency_ms(batch_size)) * TIME_SCALE


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tritonserver with the emulator loaded (explicit model control) on ADDRESS:8000; yields its root."""
    root = tmp_path_factory.mktemp("triton")
    with emulator_triton(root, ADDRESS, CONFIG, TIME_SCALE):
        infer(2)  # the first request pays one-off costs in the stub: not in any measured tick
        yield root


def infer(rows: int) -> None:
    """One request of `rows` rows; alone in Triton's queue it runs as one batch of exactly that size."""
    data = [float(i) for i in range(rows * 4)]
    body = {"inputs": [{"name": "INPUT", "shape": [rows, 4], "datatype": "FP32", "data": data}]}
    request = urllib.request.Request(f"http://{ADDRESS}:8000/v2/models/emulator/infer",
                                     data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert json.loads(resp.read())["outputs"][0]["data"] == data


def executions() -> int:
    """Executions Triton has recorded since the model was loaded (statistics land just after the answer)."""
    return sum(count for count, _ in (batch_stats(ADDRESS, "emulator") or {}).values())


def inferences() -> int:
    """Inferences (rows) Triton has recorded since the model was loaded."""
    return sum(b * count for b, (count, _) in (batch_stats(ADDRESS, "emulator") or {}).items())


def send(*requests: tuple[int, int]) -> None:
    """(rows, how many) one after another; returns once Triton has recorded every execution."""
    start = executions()
    for rows, times in requests:
        for _ in range(times):
            infer(rows)
    total = sum(times for _, times in requests)
    wait_for(f"{total} executions recorded", lambda: executions() >= start + total, 10)


class Loop:
    """tick() against the real pod, with stand-ins for the Kubernetes API and Prometheus."""

    def __init__(self, spec: InferenceServiceSpec) -> None:
        self.spec, self.history = spec, History()
        self.owner: dict[str, Any] = copy.deepcopy(OWNER)
        self.snapshots: PodSnapshots = {}  # what the operator keeps in the service's kopf memo
        self.pods = [ADDRESS]
        self.applied: list[dict[str, Any]] = []
        # The means Prometheus would give are left out: whatever the model learns comes from the statistics.
        self.metrics = ServiceMetrics(latency_ms=100.0, arrival_rate=20.0, queue_ms=5.0)

    def deployment(self, namespace: str, name: str) -> SimpleNamespace:
        return SimpleNamespace(replicas=1, ready_replicas=1)

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [{"metadata": {"name": f"pod-{ip}"},
                 "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}} for ip in self.pods]

    def apply(self, manifest: dict[str, Any]) -> None:
        self.applied.append(manifest)

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        raise AssertionError("minReplicas = maxReplicas = 1: nothing to scale")

    def read(self, queries: object, percentile: int, stale_after_s: float) -> ServiceMetrics:
        return self.metrics

    def tick(self, after_s: float = 0.0) -> Tick:
        """One tick now (or after_s later: the retune pacing counts from the decisions' clock)."""
        result = tick(self, self, OperatorSettings(), self.owner, self.spec, self.history, time.time() + after_s,
                      self.snapshots)
        assert result is not None
        self.history, self.snapshots = result.decision.history, result.batch_stats
        if result.retune is not None and result.retune.error is None:
            # What the handler writes after a pass that worked: the loop knows the pods' batching from then on.
            self.owner["status"]["batching"] = applied_batching(result.retune.tuning, result.retune.pods)
        return result


def service(**batching: Any) -> InferenceServiceSpec:
    profile = {"points": [{"batchSize": 1, "latencyMs": 1000.0}]}  # a placeholder the statistics override
    return InferenceServiceSpec.model_validate({
        "model": {"name": "emulator", "repository": {"configMap": "emulator-files"}, "maxBatchSize": 64,
                  "profile": profile},
        "slo": {"latencyMs": 1000}, "autoscaling": {"minReplicas": 1, "maxReplicas": 1},
        "batching": batching or {"mode": "fixed", "maxQueueDelayMicroseconds": 5000},
    })


def close_to_profile(batch_size: int, ms: float, slack: float = 1.1) -> bool:
    """The emulator sleeps the profile's time (x TIME_SCALE) per batch; Python adds a little on top."""
    return expected_ms(batch_size) <= ms <= expected_ms(batch_size) * slack + 3


def test_compute_time_per_batch_size_is_learned_from_a_mix_the_means_would_blur(triton: Path) -> None:
    loop = Loop(service())
    assert loop.tick().observation.batch_compute == ()  # a pod seen for the first time: its baseline
    send((1, 6), (16, 6), (64, 6))
    seen = loop.tick().observation.batch_compute
    for b, ms, n in seen:
        print(f"batch {b}: {n} executions, {ms:.1f} ms; profile x{TIME_SCALE:g} {expected_ms(b):.1f} ms")
    assert [(b, n) for b, _, n in seen] == [(1, 6), (16, 6), (64, 6)]
    assert all(close_to_profile(b, ms) for b, ms, _ in seen), seen
    learned = dict(loop.history.model.learned)
    assert {b: learned[b] for b in (1.0, 16.0, 64.0)} == {float(b): ms for b, ms, _ in seen}
    # What Prometheus' means say of the same 18 executions: one blurred point far off the curve.
    rows = sum(b * n for b, _, n in seen)
    avg_batch = rows / sum(n for _, _, n in seen)
    per_request_ms = sum(b * n * ms for b, ms, n in seen) / rows
    print(f"means: batch {avg_batch:.1f} at {per_request_ms:.1f} ms per request; "
          f"profile x{TIME_SCALE:g} at {avg_batch:.0f}: {expected_ms(round(avg_batch)):.1f} ms")
    assert per_request_ms > 1.4 * expected_ms(round(avg_batch))


def test_under_load_each_batch_size_triton_forms_takes_the_profiled_time(triton: Path) -> None:
    loop = Loop(service())
    loop.tick()
    before = inferences()
    report = asyncio.run(run_load([f"{ADDRESS}:8000"], "emulator", [(8.0, 120.0)], interval_s=8.0))
    assert report.total.error_count == 0, report.total.errors
    wait_for("the last batches' statistics", lambda: inferences() >= before + report.total.ok, 10)
    seen = loop.tick().observation.batch_compute
    print(f"{report.total.line()}")
    for b, ms, n in seen:
        print(f"batch {b}: {n} executions, {ms:.1f} ms; profile x{TIME_SCALE:g} {expected_ms(b):.1f} ms")
    frequent = [(b, ms) for b, ms, n in seen if n >= MIN_EXECUTIONS]
    assert len(frequent) >= 2, seen  # 120 req/s on ~45 ms batches: Triton forms several sizes
    assert sum(b * n for b, _, n in seen) == report.total.ok
    assert all(close_to_profile(b, ms, slack=1.3) for b, ms in frequent), seen
    assert {b: ms for b, ms in loop.history.model.learned if b in dict(frequent)} == \
        {float(b): ms for b, ms in frequent}


def test_a_reload_restarts_the_counts_and_silent_pods_are_skipped(triton: Path) -> None:
    loop = Loop(service())
    loop.tick()
    send((1, 3))
    admin = TritonAdmin(ADDRESS)
    admin.load("emulator", with_tuning(admin.config("emulator"), Tuning(2000, 1)))  # what a live retune does
    send((8, 5))
    assert [(b, n) for b, _, n in loop.tick().observation.batch_compute] == [(8, 5)]  # since the reload only

    hanging = socket.create_server((HANGING, 8000), backlog=8)  # accepts connections, answers none
    try:
        loop.pods = [ADDRESS, REFUSING, HANGING]
        send((2, 5))
        start = time.monotonic()
        seen = loop.tick().observation.batch_compute
        took = time.monotonic() - start
    finally:
        hanging.close()
    print(f"tick with a refusing and a hanging pod: {took:.2f}s")
    assert [(b, n) for b, _, n in seen] == [(2, 5)]
    assert took < HUNG_BOUND_S


def test_a_retune_that_reloads_pods_starts_their_counts_afresh(triton: Path) -> None:
    loop = Loop(service(mode="auto", minQueueDelayMicroseconds=1000, maxQueueDelayMicroseconds=1000))
    first = loop.tick()  # the pod runs another delay: this tick reloads it
    assert first.retune is not None and (first.retune.changed, first.retune.error) == (1, None)
    assert loop.snapshots == {}
    send((4, 5))
    assert loop.tick().observation.batch_compute == ()  # the baseline after the reload
    send((4, 5))
    again = loop.tick()
    assert again.retune is not None and again.retune.changed == 0
    assert [(b, n) for b, _, n in again.observation.batch_compute] == [(4, 5)]


def test_a_hung_pod_defers_the_retune_and_costs_one_statistics_timeout(triton: Path) -> None:
    """A Ready pod that accepts and never answers: the pass is not started (it would fail on that pod after the
    repository API's 60 s timeout, every tick), no pod is changed, the tick costs one statistics timeout, and the
    pass runs once the pod is gone."""
    loop = Loop(service(mode="auto", minQueueDelayMicroseconds=3000, maxQueueDelayMicroseconds=3000))
    before = TritonAdmin(ADDRESS).config("emulator")["dynamic_batching"]["max_queue_delay_microseconds"]
    assert int(before) != 3000
    hanging = socket.create_server((HANGING, 8000), backlog=8)  # accepts connections, answers none
    try:
        loop.pods = [ADDRESS, HANGING]
        start = time.monotonic()
        deferred = loop.tick().retune
        took = time.monotonic() - start
    finally:
        hanging.close()
    assert deferred is not None and deferred.changed == 0 and deferred.error is not None
    assert HANGING in deferred.error and "deferred" in deferred.error
    assert TritonAdmin(ADDRESS).config("emulator")["dynamic_batching"]["max_queue_delay_microseconds"] == before
    assert took < HUNG_BOUND_S
    loop.pods = [ADDRESS]
    done = loop.tick(after_s=RETUNE_INTERVAL_S).retune  # a deferred pass counts as one: the next is paced
    assert done is not None and (done.changed, done.error) == (1, None)


@pytest.mark.parametrize(("overlap", "low", "high"), [(0.0, 0.7, 1.0), (1.0, 0.0, 0.3)])
def test_the_contention_of_two_instances_is_learned_from_their_statistics(triton: Path, overlap: float,
                                                                          low: float, high: float) -> None:
    """Two instances of the emulator on one pod under load: where they take turns on the emulated GPU
    (overlap 0) the loop measures a contention near 1 (a second instance buys nothing); where they never
    contend (overlap 1), near 0."""
    settings = triton / "models" / "emulator" / "1" / "emulator.json"
    admin = TritonAdmin(ADDRESS)
    original = admin.config("emulator")
    settings.write_text(json.dumps({"time_scale": TIME_SCALE, "overlap": overlap}))
    admin.load("emulator", with_tuning(original, Tuning(1000, 2)))  # the model's files are read again
    try:
        profile = {"points": [{"batchSize": b, "latencyMs": round(expected_ms(int(b)), 3)}
                              for b in CURVE.batch_sizes]}
        spec = InferenceServiceSpec.model_validate({
            "model": {"name": "emulator", "repository": {"configMap": "emulator-files"}, "maxBatchSize": 64,
                      "profile": profile},
            "slo": {"latencyMs": 1000}, "autoscaling": {"minReplicas": 1, "maxReplicas": 1},
            "batching": {"mode": "fixed", "maxQueueDelayMicroseconds": 1000, "instanceCount": 2}})
        loop = Loop(spec)
        loop.tick()
        before = inferences()
        report = asyncio.run(run_load([f"{ADDRESS}:8000"], "emulator", [(10.0, 60.0)], interval_s=10.0))
        assert report.total.error_count == 0, report.total.errors
        wait_for("the last batches' statistics", lambda: inferences() >= before + report.total.ok, 10)
        seen = loop.tick().observation
        model = loop.history.model
        print(f"overlap {overlap}: {report.total.line()}; {seen.concurrency:.2f} batches in flight per pod; "
              f"batches {[(b, round(ms), n) for b, ms, n in seen.batch_compute]}; contention {model.contention}")
        assert seen.instance_count == 2 and seen.concurrency is not None and seen.concurrency >= MIN_OVERLAP
        # Learned per batch size: the size that ran most carries the measurement.
        most = max(seen.batch_compute, key=lambda m: m.executions).batch_size
        assert model.measured_contention and low <= model.contention_at(most) <= high
    finally:
        settings.write_text(json.dumps({"time_scale": TIME_SCALE, "overlap": 0.0}))
        admin.load("emulator", original)
