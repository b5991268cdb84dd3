"""The reactive attainment ceiling (bench/sim_ceiling.py) on a hand-made trace."""

from __future__ import annotations

import numpy as np
import pytest
from bench.sim_ceiling import burst_onsets, ceiling, per_second, unavoidable_misses


def burst_trace() -> np.ndarray:
    """100 requests a second for 100 s, 500 a second from second 50 to 79."""
    counts = np.full(100, 100, dtype=np.int64)
    counts[50:80] = 500
    return counts


def test_per_second_counts_arrivals_in_whole_seconds() -> None:
    assert per_second(np.array([0.1, 0.9, 1.0, 2.5, 2.7, 2.9]), 4.0).tolist() == [2, 1, 3, 0]


def test_the_onset_is_found_at_most_the_smoothing_early_never_late() -> None:
    # The 5-second mean crosses 1.6 x the median (160) at second 48: (3 x 100 + 2 x 500) / 5 = 260.
    assert burst_onsets(burst_trace()).tolist() == [48]


def test_misses_are_the_requests_above_capacity_in_each_bursts_first_window() -> None:
    counts = burst_trace()
    # Seconds 48-57: two at 100 (none above 100), eight at 500 (400 above each).
    assert unavoidable_misses(counts, [48], 100.0, 10) == 8 * 400
    assert unavoidable_misses(counts, [48], 500.0, 10) == 0


def test_the_ceiling_and_the_pods_a_99_percent_share_needs() -> None:
    c = ceiling(burst_trace(), per_pod_rps=100.0, window_s=10)
    assert (c.bursts, c.requests, c.base_pods) == (1, 22_000, 2)  # ceil(100 / (100 x 0.85))
    assert c.ceiling == pytest.approx(1 - 8 * 300 / 22_000)
    # 99% allows 220 misses: 4 pods leave 8 x 100 = 800, 5 leave none.
    assert c.pods_for_goal == 5


def test_more_capacity_held_never_lowers_the_ceiling() -> None:
    rng = np.random.default_rng(7)
    counts = rng.poisson(np.where((np.arange(600) // 100) % 2 == 1, 900, 200)).astype(np.int64)
    onsets = burst_onsets(counts)
    misses = [unavoidable_misses(counts, onsets, n * 100.0, 30) for n in range(1, 12)]
    assert misses == sorted(misses, reverse=True)
    assert misses[0] > 0 and misses[-1] == 0
