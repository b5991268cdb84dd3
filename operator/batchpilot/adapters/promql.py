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
    def service_selector(self) -> str:
        """The service's pods: for metrics that carry no model label (GPU metrics are per GPU)."""
        pairs = {"namespace": self.namespace, "inferenceservice": self.inferenceservice}
        return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs.items())

    @property
    def selector(self) -> str:
        """The service's pods, the model's series."""
        return f'{self.service_selector},model="{escape_label_value(self.model)}"'

    def latency_ms(self, percentile: int) -> str:
        """Worst pod's server-side request latency at the percentile (Triton summary, microseconds)."""
        quantile = f"{percentile / 100:g}"
        return f'max(nv_inference_request_summary_us{{{self.selector},quantile="{quantile}"}}) / 1000'

    def _rate(self, metric: str) -> str:
        return f"sum(rate({metric}{{{self.selector}}}[{self.window_s:g}s]))"

    def answered_rate(self) -> str:
        """Requests/s answered, successes and failures."""
        return f"{self._rate('nv_inference_request_success')} + {self._rate('nv_inference_request_failure')}"

    def failure_rate(self) -> str:
        """Requests/s Triton failed: a queue timeout (rejectLateRequests) among them."""
        return self._rate("nv_inference_request_failure")

    def pending_growth(self) -> str:
        """Requests/s by which Triton's queues grow: arrivals the service did not answer in the window."""
        return (f"sum(deriv(nv_inference_pending_request_count{{{self.selector}}}[{self.window_s:g}s]))")

    def pending(self) -> str:
        return f"sum(nv_inference_pending_request_count{{{self.selector}}})"

    def per_request_ms(self, counter_us: str) -> str:
        """Mean of a per-request duration counter (microseconds) over the window, in ms."""
        return f"{self._rate(counter_us)} / {self._rate('nv_inference_request_success')} / 1000"

    def queue_ms(self) -> str:
        return self.per_request_ms("nv_inference_queue_duration_us")

    def compute_ms(self) -> str:
        return self.per_request_ms("nv_inference_compute_infer_duration_us")

    def avg_batch_size(self) -> str:
        return f"{self._rate('nv_inference_count')} / {self._rate('nv_inference_exec_count')}"

    def gpu_utilization(self) -> str:
        """Mean utilization (0..1) of the GPUs of the service's pods; no series on CPU (GPU metrics off)."""
        return f"avg(nv_gpu_utilization{{{self.service_selector}}})"

    def sample_age_s(self) -> str:
        """Seconds since the freshest scrape of the service's pods."""
        return f"time() - max(timestamp(nv_inference_request_success{{{self.selector}}}))"
