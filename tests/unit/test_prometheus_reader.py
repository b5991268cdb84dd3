"""The Prometheus reader tells no data from no load: fresh samples without a rate yet are unavailable, never 0."""

from __future__ import annotations

import pytest

from batchpilot.adapters.prometheus import MetricsUnavailable, PrometheusReader
from batchpilot.adapters.promql import ServiceQueries

QUERIES = ServiceQueries("team-a", "resnet", "resnet50", 30)


def reader(monkeypatch: pytest.MonkeyPatch, answers: dict[str, float | None]) -> PrometheusReader:
    r = PrometheusReader("http://prometheus.invalid:9090")
    monkeypatch.setattr(r, "_scalar", answers.get)
    return r


def test_fresh_samples_without_a_rate_are_unavailable_not_zero_load(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Prometheus restarted on an empty TSDB: one scrape landed (the samples are fresh), rate() needs two. Read as
    # 0 req/s, the first tick after the restart saw no load under 120 req/s (tests/e2e/test_metrics_outage.py).
    with pytest.raises(MetricsUnavailable, match="fewer than two Triton samples in the 30s rate window"):
        reader(monkeypatch, {QUERIES.sample_age_s(): 1.0, QUERIES.latency_ms(95): 40.0}).read(QUERIES, 95, 60)


def test_a_measured_zero_rate_is_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = reader(monkeypatch, {QUERIES.sample_age_s(): 1.0, QUERIES.answered_rate(): 0.0}).read(QUERIES, 95, 60)
    assert (metrics.arrival_rate, metrics.latency_ms) == (0.0, 0.0)  # Triton's NaN quantiles when idle: 0 ms
