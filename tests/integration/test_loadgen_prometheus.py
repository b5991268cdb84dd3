"""The load generator against a stub Triton endpoint, and the real Prometheus scraping local targets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_api_client import PrometheusConnect

from batchpilot_sandbox.cluster.prometheus import (
    FAST_DISCOVERY,
    OPERATOR_JOB,
    PrometheusError,
    PrometheusServer,
    find_prometheus,
    render_config,
)
from batchpilot_sandbox.loadgen.cli import parse_schedule, run_load
from batchpilot_sandbox.loadgen.stats import WindowReport
from batchpilot_sandbox.process import free_port, pid_alive
from support import metrics_stub, wait_for

pytestmark = pytest.mark.integration

# Clear of the sandbox kubelet's pool (127.0.0.2-200) and every other test's address.
OK_A, OK_B, BUSY, SLOW, REFUSED = "127.0.0.211", "127.0.0.212", "127.0.0.213", "127.0.0.214", "127.0.0.215"
METRICS_A, METRICS_B = "127.0.0.216", "127.0.0.217"
API_UNUSED = "https://127.0.0.1:1"


# -- a stub Triton: KServe v2 infer answered by aiohttp in the test's own event loop
@contextlib.asynccontextmanager
async def triton_stub(host: str, mode: str = "ok") -> AsyncIterator[tuple[str, Counter[str]]]:
    """Serve POST /v2/models/{model}/infer on host; mode ok (200), busy (503) or slow (2 s). Yields ip:port."""
    seen: Counter[str] = Counter()

    async def infer(request: web.Request) -> web.Response:
        body = await request.json()
        (tensor,) = body["inputs"]
        seen[f"{request.match_info['model']}/{tensor['name']}/{tensor['datatype']}/{tensor['shape']}"] += 1
        if mode == "busy":
            return web.json_response({"error": "busy"}, status=503)
        if mode == "slow":
            await asyncio.sleep(2.0)
        return web.json_response({"model_name": request.match_info["model"], "outputs": []})

    app = web.Application()
    app.router.add_post("/v2/models/{model}/infer", infer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port(host)
    await web.TCPSite(runner, host, port).start()
    try:
        yield f"{host}:{port}", seen
    finally:
        await runner.cleanup()


def test_loadgen_achieves_the_offered_rate_round_robin() -> None:
    windows: list[WindowReport] = []

    async def scenario() -> Any:
        async with triton_stub(OK_A) as (a, seen_a), triton_stub(OK_B) as (b, seen_b):
            report = await run_load(
                [a, b], "m", [(4.0, 100.0)], interval_s=1.0, on_interval=windows.append, seed=3
            )
            return report, seen_a, seen_b

    report, seen_a, seen_b = asyncio.run(scenario())
    total = report.total
    assert total.errors == {} and total.in_flight <= 10
    assert total.ok == total.offered and 320 <= total.offered <= 480  # 400 expected, Poisson sd 20
    assert total.achieved_rate == pytest.approx(total.offered_rate)
    assert total.duration_s == pytest.approx(4.0, abs=0.05)
    assert total.p50_ms is not None and total.p95_ms is not None and total.p99_ms is not None
    assert 0 < total.p50_ms <= total.p95_ms <= total.p99_ms < 500
    assert total.max_lag_ms < 250, "the generator fell behind its schedule"
    assert windows == report.intervals and len(windows) == 4
    assert sum(w.offered for w in windows) == total.offered and sum(w.ok for w in windows) == total.ok
    assert all(60 <= w.offered_rate <= 140 for w in windows)
    assert seen_a.keys() == seen_b.keys() == {"m/INPUT/FP32/[1, 4]"}
    assert abs(seen_a.total() - seen_b.total()) <= 1


def test_loadgen_counts_errors_by_kind_and_caps_in_flight() -> None:
    async def scenario() -> Any:
        async with (
            triton_stub(OK_A) as (ok, _),
            triton_stub(BUSY, "busy") as (busy, _),
            triton_stub(SLOW, "slow") as (slow, _),
        ):
            refused = f"{REFUSED}:{free_port(REFUSED)}"
            mixed = await run_load([ok, busy, slow, refused], "m", [(2.0, 40.0)], timeout_s=0.3, seed=1)
            capped = await run_load([slow], "m", [(1.0, 50.0)], timeout_s=0.3, max_in_flight=2, seed=2)
            return mixed.total, capped.total

    mixed, capped = asyncio.run(scenario())
    assert set(mixed.errors) == {"http_503", "timeout", "connection"}
    quarter = mixed.offered / 4
    for count in (mixed.ok, *mixed.errors.values()):
        assert abs(count - quarter) <= 1  # round robin: each target gets a quarter
    assert mixed.p50_ms is not None and mixed.p50_ms < 300
    assert capped.ok == 0 and capped.errors["dropped"] > capped.offered / 2
    assert capped.errors["dropped"] + capped.errors["timeout"] == capped.offered


def test_loadgen_follows_a_changing_target_list_and_stops_early() -> None:
    async def scenario() -> Any:
        async with triton_stub(OK_A) as (ok, _):
            loop = asyncio.get_running_loop()
            t0 = loop.time()

            def targets() -> list[str]:
                return [ok] if loop.time() - t0 > 0.5 else []

            refreshed = await run_load(targets, "m", [(1.5, 50.0)], refresh_s=0.2, seed=4)
            stop = asyncio.Event()
            loop.call_later(0.5, stop.set)
            started = loop.time()
            stopped = await run_load([ok], "m", parse_schedule("1m@50"), stop=stop, seed=5)
            return refreshed.total, stopped, loop.time() - started

    refreshed, stopped, elapsed = asyncio.run(scenario())
    assert refreshed.errors.get("no_target", 0) > 5 and refreshed.ok > 20
    assert set(refreshed.errors) == {"no_target"}
    assert elapsed < 2.0 and stopped.total.duration_s == pytest.approx(0.5, abs=0.2)
    assert len(stopped.intervals) == 1 and stopped.total.errors == {}


def test_loadgen_cli_prints_json_lines() -> None:
    async def scenario() -> tuple[int, bytes, bytes]:
        async with triton_stub(OK_A) as (ok, _):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "batchpilot_sandbox.loadgen",
                "--target",
                ok,
                "--model",
                "m",
                "--schedule",
                "1s@20,1s@40",
                "--interval",
                "1",
                "--json",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            return proc.returncode or 0, out, err

    code, out, err = asyncio.run(scenario())
    assert code == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [line["type"] for line in lines] == ["interval", "interval", "total"]
    assert lines[-1]["error_count"] == 0 and lines[-1]["ok"] == lines[-1]["offered"] > 30


# -- Prometheus
@pytest.fixture(scope="module")
def prometheus_binary() -> Path:
    try:
        return find_prometheus()
    except FileNotFoundError as e:
        pytest.fail(f"Prometheus is needed for these tests and is not installed: {e}")


def static_only(targets: list[str]) -> dict[str, Any]:
    cfg = render_config(API_UNUSED, "/nonexistent/ca", "/nonexistent/crt", "/nonexistent/key", 0.5, targets)
    cfg["scrape_configs"] = [j for j in cfg["scrape_configs"] if j["job_name"] == OPERATOR_JOB]
    return cfg


def test_prometheus_scrapes_a_static_target_and_reloads(prometheus_binary: Path, tmp_path: Path) -> None:
    with (
        metrics_stub(METRICS_A, 42) as a,
        metrics_stub(METRICS_B, 7) as b,
        PrometheusServer(tmp_path, static_only([a]), extra_args=FAST_DISCOVERY) as prom,
    ):
        api = PrometheusConnect(prom.url)
        (series,) = wait_for("stub_requests_total from A", lambda: api.custom_query("stub_requests_total"), 30)
        assert series["metric"]["job"] == OPERATOR_JOB and series["metric"]["instance"] == a
        assert series["value"][1] == "42"
        prom.reload(static_only([b]))
        query = f'stub_requests_total{{instance="{b}"}}'
        (series,) = wait_for("stub_requests_total from B after reload", lambda: api.custom_query(query), 30)
        assert series["value"][1] == "7"
        with pytest.raises(PrometheusError, match="rejected"):
            prom.reload({"global": {"scrape_interval": "soon"}})
        pid = prom.proc.pid if prom.proc else 0
        assert (tmp_path / "prometheus.log").stat().st_size > 0
    assert not pid_alive(pid)


def test_a_prometheus_without_kubernetes_sd_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "prometheus"  # says what Debian's build says about kubernetes_sd_configs
    fake.write_text(
        "#!/bin/sh\necho 'err=\"parsing YAML file: field kubernetes_sd_configs not found in type config.ScrapeConfig\"'\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("BATCHPILOT_PROMETHEUS", str(fake))
    cfg = render_config(API_UNUSED, "ca", "crt", "key", 5.0, [])
    with pytest.raises(PrometheusError, match="no Kubernetes service discovery.*make prometheus"):
        PrometheusServer(tmp_path / "run", cfg).start(timeout=10)


def test_prometheus_dies_with_its_parent(prometheus_binary: Path, tmp_path: Path) -> None:
    code = (
        "import sys, time\nfrom pathlib import Path\n"
        "from batchpilot_sandbox.cluster.prometheus import PrometheusServer\n"
        f"s = PrometheusServer(Path({str(tmp_path)!r}), {static_only([])!r})\n"
        "s.start()\nprint(s.proc.pid, flush=True)\ntime.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert pid_alive(pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        wait_for("prometheus to exit after its parent was killed", lambda: not pid_alive(pid), 15)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
