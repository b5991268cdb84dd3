"""The per-minute series of a run the benchmark plots (bench.sim_compare.minute_timeline): hand-made records."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bench.sim_compare import minute_timeline

from batchpilot.sim.types import RunRecord

INF = math.inf


def record(arrival: list[float], latency: list[float], duration_s: float) -> RunRecord:
    """A run with p50 as its percentile, replicas 1 then 3 a second apart each minute."""
    t = [float(s) for s in range(int(duration_s))]
    return RunRecord(policy="p", setting="s", trace="t", seed=0, slo_ms=100.0, percentile=50,
                     duration_s=duration_s, arrival=np.array(arrival), latency_ms=np.array(latency),
                     timeline_t=t, timeline_replicas=[1 + 2 * (s % 2) for s in range(len(t))])


# minute 0: 3 requests, minute 1: none, minute 2 (the last, 120-150 s): 2 requests, then one that arrived after
# the run's end and the last minute's (a sandbox load generator's last request): it counts in the last minute
ARRIVAL = [5.0, 30.0, 59.999, 120.0, 149.0, 185.0]
LATENCY = [10.0, 30.0, 20.0, INF, 40.0, 50.0]
EXPECTED = {"load": [3 / 60, 0.0, 3 / 60], "replicas": [2.0, 2.0, 2.0], "latency_ms": [20.0, 0.0, 50.0]}


def test_per_minute_load_latency_and_replicas() -> None:
    assert minute_timeline(record(ARRIVAL, LATENCY, 150.0)) == EXPECTED


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_arrivals_out_of_order_give_the_same_minutes(seed: int) -> None:
    order = np.random.default_rng(seed).permutation(len(ARRIVAL))
    shuffled = record([ARRIVAL[i] for i in order], [LATENCY[i] for i in order], 150.0)
    assert minute_timeline(shuffled) == EXPECTED
