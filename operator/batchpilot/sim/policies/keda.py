"""KEDA's Prometheus scaler feeding the HPA of hpa.py: two triggers users write for Triton.

Follows kedacore/keda (read 2026-11-24):
- `pkg/scalers/prometheus_scaler.go`: the trigger's `threshold` becomes the target of one External metric of
  the HPA KEDA creates, `metricType` AverageValue unless set (so the HPA computes ceil(value / threshold));
  `ignoreNullValues` defaults to true, and then an empty result, an empty value, NaN or Inf all read as 0: a
  metrics outage looks like no load, and the HPA scales down (after its 300 s window) instead of holding.
- Metrics caching (keda-docs "Caching Metrics", `useCachedMetrics` false by default): the HPA's query every
  15 s goes through KEDA's metrics server straight to the scaler, so the HPA sees a fresh value each sync;
  `pollingInterval` (30 s) only paces KEDA's own activation check (0 <-> 1 replicas). Scale to zero is not
  modelled: the peers share one minReplicas >= 1, and KEDA then sets the HPA's minReplicas to it.
- No `advanced.horizontalPodAutoscalerConfig.behavior`: the HPA runs its legacy rules (see hpa.py).

Triggers and defaults:
- keda-rate: `sum(rate(nv_inference_request_success[..])) + sum(rate(nv_inference_request_failure[..]))`
  (View.answered_rate: requests rejected by a queue timeout count as load), AverageValue threshold = the
  per-pod capacity a user measures offline (sizing.measure_capacity): the number KEDA's docs tell users to put.
- keda-latency: the p95 from Triton's summary (View.latency_ms), `metricType: Value` (a latency is not
  additive across pods), threshold = the SLO.
"""

from __future__ import annotations

import math

from batchpilot.sim.policies.hpa import HpaPolicy, HpaRules, Target
from batchpilot.sim.policies.sizing import Settings
from batchpilot.sim.types import Action, View

POLLING_INTERVAL_S = 30.0
"""ScaledObject spec.pollingInterval default (s): KEDA's activation check, not the HPA's metric refresh."""
RATE_SWEEP = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Rate thresholds tried, as fractions of the measured capacity (above it a pod misses the SLO by design)."""
LATENCY_SWEEP = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Latency thresholds tried, as fractions of the SLO (headroom for the lag of a minute-long summary)."""


def null_as_zero(value: float | None) -> float:
    """ignoreNullValues: true, as `ExecutePromQuery` applies it: no data, NaN or Inf read as 0."""
    if value is None or math.isnan(value) or math.isinf(value):
        return 0.0
    return value


def rate_settings(capacity: float) -> Settings:
    """Threshold of keda-rate: the measured per-pod capacity (req/s), swept below it."""
    return Settings(capacity, tuple(capacity * f for f in RATE_SWEEP))


def latency_settings(slo_ms: float) -> Settings:
    """Threshold of keda-latency: the SLO (ms), swept below it."""
    return Settings(slo_ms, tuple(slo_ms * f for f in LATENCY_SWEEP))


def _arrival_rate(view: View) -> float:
    return null_as_zero(view.answered_rate)


def _latency_ms(view: View) -> float:
    return null_as_zero(view.latency_ms)


def keda_rate(setting: str, threshold: float, rules: HpaRules, initial: Action) -> HpaPolicy:
    """keda-rate: request rate, AverageValue threshold in req/s per pod."""
    return HpaPolicy("keda-rate", setting, _arrival_rate, Target.EXTERNAL_AVERAGE, threshold, rules, initial)


def keda_latency(setting: str, threshold: float, rules: HpaRules, initial: Action) -> HpaPolicy:
    """keda-latency: p95 latency, Value threshold in ms."""
    return HpaPolicy("keda-latency", setting, _latency_ms, Target.EXTERNAL_VALUE, threshold, rules, initial)
