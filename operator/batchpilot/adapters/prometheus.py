"""Reads a service's Triton metrics from Prometheus."""

from __future__ import annotations

import math

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from batchpilot.adapters.promql import ServiceQueries
from batchpilot.control.types import ServiceMetrics


class MetricsUnavailable(Exception):
    """Prometheus could not be asked, or had no fresh samples for the service."""


class PrometheusReader:
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        # One quick retry, not urllib3's default backoff: a tick must learn of an outage within seconds.
        self._prom = PrometheusConnect(url=url, disable_ssl=True, timeout=int(timeout_s),
                                       retry=Retry(total=1, backoff_factor=0.1, status_forcelist=(502, 503, 504)))
        self._timeout_s = timeout_s

    def _scalar(self, query: str) -> float | None:
        try:
            result = self._prom.custom_query(query, params={"timeout": f"{self._timeout_s:g}s"})
        except Exception as e:  # the client raises several unrelated types; all mean "no answer"
            raise MetricsUnavailable(f"Prometheus at {self.url} did not answer: {e}") from e
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) or math.isinf(value) else value

    def read(self, queries: ServiceQueries, percentile: int, stale_after_s: float) -> ServiceMetrics:
        age = self._scalar(queries.sample_age_s())
        if age is None:
            raise MetricsUnavailable("no Triton samples for the service in Prometheus yet")
        if age > stale_after_s:
            raise MetricsUnavailable(f"newest Triton sample is {age:.0f}s old (staleAfter {stale_after_s:g}s)")
        answered = self._scalar(queries.answered_rate())
        if answered is None:
            # Fresh samples but no rate: no series has two samples in the window yet (a new Prometheus, scrapes
            # just resumed, or a service's first scrape). No data, not no load.
            raise MetricsUnavailable(f"fewer than two Triton samples in the {queries.window_s:g}s rate window yet")
        rate = answered + max(0.0, self._scalar(queries.pending_growth()) or 0.0)
        latency = self._scalar(queries.latency_ms(percentile))
        if latency is None and rate == 0.0:
            # Triton reports NaN quantiles when no request finished in the summary window: idle, not unknown.
            latency = 0.0
        return ServiceMetrics(
            latency_ms=latency, arrival_rate=rate, queue_ms=self._scalar(queries.queue_ms()),
            compute_ms=self._scalar(queries.compute_ms()), avg_batch_size=self._scalar(queries.avg_batch_size()),
            pending=self._scalar(queries.pending()), failure_rate=self._scalar(queries.failure_rate()),
            gpu_utilization=self._scalar(queries.gpu_utilization()),
        )
