"""The operator's own Prometheus metrics: what it saw, decided and did."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

from batchpilot.control.types import Decision, Observation

if TYPE_CHECKING:
    from batchpilot.retune import Retune

LABELS = ["namespace", "inferenceservice"]

desired_replicas = Gauge("batchpilot_desired_replicas", "Replicas the control loop wants.", LABELS)
ready_replicas = Gauge("batchpilot_ready_replicas", "Replicas whose Triton is ready.", LABELS)
observed_latency_ms = Gauge("batchpilot_observed_latency_ms", "Latency at the SLO percentile.", LABELS)
slo_latency_ms = Gauge("batchpilot_slo_latency_ms", "The SLO's latency target.", LABELS)
decisions = Counter("batchpilot_decisions_total", "Control-loop decisions by reason.", [*LABELS, "reason"])
loop_errors = Counter("batchpilot_loop_errors_total", "Control-loop ticks that failed.", LABELS)
queue_delay_us = Gauge("batchpilot_queue_delay_microseconds", "Queue delay applied to the pods (auto mode).",
                       LABELS)
instance_count = Gauge("batchpilot_instance_count", "Model instances per pod applied to the pods (auto mode).",
                       LABELS)
arrival_rate = Gauge("batchpilot_arrival_rate", "Requests per second arriving at the service, as the loop saw them.",
                     LABELS)
avg_batch_size = Gauge("batchpilot_avg_batch_size", "Inferences per model execution over the loop's window.", LABELS)
predicted_latency_ms = Gauge("batchpilot_predicted_latency_ms",
                             "The capacity model's latency at the SLO percentile for the chosen replicas.", LABELS)
gpu_utilization = Gauge("batchpilot_gpu_utilization", "Mean GPU utilization of the service's pods, 0 to 1.", LABELS)
loop_seconds = Histogram("batchpilot_loop_duration_seconds", "Time of one control-loop tick.", LABELS)
leader = Gauge("batchpilot_leader", "1 while this replica acts (leads the election, or runs without one), 0 while "
               "it stands by.")


def record_tick(namespace: str, name: str, slo_ms: float, obs: Observation, decision: Decision) -> None:
    """One control tick of one service: what the loop saw and decided. A value the observation lacks (no GPU
    metrics, no traffic) leaves its gauge as it was; the error counter is created at 0, so a healthy service
    has the series (dashboards and alerts see 0, not nothing)."""
    labels = (namespace, name)
    desired_replicas.labels(*labels).set(decision.replicas)
    ready_replicas.labels(*labels).set(obs.ready_replicas)
    slo_latency_ms.labels(*labels).set(slo_ms)
    for gauge, value in ((observed_latency_ms, obs.latency_ms), (arrival_rate, obs.arrival_rate),
                         (avg_batch_size, obs.avg_batch_size), (predicted_latency_ms, decision.predicted_latency_ms),
                         (gpu_utilization, obs.gpu_utilization)):
        if value is not None:
            gauge.labels(*labels).set(value)
    decisions.labels(*labels, decision.reason).inc()
    loop_errors.labels(*labels)


def record_retune(namespace: str, name: str, retune: Retune) -> None:
    """A retune pass of one service: the batching every pod runs now, NaN after a failed pass (rolled back, so the
    pods run what they ran before, which the next pass reads again)."""
    failed = retune.error is not None
    queue_delay_us.labels(namespace, name).set(float("nan") if failed else retune.tuning.queue_delay_us)
    instance_count.labels(namespace, name).set(float("nan") if failed else retune.tuning.instance_count)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # probes every few seconds would flood the operator's log


def serve(port: int, address: str, ready: Callable[[], bool] = lambda: True) -> None:
    """/metrics, /healthz (the process answers) and /readyz (ready() holds: the leader, or a standby that can take
    over) on one port, from a daemon thread. Port 0: nothing is served."""
    if not port:
        return
    metrics_app = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            ok = path == "/healthz" or ready()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"not ready: a standby that has not read the Lease recently\n"]
        return metrics_app(environ, start_response)

    server = make_server(address, port, app, _Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True).start()
