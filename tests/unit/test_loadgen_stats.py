"""The load generator's pure parts: schedule parsing, Poisson arrivals, percentiles, window summaries."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from batchpilot_sandbox.loadgen.stats import (
    parse_schedule,
    percentile,
    poisson_arrivals,
    rate_at,
    schedule_duration,
    summarize,
)


@pytest.mark.parametrize(
    ("text", "phases"),
    [
        ("30s@20,2m@150", [(30.0, 20.0), (120.0, 150.0)]),
        ("500ms@10", [(0.5, 10.0)]),
        ("1h@0.5", [(3600.0, 0.5)]),
        ("10@5", [(10.0, 5.0)]),
        (" 2m @ 150/s , 1.5s@0 ", [(120.0, 150.0), (1.5, 0.0)]),
    ],
)
def test_parse_schedule_reads_duration_and_rate(text: str, phases: list[tuple[float, float]]) -> None:
    assert parse_schedule(text) == phases


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "not DURATION@RATE"),
        ("30s", "'30s'"),
        ("30s@20,,", "not DURATION@RATE"),
        ("abc@1", "'abc@1'"),
        ("10d@5", "'10d@5'"),
        ("0s@5", "duration 0.0"),
        ("10s@-1", "'10s@-1'"),
        ("1s@200000", "rate 200000.0"),
    ],
)
def test_parse_schedule_names_the_bad_phase(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="schedule") as err:
        parse_schedule(text)
    assert fragment in str(err.value)


def test_rate_at_follows_phases() -> None:
    phases = [(10.0, 5.0), (20.0, 50.0)]
    assert schedule_duration(phases) == 30.0
    assert [rate_at(phases, t) for t in (0.0, 9.99, 10.0, 29.9, 30.0)] == [5.0, 5.0, 50.0, 50.0, 0.0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_poisson_count_and_gaps_match_the_rate(seed: int) -> None:
    rate, duration = 50.0, 1000.0
    times = list(poisson_arrivals([(duration, rate)], random.Random(seed)))
    expected = rate * duration
    assert abs(len(times) - expected) < 4 * math.sqrt(expected)  # Poisson: sd = sqrt(mean)
    gaps = np.diff(times)
    assert (gaps > 0).all() and times[-1] < duration
    assert np.mean(gaps) == pytest.approx(1 / rate, rel=0.03)
    assert np.std(gaps) == pytest.approx(1 / rate, rel=0.05)  # exponential: sd equals mean


def test_poisson_phases_each_get_their_rate_and_idle_phases_none() -> None:
    phases = [(200.0, 10.0), (100.0, 0.0), (100.0, 100.0)]
    times = np.array(list(poisson_arrivals(phases, random.Random(7))))
    first, idle, last = ((times >= a) & (times < b) for a, b in ((0, 200), (200, 300), (300, 400)))
    assert abs(first.sum() - 2000) < 4 * math.sqrt(2000)
    assert idle.sum() == 0
    assert abs(last.sum() - 10000) < 4 * math.sqrt(10000)


def test_poisson_is_reproducible_from_the_seed() -> None:
    a = list(poisson_arrivals([(10.0, 20.0)], random.Random(42)))
    b = list(poisson_arrivals([(10.0, 20.0)], random.Random(42)))
    c = list(poisson_arrivals([(10.0, 20.0)], random.Random(43)))
    assert a == b != c


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
@pytest.mark.parametrize("q", [0, 1, 50, 95, 99, 100])
def test_percentile_matches_numpy_linear(n: int, q: float) -> None:
    values = sorted(random.Random(n).lognormvariate(0, 1) for _ in range(n))
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_rejects_nothing_and_bad_q() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_gives_rates_ms_and_errors() -> None:
    latencies = [0.001 * i for i in range(1, 101)]  # 1..100 ms
    report = summarize(
        5.0,
        2.0,
        offered=110,
        latencies_s=latencies,
        errors={"http_503": 6, "timeout": 4, "dropped": 0},
        in_flight=3,
        max_lag_s=0.002,
    )
    assert (report.offered_rate, report.achieved_rate, report.ok) == (55.0, 50.0, 100)
    assert report.p50_ms == pytest.approx(50.5)
    assert report.p95_ms == pytest.approx(95.05)
    assert report.p99_ms == pytest.approx(99.01)
    assert report.errors == {"http_503": 6, "timeout": 4}
    assert report.error_count == 10 and report.in_flight == 3 and report.max_lag_ms == pytest.approx(2.0)
    d = report.to_dict()
    assert d["error_count"] == 10 and d["p99_ms"] == pytest.approx(99.01)
    assert "achieved=   50.0/s" in report.line()


def test_summarize_without_successes_has_no_percentiles() -> None:
    report = summarize(0.0, 1.0, offered=3, latencies_s=[], errors={"no_target": 3})
    assert (report.p50_ms, report.p95_ms, report.p99_ms, report.achieved_rate) == (None, None, None, 0.0)
    assert "p50=-" in report.line()
