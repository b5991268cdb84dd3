"""Reads a service's Triton metrics from Prometheus."""

from __future__ import annotations

import math
from dataclasses import dataclass

from prometheus_api_client import PrometheusConnect

from batchpilot.adapters.promql import ServiceQueries


class MetricsUnavailable(Exception):
    """Prometheus could not be asked, or had no fresh samples for the service."""


@dataclass(frozen=True)
class ServiceMetrics:
    latency_ms: float | None
    arrival_rate: float


class PrometheusReader:
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self._prom = PrometheusConnect(url=url, disable_ssl=True)
        self._timeout_s = timeout_s

    def _scalar(self, query: str) -> float | None:
        try:
            result = self._prom.custom_query(query, params={"timeout": f"{self._timeout_s:g}s"})
        except Exception as e:  # the client raises several unrelated types; all mean "no answer"
            raise MetricsUnavailable(f"Prometheus at {self.url} did not answer: {e}") from e
        if not result:
            return None
        return float(result[0]["value"][1])

    def read(self, queries: ServiceQueries, percentile: int, stale_after_s: float) -> ServiceMetrics:
        age = self._scalar(queries.sample_age_s())
        if age is None:
            raise MetricsUnavailable("no Triton samples for the service in Prometheus yet")
        if age > stale_after_s:
            raise MetricsUnavailable(f"newest Triton sample is {age:.0f}s old (staleAfter {stale_after_s:g}s)")
        rate = self._scalar(queries.arrival_rate()) or 0.0
        latency = self._scalar(queries.latency_ms(percentile))
        if latency is not None and math.isnan(latency):
            # Triton reports NaN quantiles when no request finished in the summary window: idle, not unknown.
            latency = 0.0 if rate == 0.0 else None
        return ServiceMetrics(latency_ms=latency, arrival_rate=rate)
