"""The retune pass over a service's pods, against in-memory pods: one at a time, idempotent, read back, and
rolled back as a whole when one pod fails. (Real Triton reloads are in tests/integration/test_triton_runtime.py.)"""

from __future__ import annotations

from typing import Any

from batchpilot.adapters.triton import TritonError
from batchpilot.build.batching import tuning_of
from batchpilot.control.types import Tuning
from batchpilot.retune import retune

START = {"name": "m", "max_batch_size": 4, "dynamic_batching": {"max_queue_delay_microseconds": "2000"},
         "instance_group": [{"count": 1, "kind": "KIND_GPU"}]}


class Pod:
    def __init__(self, ip: str, refuse: bool = False, ignore: bool = False) -> None:
        self.ip, self.refuse, self.ignore = ip, refuse, ignore
        self.live: dict[str, Any] = {**START}
        self.loads = 0

    def config(self, model: str) -> dict[str, Any]:
        return self.live

    def load(self, model: str, config: dict[str, Any]) -> None:
        if self.refuse:
            raise TritonError(f"pod {self.ip}: failed to load model {model}")
        self.loads += 1
        if not self.ignore:
            self.live = config


class Pods:
    def __init__(self, *pods: Pod) -> None:
        self.pods = {p.ip: p for p in pods}

    def admin(self, ip: str) -> Pod:
        return self.pods[ip]


def run(pods: Pods, tuning: Tuning) -> Any:
    return retune(sorted(pods.pods), "m", tuning, admin=pods.admin)


def test_every_pod_gets_the_tuning_once() -> None:
    pods = Pods(Pod("10.0.0.1"), Pod("10.0.0.2"))
    first = run(pods, Tuning(500, 2))
    assert (first.pods, first.changed, first.error) == (2, 2, None)
    assert all(tuning_of(p.live) == Tuning(500, 2) for p in pods.pods.values())
    again = run(pods, Tuning(500, 2))
    assert (again.changed, again.error) == (0, None) and all(p.loads == 1 for p in pods.pods.values())


def test_a_pod_that_refuses_rolls_back_the_pods_already_changed() -> None:
    pods = Pods(Pod("10.0.0.1"), Pod("10.0.0.2", refuse=True), Pod("10.0.0.3"))
    result = run(pods, Tuning(500, 2))
    assert result.changed == 0 and result.error is not None and "rolled back 1 pod(s)" in result.error
    assert all(tuning_of(p.live) == Tuning(2000, 1) for p in pods.pods.values())
    assert pods.pods["10.0.0.3"].loads == 0  # the pass stops at the first failure


def test_a_pod_that_reads_back_something_else_counts_as_failed() -> None:
    pods = Pods(Pod("10.0.0.1", ignore=True))
    result = run(pods, Tuning(500, 1))
    assert result.error is not None and "reads back queue delay 2000 us, 1 instance(s) per pod" in result.error
