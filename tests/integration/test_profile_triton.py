"""`batchpilot profile --triton`: compute time per batch size measured on a real tritonserver (the wheel's, the GPU
emulator loaded: it runs each batch for the profile's time x TIME_SCALE), written as a profile the API accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import factories
from batchpilot.adapters.triton import TritonAdmin
from batchpilot.profiling.files import ProfileError
from batchpilot.profiling.measure import measure
from batchpilot_sandbox.gpu_emulator import model_files
from batchpilot_sandbox.gpu_emulator.profile_curve import ProfileCurve
from support import emulator_triton

ADDRESS = "127.0.0.205"  # clear of the sandbox kubelet's pool (127.0.0.2-200) and every other test's address
TIME_SCALE = 10.0
CONFIG = """backend: "python"
max_batch_size: 32
dynamic_batching { max_queue_delay_microseconds: 2000 }
instance_group [{ kind: KIND_CPU, count: 1 }]
"""
CURVE = ProfileCurve.from_json(model_files()["profile.json"])


def expected_ms(batch_size: int) -> float:
    return float(CURVE.latency_ms(batch_size)) * TIME_SCALE


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with emulator_triton(tmp_path_factory.mktemp("triton"), ADDRESS, CONFIG, TIME_SCALE) as url:
        yield url


def test_the_measured_curve_is_the_one_the_model_runs(triton: str) -> None:
    lines: list[str] = []
    points = measure(TritonAdmin(ADDRESS), "emulator", [1, 8, 32], repeats=5, progress=lines.append)
    print("\n".join(lines))
    assert [p.batch_size for p in points] == [1, 8, 32] and len(lines) == 3
    for p in points:
        # The emulator sleeps the profile's time; the Python backend adds a little on top.
        assert expected_ms(p.batch_size) <= p.latency_ms <= expected_ms(p.batch_size) * 1.15 + 3, (p, lines)


def test_bad_requests_are_refused_with_the_fix(triton: str) -> None:
    with pytest.raises(ProfileError, match="outside 1..32"):
        measure(TritonAdmin(ADDRESS), "emulator", [64])


def test_the_command_prints_progress_and_writes_a_patch_the_api_accepts(triton: str, tmp_path: Path) -> None:
    out = tmp_path / "patch.json"
    run = subprocess.run([sys.executable, "-m", "batchpilot", "profile", "--triton", ADDRESS, "--model", "emulator",
                          "--batch-sizes", "1,16", "--repeats", "3", "--format", "patch", "--output", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "batch    1:" in run.stderr and "batch   16:" in run.stderr and "wrote" in run.stderr, run.stderr
    profile = json.loads(out.read_text())["spec"]["model"]["profile"]
    spec = factories.service_spec(model={"profile": profile})
    assert [p.batch_size for p in spec.model.profile.points] == [1, 16]
    missing = subprocess.run([sys.executable, "-m", "batchpilot", "profile", "--triton", ADDRESS, "--model", "nope"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "nope" in missing.stderr, missing.stderr
