"""bench.compare_real's pure parts: rate path to schedule, request-level attainment, a run as a RunRecord, the
configurations' manifests, the sim-vs-real gap and the load generator's per-request hook (no sandbox)."""

from __future__ import annotations

import asyncio
import math
import random

import numpy as np
import pytest
from bench.compare_configs import configs, inference_service, scaled_object
from bench.compare_metrics import (
    RealRun,
    attainment,
    clip_series,
    latencies_ms,
    load_start,
    pods_started,
    record,
    scale_events,
)
from bench.compare_report import gap_rows, real_result
from bench.compare_shapes import SHAPES, arrivals, phases_from_path, schedule_text
from bench.compare_sim import SimRun
from bench.sim_compare import RunResult, RunSpec
from bench.sim_validate_stats import Series

from batchpilot.sim.metrics import run_metrics
from batchpilot_sandbox.loadgen.cli import run_load
from batchpilot_sandbox.loadgen.stats import parse_schedule, poisson_arrivals

INF = math.inf


def series(desired: list[int], start: float = 0.0) -> Series:
    return Series(tuple(start + i for i in range(len(desired))), tuple(desired), tuple(desired))


@pytest.mark.parametrize(("edges", "rates", "want"), [
    pytest.param([0, 30, 60, 90], [40, 40, 140], [(60.0, 40.0), (30.0, 140.0)], id="equal-neighbours-merge"),
    pytest.param([0, 10, 10, 20], [5, 7, 9], [(10.0, 5.0), (10.0, 9.0)], id="empty-piece-dropped"),
    pytest.param([0, 0.5], [0], [(0.5, 0.0)], id="idle"),
])
def test_a_rate_path_becomes_the_load_generators_phases(edges: list[float], rates: list[float],
                                                        want: list[tuple[float, float]]) -> None:
    assert phases_from_path(np.array(edges, float), np.array(rates, float)) == want


@pytest.mark.parametrize(("edges", "rates"), [
    pytest.param([0, 10], [1, 2], id="one-rate-too-many"),
    pytest.param([5, 10], [1], id="not-from-zero"),
    pytest.param([0, 10], [-1], id="negative-rate"),
])
def test_a_bad_rate_path_is_refused(edges: list[float], rates: list[float]) -> None:
    with pytest.raises(ValueError):
        phases_from_path(np.array(edges, float), np.array(rates, float))


def test_schedule_text_parses_back_to_the_same_phases() -> None:
    phases = SHAPES["step"].phases(0)
    assert parse_schedule(schedule_text(phases)) == phases == [(60.0, 40.0), (150.0, 140.0)]


@pytest.mark.parametrize("name", list(SHAPES))
def test_every_shape_is_seeded_and_a_few_minutes(name: str) -> None:
    shape = SHAPES[name]
    full, quick = shape.phases(0), shape.phases(0, quick=True)
    assert shape.phases(0) == full
    assert 200 <= sum(d for d, _ in full) <= 300 and sum(d for d, _ in quick) < sum(d for d, _ in full)
    assert max(r for _, r in full) > 100.0 > min(r for _, r in full)  # past one replica, and below it


def test_the_bursty_path_follows_its_seed() -> None:
    assert SHAPES["bursty"].phases(1) != SHAPES["bursty"].phases(2)


def test_the_simulator_replays_the_load_generators_own_arrivals() -> None:
    phases = SHAPES["ramp-spike"].phases(3, quick=True)
    sent = list(poisson_arrivals(phases, random.Random(3)))
    np.testing.assert_array_equal(arrivals(phases, 3), np.array(sent))


def test_attainment_counts_failures_as_misses() -> None:
    offsets, latency = latencies_ms([(2.0, None), (0.0, 0.05), (1.0, 0.15), (3.0, 0.25)])
    assert offsets.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert latency.tolist() == pytest.approx([50.0, 150.0, INF, 250.0])
    assert attainment(latency, 200.0) == 0.5
    assert attainment(np.zeros(0), 200.0) == 1.0


@pytest.mark.parametrize(("desired", "events", "started"), [
    pytest.param([1, 1, 2, 3, 3, 2], 3, 2, id="up-up-down"),
    pytest.param([1, 3, 2, 4], 3, 4, id="two-jumps"),
    pytest.param([2], 0, 0, id="one-sample"),
])
def test_scale_events_and_pods_started(desired: list[int], events: int, started: int) -> None:
    assert (scale_events(desired), pods_started(desired)) == (events, started)


def test_clip_series_keeps_the_sample_holding_at_the_start() -> None:
    clipped = clip_series(series([1, 1, 2, 2, 3], start=-1.5), duration_s=2.0)
    assert clipped.t == (0.0, 0.5, 1.5) and clipped.desired == (1, 2, 2)  # -0.5 s holds at 0


def real_run(policy: str = "batchpilot", desired: list[int] | None = None) -> RealRun:
    requests = ((0.5, 0.1), (1.5, 0.3), (2.5, None), (3.5, 0.05))
    return RealRun(policy, "s", "step", 0, 200.0, 4.0, requests, series(desired or [1, 1, 2, 2]), retunes=1)


def test_a_real_run_is_judged_by_the_simulators_metrics() -> None:
    rec = record(real_run())
    m = run_metrics(rec)
    assert m.attainment == 0.5  # 100 and 50 ms within 200; 300 ms and the failure miss
    assert m.failed == 1
    assert rec.gpu_seconds == 1 * 2 + 2 * 2  # replica-seconds of desired replicas over the 4 s load
    assert (m.scale_events, m.cold_starts, m.reloads) == (1, 1, 1)


def test_the_gap_pairs_each_real_run_with_its_twin() -> None:
    real = [real_run(), real_run("batching-only")]
    twin_metrics = real_result(real[0]).metrics
    twin = RunResult(RunSpec("sandbox", "step", 0, "batchpilot", None, "sandbox"), "batchpilot", "default",
                     twin_metrics.__class__(**{**twin_metrics.__dict__, "attainment": 0.75}), 0.0, 4.0, {})
    gaps = gap_rows(real, [SimRun("batchpilot", twin, series([2, 2, 2, 2]))])
    assert len(gaps) == 1  # batching-only has no simulated twin
    g = gaps[0]
    assert g["attainment_gap_pp"] == pytest.approx(25.0)
    assert (g["real_replica_s"], g["sim_replica_s"], g["replica_s_ratio"]) == (6.0, 8.0, pytest.approx(8 / 6))


def test_load_start_is_the_median_of_report_times_less_window_ends() -> None:
    assert load_start([105.0, 110.2, 115.0], [5.0, 10.0, 15.0], fallback=0.0) == 100.0
    assert load_start([], [], fallback=42.0) == 42.0


def test_peers_hand_replicas_to_keda_at_its_defaults_and_batchpilot_keeps_them() -> None:
    by_key = {c.key: c for c in configs("cmp-step", 0, 88.9)}
    assert list(by_key) == ["batchpilot", "keda-rate", "keda-latency", "keda-queue-compute", "batching-only"]
    assert scaled_object(by_key["batchpilot"], "http://p") is None
    isvc = inference_service(by_key["batchpilot"])[-1]["spec"]
    assert isvc["autoscaling"].get("mode") is None and isvc["batching"]["mode"] == "fixed"
    for key, metric_type, threshold in (("keda-rate", "AverageValue", "88.9"), ("keda-latency", "Value", "200"),
                                        ("keda-queue-compute", "Value", "1"), ("batching-only", "AverageValue",
                                                                                "88.9")):
        c = by_key[key]
        obj = scaled_object(c, "http://p")
        assert obj is not None
        assert "pollingInterval" not in obj["spec"] and "advanced" not in obj["spec"]  # KEDA's and the HPA's defaults
        trigger = obj["spec"]["triggers"][0]
        assert (trigger["metricType"], trigger["metadata"]["threshold"]) == (metric_type, threshold)
        assert f'namespace="cmp-step-{key}"' in trigger["metadata"]["query"]
        spec = inference_service(c)[-1]["spec"]
        assert spec["autoscaling"]["mode"] == "external"
        assert spec["batching"]["mode"] == ("auto" if key == "batching-only" else "fixed")
        assert (obj["spec"]["minReplicaCount"], obj["spec"]["maxReplicaCount"]) == (1, 4)


def test_the_load_generator_reports_every_request_to_on_request() -> None:
    """No target: each request fails at once ("no_target") and is still handed over, with no latency."""
    seen: list[tuple[float, float | None]] = []
    report = asyncio.run(run_load([], "m", [(0.5, 40.0)], interval_s=0.25, seed=7,
                                  on_request=lambda o, lat: seen.append((o, lat))))
    assert report.total.offered == len(seen) > 0
    assert all(lat is None for _, lat in seen)
    assert [o for o, _ in seen] == list(poisson_arrivals([(0.5, 40.0)], random.Random(7)))
