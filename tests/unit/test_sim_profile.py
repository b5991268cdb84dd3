"""The simulator's compute-time curve: interpolation, extrapolation, scaling, loading measured profiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchpilot.sim.profile import ComputeCurve, available_profiles, load_curve, profile_path

CURVE = ComputeCurve("test", ((2, 10.0), (4, 14.0), (8, 14.0)))


@pytest.mark.parametrize(
    ("batch_size", "want_ms"),
    [
        pytest.param(1, 10.0, id="below-first-point-costs-the-first"),
        pytest.param(2, 10.0, id="at-first-point"),
        pytest.param(3, 12.0, id="halfway-between-points"),
        pytest.param(6, 14.0, id="flat-segment"),
        pytest.param(8, 14.0, id="at-last-point"),
        pytest.param(16, 28.0, id="past-last-grows-in-proportion"),
        pytest.param(12, 21.0, id="past-last-no-batching-gain"),
    ],
)
def test_ms_interpolates_and_extrapolates(batch_size: int, want_ms: float) -> None:
    assert CURVE.ms(batch_size) == pytest.approx(want_ms, abs=1e-12)


def test_single_point_curve_is_flat_then_proportional() -> None:
    curve = ComputeCurve("one", ((4, 8.0),))
    assert [curve.ms(b) for b in (1, 4, 8)] == [8.0, 8.0, 16.0]


def test_throughput_is_requests_per_second_of_one_instance() -> None:
    assert CURVE.throughput(4) == pytest.approx(4 / 0.014)
    assert CURVE.throughput(1) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="batch size"):
        CURVE.throughput(0)


def test_scaled_multiplies_every_time_and_names_the_factor() -> None:
    heavy = CURVE.scaled(2.5)
    assert heavy.points == ((2, 25.0), (4, 35.0), (8, 35.0))
    assert heavy.name == "test*2.5"
    assert CURVE.scaled(1.0) is CURVE
    with pytest.raises(ValueError, match="factor"):
        CURVE.scaled(0.0)


@pytest.mark.parametrize(
    "points",
    [
        pytest.param((), id="empty"),
        pytest.param(((4, 1.0), (2, 1.0)), id="unsorted"),
        pytest.param(((2, 1.0), (2, 3.0)), id="repeated-size"),
        pytest.param(((0, 1.0),), id="size-zero"),
        pytest.param(((1, 0.0),), id="zero-ms"),
    ],
)
def test_invalid_points_are_refused(points: tuple[tuple[int, float], ...]) -> None:
    with pytest.raises(ValueError, match="compute curve 'bad'"):
        ComputeCurve("bad", points)


def test_load_curve_by_name_reads_the_measured_profile() -> None:
    curve = load_curve("h100-resnet50-fp16")
    assert curve.name == "h100-resnet50-fp16"
    assert curve.ms(1) == pytest.approx(4.742)
    assert curve.ms(8) == pytest.approx(4.326)
    assert curve.ms(512) == pytest.approx(26.929 * 2)
    assert load_curve("h100-bert-base-seq128-fp16").ms(128) == pytest.approx(6.738)


def test_load_curve_time_scale_multiplies() -> None:
    assert load_curve("h100-resnet50-fp16", time_scale=10).ms(1) == pytest.approx(47.42)


def test_load_curve_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps({"points": [{"batch_size": 4, "latency_ms": 6}, {"batch_size": 1, "latency_ms": 3}]})
    )
    curve = load_curve(str(path))
    assert (curve.name, curve.points) == ("mine", ((1, 3.0), (4, 6.0)))


def test_missing_profile_names_it() -> None:
    with pytest.raises(FileNotFoundError, match="no-such-gpu"):
        load_curve("no-such-gpu")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param('{"model": "x"}', id="no-points"),
        pytest.param('{"points": [{"batch_size": 1}]}', id="point-without-latency"),
        pytest.param('{"points": []}', id="no-point"),
        pytest.param('{"points": [{"batch_size": 1, "latency_ms": -1}]}', id="negative-latency"),
    ],
)
def test_malformed_profile_names_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="broken.json.*malformed"):
        load_curve(str(path))


point_lists = st.lists(
    st.tuples(st.integers(1, 512), st.floats(0.1, 100.0)), min_size=1, max_size=8, unique_by=lambda p: p[0]
).map(lambda ps: tuple(sorted(ps)))


@given(point_lists, st.integers(1, 1024), st.floats(0.1, 10.0))
def test_ms_stays_within_its_segment_and_scales(
    points: tuple[tuple[int, float], ...], batch_size: int, factor: float
) -> None:
    curve = ComputeCurve("p", points)
    ms = curve.ms(batch_size)
    inside = [p for p in points if p[0] <= batch_size][-1:] + [p for p in points if p[0] >= batch_size][:1]
    if len(inside) == 2:  # between (or at) measured points: never outside the segment's ends
        assert min(inside[0][1], inside[1][1]) - 1e-9 <= ms <= max(inside[0][1], inside[1][1]) + 1e-9
    assert curve.scaled(factor).ms(batch_size) == pytest.approx(ms * factor)
    assert curve.throughput(batch_size) == pytest.approx(batch_size * 1000 / ms)


@pytest.mark.parametrize("name", available_profiles())
def test_every_shipped_profile_loads_and_batching_pays(name: str) -> None:
    """Each profile in sim/profiles names its accelerator and a measurement, and is a real GPU curve: a batch of
    32 serves at least 4x the requests per second of a batch of 1 (launch-bound eager curves: 35x; kernel time on an
    H200: 8x), and time per request never rises with the batch."""
    curve = load_curve(name)
    profile = json.loads(profile_path(name).read_text())
    assert profile["accelerator"].startswith("nvidia-") and "Measured 2026-" in profile["description"]
    assert 32 / curve.ms(32) >= 4 * (1 / curve.ms(1))
    sizes = [p["batch_size"] for p in profile["points"]]
    per_request = [curve.ms(b) / b for b in sizes]
    assert all(later <= earlier * 1.05 for earlier, later in zip(per_request, per_request[1:], strict=False))


def test_the_h200_kernel_curve_is_the_measured_one() -> None:
    curve = load_curve("h200-resnet50-fp16-kernels")
    assert curve.ms(1) == pytest.approx(0.902) and curve.ms(32) == pytest.approx(3.598)
    assert curve.ms(256) == pytest.approx(23.663)


CONTENDED = ComputeCurve("c", ((1, 10.0), (32, 40.0)), contention=((1, 0.2), (8, 0.6), (32, 0.9)))


@pytest.mark.parametrize(
    ("batch_size", "want"),
    [
        pytest.param(1, 0.2, id="at-first-size"),
        pytest.param(4, 0.2 + 0.4 * 3 / 7, id="between-sizes"),
        pytest.param(8, 0.6, id="at-a-size"),
        pytest.param(64, 0.9, id="past-the-last-size-keeps-it"),
    ],
)
def test_contention_interpolates_between_measured_sizes(batch_size: int, want: float) -> None:
    assert CONTENDED.contention_at(batch_size) == pytest.approx(want)
    assert CONTENDED.scaled(10.0).contention_at(batch_size) == pytest.approx(want)  # a ratio: the same at any speed


def test_a_curve_without_contention_takes_the_default() -> None:
    assert CURVE.contention_at(4) == 1.0 and CURVE.contention_at(4, default=0.5) == 0.5


@pytest.mark.parametrize(
    "contention",
    [((1, -0.1),), ((4, 0.5), (2, 0.5)), ((0, 0.5),)],
    ids=["negative", "unsorted", "size-zero"],
)
def test_invalid_contention_is_refused(contention: tuple[tuple[int, float], ...]) -> None:
    with pytest.raises(ValueError, match="contention"):
        ComputeCurve("bad", ((1, 1.0),), contention=contention)


def test_malformed_contention_in_a_profile_names_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"points": [{"batch_size": 1, "latency_ms": 1}], "contention": [{"batch_size": 1}]}')
    with pytest.raises(ValueError, match="broken.json.*malformed.*coefficient"):
        load_curve(str(path))


def test_the_h200_curves_carry_the_measured_contention_and_the_h100_ones_none() -> None:
    """bench/measurements/h200-2026-12-04.json: ResNet-50's instances slow each other little at a batch of 1 (k=2:
    0.287, k=4: 0.239) and nearly take turns at 32 (0.845, 0.880); the fit weighs k=4 9x."""
    resnet = load_curve("h200-resnet50-fp16-kernels", 10.0)
    assert resnet.contention_at(1) == pytest.approx((0.287 + 9 * 0.239) / 10, abs=1e-3)
    assert resnet.contention_at(32) == pytest.approx((0.845 + 9 * 0.880) / 10, abs=1e-3)
    assert load_curve("h200-bert-base-seq128-fp16-kernels").contention_at(1) < 0.35
    assert load_curve("h100-resnet50-fp16").contention == ()
