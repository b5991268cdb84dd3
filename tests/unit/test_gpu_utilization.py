"""GPU utilization: read per service (GPU metrics carry no model label), shown in status, None on CPU."""

from __future__ import annotations

import pytest

from batchpilot.adapters.prometheus import PrometheusReader
from batchpilot.adapters.promql import ServiceQueries
from batchpilot.build import status
from batchpilot.control.types import Observation

QUERIES = ServiceQueries("team-a", "resnet", "resnet50", 30)


def test_gpu_utilization_is_averaged_over_the_service_pods_without_a_model_label() -> None:
    assert QUERIES.gpu_utilization() == 'avg(nv_gpu_utilization{namespace="team-a",inferenceservice="resnet"})'
    assert QUERIES.selector == 'namespace="team-a",inferenceservice="resnet",model="resnet50"'


@pytest.mark.parametrize("gpu", [0.73, None], ids=["gpu", "cpu: no series"])
def test_the_reader_passes_gpu_utilization_through(monkeypatch: pytest.MonkeyPatch, gpu: float | None) -> None:
    answers = {QUERIES.sample_age_s(): 2.0, QUERIES.answered_rate(): 10.0, QUERIES.latency_ms(95): 40.0,
               QUERIES.gpu_utilization(): gpu}
    reader = PrometheusReader("http://prometheus.invalid:9090")
    monkeypatch.setattr(reader, "_scalar", answers.get)
    metrics = reader.read(QUERIES, 95, 60)
    assert (metrics.gpu_utilization, metrics.latency_ms, metrics.arrival_rate) == (gpu, 40.0, 10.0)


def test_status_shows_gpu_utilization_and_drops_it_when_gone() -> None:
    seen = status.observed(Observation(at=0, replicas=1, ready_replicas=1, gpu_utilization=0.4567), 0)
    assert seen["gpuUtilization"] == 0.457
    assert status.observed(Observation(at=0, replicas=1, ready_replicas=1), 0)["gpuUtilization"] is None
