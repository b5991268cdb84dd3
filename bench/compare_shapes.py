"""The load shapes of `bench.compare_real`, as rate paths turned into the load generator's schedule.

Pure: a shape is a seeded rate path (edges, rate on each piece) from the simulator's trace builders
(batchpilot/sim/traces.py), scaled to the sandbox, and becomes the load generator's phases
[(duration_s, rate)] exactly (every piece is one phase; loadgen_stats.poisson_arrivals draws Poisson arrivals
inside each). The simulator replays the very arrival times the load generator sends (`arrivals`), so the
sandbox and the simulator see the same requests, not just the same rate.

Scale: one sandbox replica serves ~89 req/s within the 200 ms SLO at the peers' static batching
(sizing.measure_capacity on the sample's curve; sample.py: "saturates near 95 requests/s"), and the sandbox's
load generator offers up to ~150-200 req/s on this machine, so SCALE_RPS = 100 req/s (about one pod's worth)
and the peaks reach 1.6x, needing 2-3 replicas of the 4 the sandbox has GPUs for.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from batchpilot.sim.traces import mmpp_path, ramp_spike_rate
from batchpilot.sim.types import FloatArray, Trace
from batchpilot_sandbox.loadgen.stats import Phase, poisson_arrivals, validate_phases

SCALE_RPS = 100.0
"""1x of every shape, requests/s: about one sandbox replica's capacity (see the module docstring)."""
RATE_BIN_S = 1.0
"""Bins of a shape given as a continuous rate (the ramp), seconds: as sim/traces.py `from_rate`."""

RatePath = tuple[FloatArray, FloatArray]
"""(edges, rates): rate[i] requests/s on [edges[i], edges[i+1]); edges start at 0."""


def phases_from_path(edges: FloatArray, rates: FloatArray) -> list[Phase]:
    """The load generator's schedule of a rate path: one phase per piece, equal neighbours merged, empty
    pieces dropped. e.g. edges [0, 30, 60, 90], rates [40, 40, 140] -> [(60, 40), (30, 140)]."""
    edges = np.asarray(edges, dtype=np.float64)
    rates = np.asarray(rates, dtype=np.float64)
    if edges.size != rates.size + 1 or edges.size < 2 or edges[0] != 0.0:
        raise ValueError(f"a rate path needs edges from 0 and one more edge than rates, got {edges.size} edges "
                         f"and {rates.size} rates")
    phases: list[Phase] = []
    for start, end, rate in zip(edges[:-1], edges[1:], rates, strict=True):
        width = float(end - start)
        if width <= 0:
            continue
        if phases and phases[-1][1] == float(rate):
            phases[-1] = (phases[-1][0] + width, float(rate))
        else:
            phases.append((width, float(rate)))
    validate_phases(phases)
    return phases


def schedule_text(phases: list[Phase]) -> str:
    """The phases as the load generator's --schedule text, e.g. "30s@40,90s@140" (rates to 0.01 req/s)."""
    return ",".join(f"{d:g}s@{r:.2f}" for d, r in phases)


def arrivals(phases: list[Phase], seed: int) -> FloatArray:
    """The arrival offsets the load generator sends for (phases, seed): run_load's own draw."""
    return np.fromiter(poisson_arrivals(phases, random.Random(seed)), dtype=np.float64)


def trace(name: str, phases: list[Phase], seed: int) -> Trace:
    """The same requests as a simulator Trace."""
    return Trace(name=name, arrivals=arrivals(phases, seed), duration_s=sum(d for d, _ in phases), seed=seed)


def _binned(rate: Callable[[FloatArray], FloatArray], duration_s: float) -> RatePath:
    edges = np.minimum(np.arange(0.0, duration_s + RATE_BIN_S, RATE_BIN_S), duration_s)
    edges = np.unique(edges)
    return edges, np.asarray(rate((edges[:-1] + edges[1:]) / 2), dtype=np.float64)


def step_path(scale: float, _seed: int, quick: bool = False) -> RatePath:
    """0.4x for 60 s, then 1.4x for 150 s (quick: 30 s, then 120 s): a sudden rise past one replica."""
    low, high = (30.0, 120.0) if quick else (60.0, 150.0)
    return np.array([0.0, low, low + high]), np.array([0.4 * scale, 1.4 * scale])


def ramp_spike_path(scale: float, _seed: int, quick: bool = False) -> RatePath:
    """0.3x ramping to 1x over 60 s, a 20 s spike to 1.6x at 120 s, ramp down over the last 60 s (240 s; quick:
    40 s ramps, the spike at 80 s, 160 s)."""
    ramp, spike_at, duration = (40.0, 80.0, 160.0) if quick else (60.0, 120.0, 240.0)
    rate = ramp_spike_rate(0.3 * scale, scale, ramp, 1.6, spike_at, 20.0, duration)
    return _binned(rate, duration)


def bursty_path(scale: float, seed: int, quick: bool = False) -> RatePath:
    """MMPP: 0.6x with bursts of 1.6x (mean dwell 60 s and 20 s) for 240 s (quick: 150 s); the path is drawn
    from the seed (sim/traces.py `mmpp_path`), so every run of one seed gets the same bursts."""
    duration = 150.0 if quick else 240.0
    return mmpp_path([0.6 * scale, 1.6 * scale], [60.0, 20.0], duration, np.random.default_rng(seed))


@dataclass(frozen=True)
class Shape:
    """One named load shape."""

    name: str
    path: Callable[[float, int, bool], RatePath]
    """(scale req/s, seed, quick) -> rate path."""

    def phases(self, seed: int, quick: bool = False, scale: float = SCALE_RPS) -> list[Phase]:
        return phases_from_path(*self.path(scale, seed, quick))


SHAPES: dict[str, Shape] = {s.name: s for s in (Shape("step", step_path), Shape("ramp-spike", ramp_spike_path),
                                                 Shape("bursty", bursty_path))}
"""The comparison's shapes by name (sim/traces.py's step, ramp-spike and mmpp, a few minutes each)."""
