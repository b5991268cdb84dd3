"""Seeded synthetic traces (batchpilot.sim.traces) and the Azure Functions trace loaders (trace_formats)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpilot.sim.trace_formats import TraceFormatError, load_azure_2019, load_azure_2021
from batchpilot.sim.traces import (
    DIURNAL_MEAN,
    TRACES,
    diurnal,
    diurnal_shape,
    from_rate,
    gamma,
    mmpp,
    mmpp_path,
    ramp_spike_rate,
    step,
    with_warmup,
)
from batchpilot.sim.types import Trace

SCALE = 50.0
"""requests/s for the registry tests: 180,000 arrivals an hour, so Poisson noise is about 0.2%."""


def assert_well_formed(trace: Trace) -> None:
    a = trace.arrivals
    assert a.dtype == np.float64
    assert np.all(np.diff(a) >= 0), "arrivals must be sorted"
    assert a.size == 0 or (a[0] >= 0 and a[-1] < trace.duration_s)


def within_sd(count: int, expected: float, sds: float = 5.0) -> bool:
    """A Poisson count within `sds` standard deviations of its mean."""
    return abs(count - expected) <= sds * math.sqrt(max(expected, 1.0))


# --- the registry -------------------------------------------------------------------------------------------

MEAN_LOAD = [  # name, expected arrivals per second over SCALE, relative tolerance (burstier shapes vary more)
    pytest.param("step", 1.0, 0.02, id="step"),
    pytest.param("ramp-spike", 0.6 * 20 / 60 + 40 / 60 + 0.8 * 20 / 3600, 0.02, id="ramp-spike"),
    pytest.param("diurnal", 1.0, 0.02, id="diurnal"),
    pytest.param("gamma-cv1", 1.0, 0.02, id="gamma-cv1"),
    pytest.param("gamma-cv2", 1.0, 0.05, id="gamma-cv2"),
    pytest.param("gamma-cv4", 1.0, 0.1, id="gamma-cv4"),
    pytest.param("gamma-cv8", 1.0, 0.2, id="gamma-cv8"),
    pytest.param("mmpp", 1.0, 0.35, id="mmpp"),
]


def test_registry_has_the_standard_shapes() -> None:
    assert set(TRACES) == {"step", "ramp-spike", "diurnal", "gamma-cv1", "gamma-cv2", "gamma-cv4",
                           "gamma-cv8", "mmpp"}


@pytest.mark.parametrize(("name", "mean", "tolerance"), MEAN_LOAD)
def test_standard_shape_offers_its_scale(name: str, mean: float, tolerance: float) -> None:
    trace = TRACES[name](SCALE, 7)
    assert trace.name == name and trace.seed == 7
    assert 30 * 60 <= trace.duration_s <= (2 * 3600 if name == "diurnal" else 3600)
    assert_well_formed(trace)
    assert trace.arrivals.size / trace.duration_s / SCALE == pytest.approx(mean, rel=tolerance)


@pytest.mark.parametrize("name", sorted(TRACES))
def test_standard_shape_is_deterministic_per_seed(name: str) -> None:
    first, again, other = TRACES[name](2.0, 1), TRACES[name](2.0, 1), TRACES[name](2.0, 2)
    np.testing.assert_array_equal(first.arrivals, again.arrivals)
    assert not np.array_equal(first.arrivals, other.arrivals)


# --- from_rate, the one Poisson sampler ---------------------------------------------------------------------

def test_from_rate_puts_arrivals_only_where_the_rate_is() -> None:
    trace = from_rate([0.0, 200.0, 0.0, 0.0], 4.0, seed=3)
    assert trace.arrivals.size > 0 and np.all((trace.arrivals >= 1.0) & (trace.arrivals < 2.0))


def test_from_rate_takes_a_function_of_time_on_bin_midpoints() -> None:
    trace = from_rate(lambda t: np.where(t < 50, 100.0, 0.0), 100.0, seed=4, bin_s=10.0)
    assert within_sd(trace.arrivals.size, 100.0 * 50)
    assert trace.arrivals.max() < 50.0


def test_from_rate_last_bin_may_be_short() -> None:
    trace = from_rate([100.0, 100.0, 100.0], 2.5, seed=5)
    assert_well_formed(trace)
    assert within_sd(int(np.count_nonzero(trace.arrivals >= 2.0)), 50.0)


@pytest.mark.parametrize(("rate", "duration", "message"), [
    pytest.param([1.0, 2.0], 3.0, "3 per-bin rates", id="too-few-bins"),
    pytest.param([1.0, -2.0], 2.0, ">= 0", id="negative"),
    pytest.param([1.0, math.nan], 2.0, "finite", id="nan"),
    pytest.param([1.0], 0.0, "duration_s", id="no-duration"),
])
def test_from_rate_rejects(rate: list[float], duration: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_rate(rate, duration, seed=0)


@settings(max_examples=40, deadline=None)
@given(rates=st.lists(st.sampled_from([0.0, 0.5, 3.0, 40.0]), min_size=1, max_size=12),
       bin_s=st.sampled_from([0.25, 1.0, 7.0]), seed=st.integers(0, 2**32 - 1))
def test_from_rate_arrivals_are_sorted_inside_their_bins(rates: list[float], bin_s: float, seed: int) -> None:
    trace = from_rate(rates, len(rates) * bin_s, seed, bin_s=bin_s)
    again = from_rate(rates, len(rates) * bin_s, seed, bin_s=bin_s)
    assert_well_formed(trace)
    bins = np.floor(trace.arrivals / bin_s).astype(int)
    assert all(rates[b] > 0 for b in bins), "an arrival in a bin of rate 0"
    np.testing.assert_array_equal(trace.arrivals, again.arrivals)


# --- shapes -------------------------------------------------------------------------------------------------

def test_step_changes_rate_exactly_at_its_time() -> None:
    trace = step(10.0, 40.0, 100.5, 300.0, seed=8)
    assert within_sd(int(np.count_nonzero(trace.arrivals < 100.5)), 10.0 * 100.5)
    assert within_sd(int(np.count_nonzero(trace.arrivals >= 100.5)), 40.0 * 199.5)


def test_step_rejects_a_time_outside_the_trace() -> None:
    with pytest.raises(ValueError, match="at_s"):
        step(1.0, 2.0, 400.0, 300.0, seed=0)


# base 10, plateau 20, ramps of 100 s, a 20 s spike at 1.8x from 500 s, 1000 s long
RAMP_SPIKE_POINTS = [
    pytest.param(0.0, 10.0, id="start-at-base"),
    pytest.param(50.0, 15.0, id="half-way-up"),
    pytest.param(300.0, 20.0, id="plateau"),
    pytest.param(500.0, 36.0, id="spike-starts"),
    pytest.param(519.9, 36.0, id="spike-holds"),
    pytest.param(520.0, 20.0, id="spike-over"),
    pytest.param(950.0, 15.0, id="half-way-down"),
]


@pytest.mark.parametrize(("t", "rate"), RAMP_SPIKE_POINTS)
def test_ramp_spike_rate(t: float, rate: float) -> None:
    fn = ramp_spike_rate(10.0, 20.0, 100.0, 1.8, 500.0, 20.0, 1000.0)
    assert float(np.asarray(fn(np.array([t])))[0]) == pytest.approx(rate)


def test_diurnal_shape_has_a_night_trough_and_an_evening_peak() -> None:
    hours = np.arange(0, 24, 1 / 60)
    shape = diurnal_shape(hours / 24)
    assert shape.min() == pytest.approx(0.0, abs=1e-3) and shape.max() == pytest.approx(1.0, abs=1e-3)
    assert 3 <= hours[np.argmin(shape)] <= 5 and 19 <= hours[np.argmax(shape)] <= 21
    assert shape[hours == 12][0] > shape[hours == 8][0], "the morning rises"
    np.testing.assert_allclose(diurnal_shape(hours / 24 + 1.0), shape, atol=1e-12)  # periodic
    assert float(np.mean(shape)) == pytest.approx(DIURNAL_MEAN, abs=1e-3)


def test_diurnal_follows_its_shape() -> None:
    trace = diurnal(10.0, 110.0, day_s=2400.0, duration_s=2400.0, seed=9)
    hour_s = 100.0  # a 2400 s day
    night = np.count_nonzero((trace.arrivals >= 3.5 * hour_s) & (trace.arrivals < 4.5 * hour_s))
    evening = np.count_nonzero((trace.arrivals >= 19.5 * hour_s) & (trace.arrivals < 20.5 * hour_s))
    assert evening > 8 * night  # about 110 vs 10 requests/s


@pytest.mark.parametrize("cv", [pytest.param(cv, id=f"cv{cv:g}") for cv in (1.0, 2.0, 4.0, 8.0)])
def test_gamma_inter_arrivals_have_the_mean_and_cv(cv: float) -> None:
    trace = gamma(rate=1000.0, cv=cv, duration_s=1000.0, seed=10)
    gaps = np.diff(trace.arrivals)
    assert trace.name == f"gamma-cv{cv:g}"
    assert_well_formed(trace)
    assert float(np.mean(gaps)) == pytest.approx(1e-3, rel=0.1)
    assert float(np.std(gaps) / np.mean(gaps)) == pytest.approx(cv, rel=0.1)


def test_mmpp_path_alternates_levels_and_covers_the_trace() -> None:
    edges, levels = mmpp_path([1.0, 5.0, 9.0], 10.0, 10_000.0, np.random.default_rng(11))
    assert edges[0] == 0.0 and edges[-1] == 10_000.0 and np.all(np.diff(edges) > 0)
    assert levels[0] == 1.0 and np.all(levels[1:] != levels[:-1]), "starts at the base, always jumps away"
    assert len(levels) == pytest.approx(1000, rel=0.15)  # mean dwell 10 s


def test_mmpp_time_in_each_level_follows_the_dwell_times() -> None:
    edges, levels = mmpp_path([1.0, 4.0], [300.0, 60.0], 1_000_000.0, np.random.default_rng(12))
    crowd = float(np.sum(np.diff(edges)[levels == 4.0])) / 1_000_000.0
    assert crowd == pytest.approx(60 / 360, rel=0.1)


def test_mmpp_arrivals_follow_its_path() -> None:
    rng = np.random.default_rng(13)
    edges, levels = mmpp_path([2.0, 50.0], 30.0, 3600.0, rng)  # mmpp draws its path first from the same seed
    trace = mmpp([2.0, 50.0], 30.0, 3600.0, seed=13)
    assert_well_formed(trace)
    assert within_sd(trace.arrivals.size, float(np.sum(levels * np.diff(edges))))


# --- Azure Functions 2019: per-minute counts ----------------------------------------------------------------

HEADER_2019 = "HashOwner,HashApp,HashFunction,Trigger,1,2,3"


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def azure_2019(tmp_path: Path) -> Path:
    return write(tmp_path, "invocations_per_function_md.anon.d01.csv", [
        HEADER_2019,
        "o1,a1,f-alpha,http,3,0,5",
        "o1,a1,f-beta,timer,1,1,1",
        "o2,a2,f-alpha,queue,2,0,0",  # the same HashFunction again: summed
    ])


def per_minute(trace: Trace) -> list[int]:
    return np.histogram(trace.arrivals, bins=np.arange(0.0, trace.duration_s + 60.0, 60.0))[0].tolist()


@pytest.mark.parametrize(("function", "kwargs", "counts"), [
    pytest.param("f-alpha", {}, [5, 0, 5], id="one-function-rows-summed"),
    pytest.param("f-beta", {}, [1, 1, 1], id="other-function"),
    pytest.param(None, {}, [6, 1, 6], id="all-rows"),
    pytest.param(None, {"minutes": 2}, [6, 1], id="first-minutes"),
    pytest.param("f-beta", {"scale": 3.0}, [3, 3, 3], id="whole-scale"),
])
def test_azure_2019_counts_per_minute(azure_2019: Path, function: str | None, kwargs: dict[str, Any],
                                      counts: list[int]) -> None:
    trace = load_azure_2019(azure_2019, function, **kwargs)
    assert_well_formed(trace)
    assert trace.duration_s == 60.0 * len(counts)
    assert per_minute(trace) == counts


def test_azure_2019_fractional_scale_rounds_each_minute_at_random(azure_2019: Path) -> None:
    counts = per_minute(load_azure_2019(azure_2019, "f-alpha", scale=0.5, seed=1))
    assert counts[0] in (2, 3) and counts[1] == 0 and counts[2] in (2, 3)


def test_azure_2019_is_deterministic_per_seed(azure_2019: Path) -> None:
    a, b = load_azure_2019(azure_2019, seed=4), load_azure_2019(azure_2019, seed=4)
    np.testing.assert_array_equal(a.arrivals, b.arrivals)
    assert not np.array_equal(a.arrivals, load_azure_2019(azure_2019, seed=5).arrivals)


@pytest.mark.parametrize(("lines", "function", "fragments"), [
    pytest.param(["HashOwner,HashApp,Trigger,1,2"], None, ["line 1", "missing column(s) HashFunction"],
                 id="missing-column"),
    pytest.param(["HashOwner,HashApp,HashFunction,Trigger,1,3"], None, ["line 1", "1,2,...,N"],
                 id="minutes-not-consecutive"),
    pytest.param([HEADER_2019, "o,a,f,http,1,2,3", "o,a,g,http,1,x,3"], None,
                 ["line 3", "minute column 2", "'x'", "whole number"], id="not-a-number"),
    pytest.param([HEADER_2019, "o,a,f,http,1,-2,3"], None, ["line 2", "minute column 2", "'-2'"],
                 id="negative"),
    pytest.param([HEADER_2019, "o,a,f,http,1,2.5,3"], None, ["line 2", "minute column 2"], id="fraction"),
    pytest.param([HEADER_2019, "o,a,f,http,1,2"], None, ["line 2", "6 fields, expected 7"], id="short-row"),
    pytest.param([HEADER_2019, "o,a,f1,http,1,2,3", "o,a,f2,http,1,2,3"], "nope",
                 ["HashFunction 'nope'", "2 distinct", "f1, f2"], id="function-not-found"),
])
def test_azure_2019_errors_say_where_and_what(tmp_path: Path, lines: list[str], function: str | None,
                                              fragments: list[str]) -> None:
    path = write(tmp_path, "d01.csv", lines)
    with pytest.raises(TraceFormatError) as error:
        load_azure_2019(path, function)
    for fragment in [str(path), *fragments]:
        assert fragment in str(error.value)


def test_missing_file_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="AzurePublicDataset"):
        load_azure_2019(tmp_path / "absent.csv")


# --- Azure Functions 2021: per-request timestamps -----------------------------------------------------------

@pytest.fixture
def azure_2021(tmp_path: Path) -> Path:
    return write(tmp_path, "AzureFunctionsInvocationTraceForTwoWeeksJan2021.txt", [
        "app,func,end_timestamp,duration",
        "a1,f1,10.5,0.5",   # arrives 10.0
        "a1,f2,12.0,4.0",   # arrives 8.0: the file is ordered by end, not arrival
        "a2,f3,13.0,1.0",   # arrives 12.0
        "a1,f1,31.0,0.0",   # arrives 31.0
    ])


@pytest.mark.parametrize(("kwargs", "arrivals", "duration"), [
    pytest.param({}, [0.0, 2.0, 4.0, 23.0], 24.0, id="all-from-first-arrival"),
    pytest.param({"app": "a1"}, [0.0, 2.0, 23.0], 24.0, id="one-app"),
    pytest.param({"app": "a1", "func": "f1"}, [0.0, 21.0], 22.0, id="one-function"),
    pytest.param({"func": "f3"}, [0.0], 1.0, id="function-alone"),
    pytest.param({"speedup": 2.0}, [0.0, 1.0, 2.0, 11.5], 12.0, id="twice-as-fast"),
    pytest.param({"start_s": 9.0, "duration_s": 4.0}, [1.0, 3.0], 4.0, id="window"),
    pytest.param({"start_s": 0.0, "duration_s": 40.0, "speedup": 4.0}, [2.0, 2.5, 3.0, 7.75], 10.0,
                 id="window-sped-up"),
])
def test_azure_2021_arrivals(azure_2021: Path, kwargs: dict[str, Any], arrivals: list[float],
                             duration: float) -> None:
    trace = load_azure_2021(azure_2021, **kwargs)
    assert_well_formed(trace)
    np.testing.assert_allclose(trace.arrivals, arrivals)
    assert trace.duration_s == duration


@pytest.mark.parametrize(("lines", "kwargs", "fragments"), [
    pytest.param(["app,func,end_timestamp", "a,f,1"], {}, ["line 1", "missing column(s) duration"],
                 id="missing-column"),
    pytest.param(["app,func,end_timestamp,duration", "a,f,1,0", "a,f,soon,0"], {},
                 ["line 3", "end_timestamp", "'soon'"], id="bad-time"),
    pytest.param(["app,func,end_timestamp,duration", "a,f,5,-1"], {}, ["line 2", "duration", ">= 0"],
                 id="negative-duration"),
    pytest.param(["app,func,end_timestamp,duration", "a,f,5"], {}, ["line 2", "3 fields, expected 4"],
                 id="short-row"),
    pytest.param(["app,func,end_timestamp,duration", "a1,f1,5,1", "a2,f2,6,1"], {"app": "zz"},
                 ["app/func 'zz/*'", "a1/f1, a2/f2"], id="not-found"),
    pytest.param(["app,func,end_timestamp,duration", "a1,f1,5,1"], {"start_s": 100.0},
                 ["arrives in [100.0", "from 4.0 to 4.0"], id="empty-window"),
])
def test_azure_2021_errors_say_where_and_what(tmp_path: Path, lines: list[str], kwargs: dict[str, Any],
                                              fragments: list[str]) -> None:
    path = write(tmp_path, "trace2021.txt", lines)
    with pytest.raises(TraceFormatError) as error:
        load_azure_2021(path, **kwargs)
    for fragment in [str(path), *fragments]:
        assert fragment in str(error.value)


def test_a_warm_up_runs_the_first_minute_load_before_the_trace() -> None:
    trace = step(50.0, 200.0, 600.0, 1800.0, seed=3)
    warm = with_warmup(trace, 900.0)
    before = int(np.count_nonzero(warm.arrivals < 900.0))
    assert (warm.duration_s, warm.warmup_s, warm.name, warm.seed) == (2700.0, 900.0, "step", 3)
    np.testing.assert_array_equal(warm.arrivals[before:], trace.arrivals + 900.0)
    assert np.all(np.diff(warm.arrivals) >= 0) and warm.arrivals[0] >= 0.0
    first_minute = np.count_nonzero(trace.arrivals < 60.0) / 60.0
    assert before == pytest.approx(900.0 * first_minute, abs=5 * math.sqrt(900.0 * first_minute))
    np.testing.assert_array_equal(with_warmup(trace, 900.0).arrivals, warm.arrivals)  # seeded
    assert with_warmup(trace, 0.0) is trace


@pytest.mark.parametrize("warmup_s", [-1.0, math.inf, math.nan])
def test_a_warm_up_needs_a_finite_length(warmup_s: float) -> None:
    with pytest.raises(ValueError, match="warmup_s must be finite and >= 0"):
        with_warmup(step(50.0, 200.0, 600.0, 1800.0, seed=3), warmup_s)
