"""The GPU emulator's compute-time curve: interpolation, extrapolation, time_scale, and its model files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchpilot.sim.profile import available_profiles
from batchpilot_sandbox.gpu_emulator import model_configmap, model_files
from batchpilot_sandbox.gpu_emulator.profile_curve import (
    EmulatorSettings,
    ProfileCurve,
    batch_seconds,
    load_settings,
)

CURVE = ProfileCurve.from_points(
    [
        {"batch_size": 4, "latency_ms": 6.0},
        {"batch_size": 1, "latency_ms": 3.0},
        {"batch_size": 8, "latency_ms": 10.0},
    ]
)


@pytest.mark.parametrize(
    ("batch_size", "expected_ms"),
    [
        (1, 3.0),  # measured points are returned as-is
        (4, 6.0),
        (8, 10.0),
        (2, 4.0),  # between 1 and 4: 3 + (6-3)/3
        (6, 8.0),  # between 4 and 8: 6 + 4/4*2
        (12, 14.0),  # past the last point: slope of the last segment (1 ms per item)
        (16, 18.0),
    ],
)
def test_latency_interpolates_and_extrapolates(batch_size: int, expected_ms: float) -> None:
    assert CURVE.latency_ms(batch_size) == pytest.approx(expected_ms)


def test_extrapolation_below_first_point_never_negative() -> None:
    falling = ProfileCurve.from_points(
        [{"batch_size": 1, "latency_ms": 1.0}, {"batch_size": 2, "latency_ms": 0.1}]
    )
    assert falling.latency_ms(5) == 0.0


def test_single_point_profile_is_flat() -> None:
    flat = ProfileCurve.from_points([{"batch_size": 1, "latency_ms": 2.5}])
    assert flat.latency_ms(1) == flat.latency_ms(64) == 2.5


@pytest.mark.parametrize(
    "points", [[], [{"batch_size": 0, "latency_ms": 1}], [{"batch_size": 2, "latency_ms": 1}] * 2]
)
def test_bad_profiles_are_rejected(points: list[dict[str, float]]) -> None:
    with pytest.raises(ValueError, match="batch_size|no points"):
        ProfileCurve.from_points(points)


def test_time_scale_multiplies_batch_time(tmp_path: Path) -> None:
    assert batch_seconds(CURVE, 2, 1.0) == pytest.approx(0.004)
    assert batch_seconds(CURVE, 2, 10.0) == pytest.approx(0.040)
    assert load_settings(tmp_path) == EmulatorSettings(1.0, 0.0)
    (tmp_path / "emulator.json").write_text(json.dumps({"time_scale": 2.5}))
    assert load_settings(tmp_path) == EmulatorSettings(2.5, 0.0)
    (tmp_path / "emulator.json").write_text(json.dumps({"time_scale": 2.5, "overlap": 0.8}))
    assert load_settings(tmp_path).overlap == 0.8
    (tmp_path / "emulator.json").write_text(json.dumps({"overlap": 1.5}))
    with pytest.raises(ValueError, match="overlap must be within 0..1"):
        load_settings(tmp_path)
    (tmp_path / "emulator.json").write_text(json.dumps({"load_s": 3}))
    assert load_settings(tmp_path) == EmulatorSettings(1.0, 0.0, 3.0)
    (tmp_path / "emulator.json").write_text(json.dumps({"load_s": -1}))
    with pytest.raises(ValueError, match="load_s must be >= 0"):
        load_settings(tmp_path)


def test_shipped_resnet_profile_matches_measurements() -> None:
    files = model_files("h100-resnet50-fp16", time_scale=3.0)
    curve = ProfileCurve.from_json(files["profile.json"])
    assert curve.latency_ms(64) == pytest.approx(7.688)
    assert curve.latency_ms(192) == pytest.approx((14.401 + 26.929) / 2)  # halfway between 128 and 256
    assert curve.latency_ms(512) > curve.latency_ms(256)
    assert json.loads(files["emulator.json"]) == {"time_scale": 3.0, "overlap": 0.0, "load_s": 0.0}
    assert set(files) == {"model.py", "profile_curve.py", "profile.json", "emulator.json"}


def test_model_configmap_carries_model_files() -> None:
    cm = model_configmap("emu", "ns1", profile="h100-bert-base-seq128-fp16", time_scale=0.5)
    assert cm["kind"] == "ConfigMap" and cm["metadata"] == {
        **cm["metadata"],
        "name": "emu",
        "namespace": "ns1",
    }
    assert cm["data"] == model_files("h100-bert-base-seq128-fp16", 0.5)
    assert "h100-resnet50-fp16" in available_profiles()


def test_unknown_profile_names_the_choices() -> None:
    with pytest.raises(FileNotFoundError, match="h100-resnet50-fp16"):
        model_files("a100-nope")
