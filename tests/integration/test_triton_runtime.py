"""The wheel's real tritonserver runs the GPU emulator on CPU: it batches, and batches take the profiled time."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http.aio as triton_aio
from tritonclient.http import InferInput

from batchpilot.adapters.triton import TritonAdmin
from batchpilot.build.batching import tuning_of, with_tuning
from batchpilot.control.types import Tuning
from batchpilot_sandbox.gpu_emulator import model_files
from batchpilot_sandbox.gpu_emulator.profile_curve import ProfileCurve
from batchpilot_sandbox.loadgen.cli import run_load
from support import emulator_triton

ADDRESS = "127.0.0.201"  # clear of the sandbox kubelet's pool (127.0.0.2-200) and every other test's address
TIME_SCALE = 10.0  # 10x slower than an H100, so timings stand well above Python's overheads
MAX_BATCH = 64
CONFIG = f"""backend: "python"
max_batch_size: {MAX_BATCH}
dynamic_batching {{ max_queue_delay_microseconds: 5000 }}
instance_group [{{ kind: KIND_CPU, count: 1 }}]
"""


@pytest.fixture(scope="module")
def triton_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tritonserver with the emulator loaded (explicit model control) on ADDRESS:8000."""
    with emulator_triton(tmp_path_factory.mktemp("triton"), ADDRESS, CONFIG, TIME_SCALE,
                         ("--strict-readiness=true", "--metrics-config=summary_latencies=true")) as url:
        asyncio.run(_warm_up(url))
        yield url


async def _warm_up(url: str) -> None:
    """Both tests send the same shape; the first request ever pays one-off costs in the stub. Paid here."""
    client = triton_aio.InferenceServerClient(url.removeprefix("http://"))
    try:
        await _infer(client, 2)
    finally:
        await client.close()


def _input(rows: int) -> InferInput:
    data = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    tensor = InferInput("INPUT", [rows, 4], "FP32")
    tensor.set_data_from_numpy(data)
    return tensor


async def _infer(client: triton_aio.InferenceServerClient, rows: int) -> float:
    """Seconds one request took, end to end; checks OUTPUT echoes INPUT."""
    start = time.perf_counter()
    result = await client.infer("emulator", [_input(rows)])
    elapsed = time.perf_counter() - start
    expected = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT"), expected)
    return elapsed


async def _batch_compute_ms(client: triton_aio.InferenceServerClient, sizes: set[int]) -> dict[int, float]:
    """Mean server-side compute time per executed batch, by batch size, from Triton's statistics.

    Triton records a batch's statistics just after it answers, so the last batch may need a moment.
    """
    out: dict[int, float] = {}
    for _ in range(20):
        stats = await client.get_inference_statistics("emulator")
        for entry in stats["model_stats"][0]["batch_stats"]:
            infer = entry["compute_infer"]
            out[int(entry["batch_size"])] = infer["ns"] / infer["count"] / 1e6
        if sizes <= out.keys():
            break
        await asyncio.sleep(0.1)
    return out


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}{{[^}}]*model=\"emulator\"[^}}]*}} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_batch_latency_follows_profile_times_scale(triton_url: str) -> None:
    curve = ProfileCurve.from_json(model_files()["profile.json"])

    async def scenario() -> tuple[list[float], dict[int, float]]:
        client = triton_aio.InferenceServerClient(triton_url.removeprefix("http://"))
        try:
            wall = [await _infer(client, rows) for rows in (1, 1, 32, 64)]
            return wall, await _batch_compute_ms(client, {1, 32, 64})
        finally:
            await client.close()

    wall, compute = asyncio.run(scenario())
    for rows in (1, 32, 64):
        expected_ms = curve.latency_ms(rows) * TIME_SCALE
        print(f"batch {rows}: compute {compute[rows]:.1f} ms, profile x{TIME_SCALE:g} {expected_ms:.1f} ms")
    for rows in (1, 32, 64):
        expected_ms = curve.latency_ms(rows) * TIME_SCALE
        assert expected_ms <= compute[rows] <= expected_ms * 1.1 + 3, (rows, compute[rows], expected_ms)
    # End to end adds the 5 ms queue delay and HTTP; a sandbox GPU must still look like the profile.
    for rows, seconds in zip((1, 1, 32, 64), wall, strict=True):
        assert (
            curve.latency_ms(rows) * TIME_SCALE <= seconds * 1000 <= curve.latency_ms(rows) * TIME_SCALE + 100
        )


def _scrape(triton_url: str) -> str:
    metrics_url = triton_url.replace(":8000", ":8002") + "/metrics"
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        text: str = resp.read().decode()
        return text


def test_concurrent_requests_are_batched(triton_url: str) -> None:
    async def burst() -> None:
        client = triton_aio.InferenceServerClient(triton_url.removeprefix("http://"), conn_limit=64)
        try:
            await asyncio.gather(*(_infer(client, 1) for _ in range(48)))
        finally:
            await client.close()

    before = _scrape(triton_url)
    asyncio.run(burst())
    for _ in range(20):  # statistics land just after the answers
        after = _scrape(triton_url)
        inferences = _metric(after, "nv_inference_count") - _metric(before, "nv_inference_count")
        if inferences >= 48:
            break
        time.sleep(0.1)
    executions = _metric(after, "nv_inference_exec_count") - _metric(before, "nv_inference_exec_count")
    print(f"48 concurrent requests: {inferences:g} inferences in {executions:g} executions")
    assert inferences == 48
    assert executions < inferences / 2, f"{executions} executions for {inferences} inferences: not batched"
    assert "nv_inference_request_summary_us" in after


def test_live_retune_under_load_fails_no_request(triton_url: str) -> None:
    """Reloading the model with a new queue delay and instance count (repository API, config override) while
    60 requests/s arrive: every request is answered, and Triton runs exactly the config it was given."""
    admin = TritonAdmin(ADDRESS)
    original = admin.config("emulator")
    tunings = [Tuning(500, 1), Tuning(20000, 2), Tuning(1000, 1), Tuning(10000, 3), Tuning(5000, 1)]
    applied: list[tuple[Tuning | None, float]] = []

    def retune_every_4s() -> None:
        for tuning in tunings:
            time.sleep(4)
            start = time.monotonic()
            admin.load("emulator", with_tuning(admin.config("emulator"), tuning))
            applied.append((tuning_of(admin.config("emulator")), time.monotonic() - start))

    tuner = threading.Thread(target=retune_every_4s)
    tuner.start()
    report = asyncio.run(run_load([f"{ADDRESS}:8000"], "emulator", [(24.0, 60.0)], interval_s=24.0))
    tuner.join(60)
    admin.load("emulator", original)
    print(f"{report.total.line()}; retunes (tuning, seconds): {applied}")

    assert [tuning for tuning, _ in applied] == tunings
    assert report.total.ok > 1000
    assert report.total.error_count == 0, report.total.errors


SLOW_LOAD_ADDRESS = "127.0.0.202"
SLOW_LOAD_S = 4.0
"""Each instance of the emulator takes this long to initialize, as a GPU backend takes to load its weights."""


def test_a_slow_load_under_load_holds_no_request(tmp_path: Path) -> None:
    """A retune's load takes as long as the new instances take to initialize. Meanwhile Triton goes on serving
    with the old ones, and the load call must not hold any client's request: over HTTP it ran on one of the HTTP
    server's worker threads, and the requests on that thread's connections waited for the whole load (15 of them
    6.4 s at 85 req/s with a 5 s initialization); TritonAdmin.load goes over gRPC."""
    config = CONFIG.replace("max_queue_delay_microseconds: 5000", "max_queue_delay_microseconds: 0")
    with emulator_triton(tmp_path, SLOW_LOAD_ADDRESS, config, TIME_SCALE, load_s=SLOW_LOAD_S):
        admin = TritonAdmin(SLOW_LOAD_ADDRESS)
        took: list[float] = []

        def add_an_instance() -> None:
            time.sleep(5)
            start = time.monotonic()
            admin.load("emulator", with_tuning(admin.config("emulator"), Tuning(0, 2)))
            took.append(time.monotonic() - start)

        loader = threading.Thread(target=add_an_instance)
        loader.start()
        latencies: list[float | None] = []
        report = asyncio.run(run_load([f"{SLOW_LOAD_ADDRESS}:8000"], "emulator", [(16.0, 85.0)], interval_s=16.0,
                                      on_request=lambda _, latency: latencies.append(latency)))
        loader.join(60)
        applied = tuning_of(admin.config("emulator"))
        print(f"{report.total.line()}; the load took {took} s")

    assert took and took[0] >= SLOW_LOAD_S, f"the load took {took} s: it did not wait for the new instances"
    assert applied == Tuning(0, 2), applied
    assert report.total.error_count == 0, report.total.errors
    slowest = max(t for t in latencies if t is not None)
    assert slowest < SLOW_LOAD_S / 2, f"a request took {slowest:.2f} s while the model loaded for {took[0]:.1f} s"
