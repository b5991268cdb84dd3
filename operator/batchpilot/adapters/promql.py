"""PromQL text for the control loop. Label values are escaped so no user string can change a query."""

from __future__ import annotations

from dataclasses import dataclass


def escape_label_value(value: str) -> str:
    """Escape a string for use inside a double-quoted PromQL label matcher."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(frozen=True)
class ServiceQueries:
    """Queries about one InferenceService's Triton pods (labels set by Prometheus relabelling)."""

    namespace: str
    inferenceservice: str
    model: str
    window_s: float

    @property
    def selector(self) -> str:
        pairs = {"namespace": self.namespace, "inferenceservice": self.inferenceservice, "model": self.model}
        return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs.items())

    def latency_ms(self, percentile: int) -> str:
        """Worst pod's server-side request latency at the percentile (Triton summary, microseconds)."""
        quantile = f"{percentile / 100:g}"
        return f'max(nv_inference_request_summary_us{{{self.selector},quantile="{quantile}"}}) / 1000'

    def arrival_rate(self) -> str:
        w = f"{self.window_s:g}s"
        return (f"sum(rate(nv_inference_request_success{{{self.selector}}}[{w}]))"
                f" + sum(rate(nv_inference_request_failure{{{self.selector}}}[{w}]))")

    def sample_age_s(self) -> str:
        """Seconds since the freshest scrape of the service's pods."""
        return f"time() - max(timestamp(nv_inference_request_success{{{self.selector}}}))"
