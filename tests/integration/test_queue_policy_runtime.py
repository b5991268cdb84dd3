"""spec.batching.rejectLateRequests on the wheel's real tritonserver: the config.pbtxt the operator renders loads,
Triton rejects requests that waited past the timeout instead of running them, counts them as failures (which
the operator's arrival rate adds back), and a live retune keeps the policy."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http.aio as triton_aio
from tritonclient.http import InferInput
from tritonclient.utils import InferenceServerException

from batchpilot.adapters.triton import TritonAdmin
from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.build.batching import with_tuning
from batchpilot.build.children import config_map
from batchpilot.control.queue_policy import queue_timeout_us
from batchpilot.control.types import Tuning
from support import emulator_triton

ADDRESS = "127.0.0.207"  # clear of the sandbox kubelet's pool (127.0.0.2-200) and every other test's address
TIME_SCALE = 10.0
SPEC = InferenceServiceSpec.model_validate({
    "model": {"name": "emulator", "repository": {"configMap": "files"}, "backend": "python", "maxBatchSize": 8,
              "profile": {"points": [{"batchSize": 1, "latencyMs": 10.0}, {"batchSize": 8, "latencyMs": 30.0}]}},
    "slo": {"latencyMs": 80},
    "batching": {"mode": "fixed", "maxQueueDelayMicroseconds": 0, "rejectLateRequests": True},
})
BURST = 300
CLIENT_TIMEOUT_S = 20.0
UNANSWERED = "no answer"
# The wheel's tritonserver (2.51.0) leaves a few requests of such a burst unanswered in about one burst in four:
# 8-17 of 300 had no answer after 150 s in 4 of 13 bursts on one server (2026-12-06), the rest rejected or served
# as usual. A client's own timeout ends them; the test counts them apart and bounds them (it failed CI once when it
# waited on them with tritonclient's 60 s default).
MAX_UNANSWERED = BURST // 10


@pytest.fixture(scope="module")
def triton_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = config_map("svc", "ml", SPEC)["data"]["config.pbtxt"]
    with emulator_triton(tmp_path_factory.mktemp("triton-queue-policy"), ADDRESS, config, TIME_SCALE) as url:
        yield url


async def _burst(url: str, n: int) -> tuple[int, list[str], int]:
    """n requests at once, each given CLIENT_TIMEOUT_S as a real client would; (successes, Triton's error messages,
    requests Triton never answered)."""
    client = triton_aio.InferenceServerClient(url.removeprefix("http://"), conn_limit=n,
                                              conn_timeout=CLIENT_TIMEOUT_S)

    async def one() -> str | None:
        tensor = InferInput("INPUT", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        try:
            await client.infer("emulator", [tensor])
            return None
        except InferenceServerException as e:
            return str(e)
        except TimeoutError:
            return UNANSWERED

    try:
        results = await asyncio.gather(*(one() for _ in range(n)))
    finally:
        await client.close()
    errors = [r for r in results if r is not None and r is not UNANSWERED]
    lost = sum(r is UNANSWERED for r in results)
    return n - len(errors) - lost, errors, lost


def _counter(url: str, name: str) -> float:
    text = urllib.request.urlopen(url.replace(":8000", ":8002") + "/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and 'model="emulator"' in line)


def test_triton_runs_the_rendered_queue_policy(triton_url: str) -> None:
    config = TritonAdmin(ADDRESS).config("emulator")
    policy = config["dynamic_batching"]["default_queue_policy"]
    assert policy["timeout_action"] == "REJECT"
    assert int(policy["default_timeout_microseconds"]) == queue_timeout_us(SPEC) == 50_000


def test_a_burst_past_capacity_rejects_the_late_requests_and_serves_the_rest_in_time(triton_url: str) -> None:
    ok, errors, lost = asyncio.run(_burst(triton_url, BURST))
    print(f"{ok} served, {len(errors)} rejected, {lost} unanswered in {CLIENT_TIMEOUT_S} s; first error: {errors[:1]}")
    assert lost <= MAX_UNANSWERED, f"{lost} of {BURST} requests had no answer in {CLIENT_TIMEOUT_S} s"
    # ~300 requests are ~40 full batches of ~15-30 ms: far more than 50 ms of queue, so most are rejected ...
    assert len(errors) > BURST // 3, "a burst far past the timeout must be shed"
    assert all("timeout" in e.lower() for e in errors), errors[:3]
    # ... and those served waited no longer than the timeout (Triton's own queue statistics)
    stats = TritonAdmin(ADDRESS).stats("emulator")
    queue = stats["model_stats"][0]["inference_stats"]["queue"]
    assert queue["count"] == ok
    assert queue["ns"] / queue["count"] / 1e6 <= 50.0, "served requests waited past the timeout on average"
    deadline = time.monotonic() + 10
    while _counter(triton_url, "nv_inference_request_failure") < len(errors) and time.monotonic() < deadline:
        time.sleep(0.5)
    # every rejection is counted as a failure (an unanswered request may be counted too, or not)
    assert len(errors) <= _counter(triton_url, "nv_inference_request_failure") <= len(errors) + lost
    assert _counter(triton_url, "nv_inference_request_success") == ok


def test_a_live_retune_keeps_the_queue_policy(triton_url: str) -> None:
    admin = TritonAdmin(ADDRESS)
    admin.load("emulator", with_tuning(admin.config("emulator"), Tuning(1000, 2)))
    policy = admin.config("emulator")["dynamic_batching"]["default_queue_policy"]
    assert policy["timeout_action"] == "REJECT" and int(policy["default_timeout_microseconds"]) == 50_000
