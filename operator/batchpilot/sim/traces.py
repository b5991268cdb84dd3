"""Seeded synthetic workloads: the arrival times of every request, as a `Trace`.

Every generator is a pure function of its arguments: the same seed gives the same arrivals (numpy's PCG64
`default_rng(seed)`). The Poisson-based ones (step, ramp+spike, diurnal, MMPP) only describe a rate that is
constant between breakpoints and hand it to `_poisson_arrivals`, the one place arrivals are drawn: a Poisson
count per piece, then that many uniform times inside it (a Poisson process given its count), all vectorized,
so a few million arrivals take a fraction of a second. `gamma` is a renewal process instead (a Gamma
inter-arrival time of a chosen coefficient of variation), drawn as a cumulative sum.

`TRACES` names the benchmark's standard shapes, each a function of one load scale (requests/s) and the seed,
built so that every shape offers about that mean load and results compare across shapes.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from batchpilot.sim.types import FloatArray, Trace

RateFn = Callable[[FloatArray], "FloatArray | float"]
"""A rate in requests/s as a function of time in seconds, evaluated on an array of times."""

DIURNAL_GRID = 10_000
"""Points over one day on which the diurnal shape is normalized (its maximum and mean): fine enough that the
normalization error is far below the Poisson noise of any trace."""
GAMMA_CHUNK_MARGIN = 1.2
"""Draw 20% more inter-arrival times than the expected count per chunk: one chunk almost always suffices."""


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _check_rates(rates: FloatArray, what: str) -> None:
    if not np.all(np.isfinite(rates)) or np.any(rates < 0):
        raise ValueError(f"{what}: rates must be finite and >= 0 requests/s, got min {np.min(rates)!r}")


def _poisson_arrivals(edges: FloatArray, rates: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Non-homogeneous Poisson arrivals for a rate that is `rates[i]` on [edges[i], edges[i+1]).

    Sorted, every arrival in [edges[0], edges[-1]).
    """
    widths = np.diff(edges)
    counts = rng.poisson(rates * widths)
    starts = np.repeat(edges[:-1], counts)
    arrivals = np.sort(starts + rng.random(starts.size) * np.repeat(widths, counts))
    # start + u * width can round up to the piece's end; keep every arrival strictly inside the trace
    return np.minimum(arrivals, np.nextafter(edges[-1], -np.inf))


def _bin_edges(duration_s: float, bin_s: float) -> FloatArray:
    if duration_s <= 0 or bin_s <= 0:
        raise ValueError(f"duration_s and bin_s must be > 0, got {duration_s!r} and {bin_s!r}")
    n = math.ceil(duration_s / bin_s - 1e-9)
    return np.minimum(np.arange(n + 1) * bin_s, duration_s).astype(np.float64)


def from_rate(rate: RateFn | npt.ArrayLike, duration_s: float, seed: int, *, bin_s: float = 1.0,
              name: str = "from-rate") -> Trace:
    """Poisson arrivals at a rate that is constant over each `bin_s` bin (the last bin may be shorter).

    `rate` is either the per-bin rates (one per bin, ceil(duration_s / bin_s) of them) or a function of time,
    called once with the array of bin midpoints (it must accept an array, e.g. `lambda t: 5 + 0 * t`).
    """
    edges = _bin_edges(duration_s, bin_s)
    if callable(rate):
        mids = (edges[:-1] + edges[1:]) / 2
        rates = np.broadcast_to(np.asarray(rate(mids), dtype=np.float64), mids.shape)
    else:
        rates = np.asarray(rate, dtype=np.float64)
        if rates.shape != (edges.size - 1,):
            raise ValueError(f"{name}: {edges.size - 1} per-bin rates needed for {duration_s} s in bins of "
                             f"{bin_s} s, got shape {rates.shape}")
    _check_rates(rates, name)
    return Trace(name=name, arrivals=_poisson_arrivals(edges, rates, _rng(seed)), duration_s=duration_s,
                 seed=seed)


def with_warmup(trace: Trace, warmup_s: float) -> Trace:
    """`trace` after `warmup_s` seconds of Poisson arrivals at its first minute's mean rate, drawn from a
    stream of their own (the trace's arrivals are the same, shifted).

    A run starts with the replicas the first minute needs at full measured capacity, the same for every policy;
    after a warm-up each policy meets the trace in its own steady state for that load instead (the count its
    target keeps, its windows filled), as a service that has been running would. The engine measures only
    what comes after the warm-up (Trace.warmup_s).
    """
    if not (math.isfinite(warmup_s) and warmup_s >= 0):
        raise ValueError(f"warmup_s must be finite and >= 0 seconds, got {warmup_s!r}")
    if warmup_s == 0:
        return trace
    first = min(60.0, trace.duration_s)
    rate = np.array([np.count_nonzero(trace.arrivals < first) / first])
    warm = _poisson_arrivals(np.array([0.0, warmup_s]), rate, np.random.default_rng([trace.seed, WARMUP_STREAM]))
    return replace(trace, arrivals=np.concatenate([warm, trace.arrivals + warmup_s]),
                   duration_s=trace.duration_s + warmup_s, warmup_s=trace.warmup_s + warmup_s)


WARMUP_STREAM = zlib.crc32(b"warmup")
"""with_warmup's random stream, apart from the trace's own."""


def step(base: float, peak: float, at_s: float, duration_s: float, seed: int) -> Trace:
    """Poisson at `base` requests/s, then at `peak` from `at_s` on (the breakpoint is exact, not binned)."""
    if not 0 < at_s < duration_s:
        raise ValueError(f"step: at_s must be inside (0, {duration_s}), got {at_s!r}")
    edges = np.array([0.0, at_s, duration_s])
    rates = np.array([base, peak], dtype=np.float64)
    _check_rates(rates, "step")
    return Trace(name="step", arrivals=_poisson_arrivals(edges, rates, _rng(seed)), duration_s=duration_s,
                 seed=seed)


def ramp_spike_rate(base: float, plateau: float, ramp_s: float, spike_factor: float, spike_at_s: float,
                    spike_s: float, duration_s: float) -> RateFn:
    """The rate of `ramp_spike`: linear base -> plateau over the first ramp_s, the plateau with a spike to
    spike_factor x plateau on [spike_at_s, spike_at_s + spike_s), linear plateau -> base over the last
    ramp_s."""
    if ramp_s < 0 or 2 * ramp_s > duration_s:
        raise ValueError(f"ramp-spike: need 0 <= 2 * ramp_s <= duration_s, got ramp_s {ramp_s!r}, "
                         f"duration_s {duration_s!r}")

    def rate(t: FloatArray) -> FloatArray:
        up = np.clip(t / ramp_s, 0.0, 1.0) if ramp_s > 0 else np.ones_like(t)
        down = np.clip((duration_s - t) / ramp_s, 0.0, 1.0) if ramp_s > 0 else np.ones_like(t)
        level = base + (plateau - base) * np.minimum(up, down)
        spiking = (t >= spike_at_s) & (t < spike_at_s + spike_s)
        return np.where(spiking, spike_factor * plateau, level)

    return rate


def ramp_spike(base: float, plateau: float, ramp_s: float, spike_factor: float, spike_at_s: float,
               spike_s: float, duration_s: float, seed: int) -> Trace:
    """Ramp up to a plateau, a short spike (e.g. 20 s at 1.8x), back to the plateau, ramp down (1 s bins)."""
    rate = ramp_spike_rate(base, plateau, ramp_s, spike_factor, spike_at_s, spike_s, duration_s)
    return from_rate(rate, duration_s, seed, name="ramp-spike")


def _day(phase: FloatArray) -> FloatArray:
    # a sinusoid with its trough at 04:00 and crest at 16:00 (people wake, work, come home), plus an evening
    # bump centred 20:30 (von Mises, concentration 8: spread about 1.4 h, half the sinusoid's height)
    wave = 0.5 * (1 - np.cos(2 * np.pi * (phase - 4 / 24)))
    evening = 0.5 * np.exp(8.0 * (np.cos(2 * np.pi * (phase - 20.5 / 24)) - 1))
    return wave + evening


_DAY_GRID = _day(np.linspace(0.0, 1.0, DIURNAL_GRID, endpoint=False))


def diurnal_shape(phase: FloatArray) -> FloatArray:
    """A day's load in [0, 1] against the time of day as a fraction of the day (0 = midnight).

    Scaled so the trough (04:00) is 0 and the peak (about 20:00) is 1. Worked numbers: 0.22 at midnight, 0.21
    at 08:00 (the morning rise), 0.62 at noon, 0.82 at 16:00, 1.0 at 20:00, 0.63 at 22:00; mean 0.47.
    """
    return (_day(phase) - _DAY_GRID.min()) / (_DAY_GRID.max() - _DAY_GRID.min())


DIURNAL_MEAN = float(np.mean(diurnal_shape(np.linspace(0.0, 1.0, DIURNAL_GRID, endpoint=False))))
"""Mean of `diurnal_shape` over a day: the rate of `diurnal` averages low + (high - low) * DIURNAL_MEAN."""


def diurnal(low: float, high: float, day_s: float, duration_s: float, seed: int) -> Trace:
    """A day compressed into `day_s` seconds, starting at midnight: `low` at night, a morning rise, an evening
    peak at `high` (see `diurnal_shape`); non-homogeneous Poisson on 1 s bins."""
    if day_s <= 0:
        raise ValueError(f"diurnal: day_s must be > 0, got {day_s!r}")
    return from_rate(lambda t: low + (high - low) * diurnal_shape((t / day_s) % 1.0), duration_s, seed,
                     name="diurnal")


def gamma(rate: float, cv: float, duration_s: float, seed: int) -> Trace:
    """Renewal process: Gamma inter-arrival times of mean 1/rate and coefficient of variation cv.

    Shape k = 1/cv^2 and scale 1/(rate k): cv 1 is Poisson, cv 2-8 ever burstier (many near-simultaneous
    arrivals, then long gaps; at cv 8 a few gaps hold most of the time, so the count varies a lot by seed).
    The first arrival is one inter-arrival time after 0.
    """
    if rate <= 0 or cv <= 0 or duration_s <= 0:
        raise ValueError(f"gamma: rate, cv and duration_s must be > 0, got {rate!r}, {cv!r}, {duration_s!r}")
    rng = _rng(seed)
    shape = 1.0 / cv**2
    chunks: list[FloatArray] = []
    now = 0.0
    while now < duration_s:
        size = max(1024, int(GAMMA_CHUNK_MARGIN * rate * (duration_s - now)))
        times = now + np.cumsum(rng.gamma(shape, 1.0 / (rate * shape), size))
        chunks.append(times)
        now = float(times[-1])
    arrivals = np.concatenate(chunks)
    return Trace(name=f"gamma-cv{cv:g}", arrivals=arrivals[arrivals < duration_s], duration_s=duration_s,
                 seed=seed)


def mmpp_path(rates: Sequence[float], mean_dwell_s: float | Sequence[float], duration_s: float,
              rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """The rate path of a Markov-modulated Poisson process: (edges, rate on each piece).

    Starts in level 0; stays an exponential time of mean mean_dwell_s[level] (one value for all levels, or one
    per level); then jumps to another level drawn uniformly.
    """
    levels = np.asarray(rates, dtype=np.float64)
    dwell = np.broadcast_to(np.asarray(mean_dwell_s, dtype=np.float64), levels.shape)
    if levels.size < 1 or np.any(dwell <= 0):
        raise ValueError(f"mmpp: need at least one rate and dwell times > 0, got {rates!r}, {mean_dwell_s!r}")
    _check_rates(levels, "mmpp")
    states: list[npt.NDArray[np.int64]] = []
    ends: list[FloatArray] = []
    level, now = 0, 0.0
    while now < duration_s:
        size = max(16, int(2 * duration_s / dwell.min()))  # twice the expected number of pieces or more
        jumps = rng.integers(1, levels.size, size) if levels.size > 1 else np.zeros(size, dtype=np.int64)
        chunk = (level + np.concatenate([[0], np.cumsum(jumps[:-1])])) % levels.size
        states.append(chunk)
        ends.append(now + np.cumsum(rng.exponential(dwell[chunk])))
        level, now = int((chunk[-1] + jumps[-1]) % levels.size), float(ends[-1][-1])
    state, end = np.concatenate(states), np.concatenate(ends)
    n = int(np.searchsorted(end, duration_s)) + 1  # pieces up to the one that covers duration_s
    return np.concatenate([[0.0], np.minimum(end[:n], duration_s)]), levels[state[:n]]


def mmpp(rates: Sequence[float], mean_dwell_s: float | Sequence[float], duration_s: float,
         seed: int) -> Trace:
    """Markov-modulated Poisson arrivals (flash crowds): Poisson at the current level's rate, the level a
    continuous-time Markov chain with exponential dwell times (see `mmpp_path`)."""
    rng = _rng(seed)
    edges, levels = mmpp_path(rates, mean_dwell_s, duration_s, rng)
    arrivals = _poisson_arrivals(edges, levels, rng)
    return Trace(name="mmpp", arrivals=arrivals, duration_s=duration_s, seed=seed)


HOUR_S = 3600.0
"""The standard shapes run an hour (the diurnal one two, a whole compressed day)."""


def _std_step(scale: float, seed: int) -> Trace:
    # 0.5x for 20 min, then 1.25x for 40 min: mean (0.5 * 20 + 1.25 * 40) / 60 = 1.0x
    return step(0.5 * scale, 1.25 * scale, HOUR_S / 3, HOUR_S, seed)


def _std_ramp_spike(scale: float, seed: int) -> Trace:
    # 0.2x -> 1x over 10 min, 1x with a 20 s spike at 1.8x at 30 min, down to 0.2x over the last 10 min:
    # mean (0.6 * 20 + 1.0 * 40) / 60 + 0.8 * 20 / 3600 = 0.87x
    return ramp_spike(0.2 * scale, scale, 600.0, 1.8, 1800.0, 20.0, HOUR_S, seed)


def _std_diurnal(scale: float, seed: int) -> Trace:
    # night at 0.3x, the evening peak chosen so the day averages exactly 1x (about 1.8x)
    low = 0.3 * scale
    return diurnal(low, low + (scale - low) / DIURNAL_MEAN, 2 * HOUR_S, 2 * HOUR_S, seed)


def _std_gamma(cv: float) -> Callable[[float, int], Trace]:
    def make(scale: float, seed: int) -> Trace:
        return gamma(scale, cv, HOUR_S, seed)

    return make


def _std_mmpp(scale: float, seed: int) -> Trace:
    # base 0.7x for 5 min on average, flash crowds of 2.5x for 1 min on average:
    # time-average (0.7 * 300 + 2.5 * 60) / 360 = 1.0x
    return mmpp([0.7 * scale, 2.5 * scale], [300.0, 60.0], HOUR_S, seed)


TRACES: dict[str, Callable[[float, int], Trace]] = {
    "step": _std_step,
    "ramp-spike": _std_ramp_spike,
    "diurnal": _std_diurnal,
    "gamma-cv1": _std_gamma(1.0),
    "gamma-cv2": _std_gamma(2.0),
    "gamma-cv4": _std_gamma(4.0),
    "gamma-cv8": _std_gamma(8.0),
    "mmpp": _std_mmpp,
}
"""The benchmark's standard shapes, by name (the Trace's name too); each takes (scale requests/s, seed).

- step: 0.5x for 20 min, then 1.25x for 40 min (mean 1x): a sudden load rise.
- ramp-spike: 0.2x ramping to 1x over 10 min, a 20 s spike to 1.8x at 30 min, ramp down over the last 10 min
  (mean 0.87x; the plateau is 1x).
- diurnal: a 2 h compressed day from midnight, night at 0.3x, morning rise, evening peak about 1.8x (mean 1x).
- gamma-cv1/2/4/8: 1 h renewal process at 1x with inter-arrival CV 1 (Poisson), 2, 4, 8 (ever burstier).
- mmpp: 1 h, 0.7x base with flash crowds at 2.5x (mean dwell 5 min and 1 min; time-average 1x).
"""
