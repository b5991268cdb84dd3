"""What no reactive policy can do on a bursty trace: the attainment ceiling, and the pods it must hold to reach 99%.

A flash crowd's onset is not in the history a reactive autoscaler reads (an MMPP's next burst comes after an
exponential wait, whatever came before), so at the onset every such policy serves with the capacity it held
already. More can only arrive once the rise is seen (one control period at least) and a pod has started (the
shortest cold start of the preset): for that window, requests above the held capacity are lost when late
requests are rejected. The strict bound counts the cold start alone (a rise seen at once); the second figure adds
one control period (15 s, the operator's and the HPA's), the usual wait before a rise is seen. Counting them on the trace itself bounds every reactive policy (Batchpilot and every peer
here) from above, however well it scales afterwards; only prediction or standing capacity gets past it, which is
what the oracle and static peak provisioning do.

    python -m bench.sim_ceiling --trace mmpp --seeds 3 --cold-start cached-image

prints, per seed, the bursts found, the ceiling when holding what the base load needs, and the fewest pods held
at all times that let the SLO share reach 99% (their GPU-hours per hour of trace).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from batchpilot.sim.lifecycle import COLD_STARTS
from batchpilot.sim.policies.batchpilot import CONTROL_INTERVAL_S
from bench.sim_compare import ATTAINMENT_GOAL, SERVICES, TRACES, sized

BURST_FACTOR = 1.6
"""A second whose 5-second mean load is above this multiple of the trace's median load is in a burst."""
SMOOTH_S = 5
DEFAULT_UTILIZATION = 0.85
"""spec.autoscaling.targetUtilization's default: what the base load is provisioned at."""

Counts = npt.NDArray[np.int64]


def per_second(arrivals: npt.NDArray[np.float64], duration_s: float) -> Counts:
    """Arrivals per whole second of the trace."""
    return np.bincount(arrivals.astype(np.int64), minlength=math.ceil(duration_s))[: math.ceil(duration_s)]


def burst_onsets(counts: Counts, factor: float = BURST_FACTOR) -> npt.NDArray[np.int64]:
    """The seconds at which the load rises above factor x its median (smoothed over SMOOTH_S seconds)."""
    smooth = np.convolve(counts, np.ones(SMOOTH_S) / SMOOTH_S, mode="same")
    high = smooth > factor * float(np.median(counts))
    starts = np.flatnonzero(high[1:] & ~high[:-1]) + 1
    return starts if not high[0] else np.concatenate(([0], starts))


def unavoidable_misses(counts: Counts, onsets: Sequence[int] | npt.NDArray[np.int64], capacity_rps: float,
                       window_s: int) -> float:
    """Requests above `capacity_rps` in the first `window_s` seconds of every burst."""
    return float(sum(np.maximum(0.0, counts[o:o + window_s] - capacity_rps).sum() for o in onsets))


@dataclass(frozen=True)
class Ceiling:
    seed: int
    bursts: int
    requests: int
    base_pods: int
    """What the load between bursts needs at the default target utilization."""
    ceiling: float
    """The best SLO share any reactive policy holding base_pods can reach."""
    pods_for_goal: int | None
    """The fewest pods held throughout that let the share reach ATTAINMENT_GOAL; None: more than max_pods."""


def ceiling(counts: Counts, per_pod_rps: float, window_s: int, seed: int = 0, max_pods: int = 64,
            goal: float = ATTAINMENT_GOAL) -> Ceiling:
    onsets = burst_onsets(counts)
    total = int(counts.sum())
    base_rate = float(np.median(counts))
    base_pods = math.ceil(base_rate / (per_pod_rps * DEFAULT_UTILIZATION))
    share = 1.0 - unavoidable_misses(counts, onsets, base_pods * per_pod_rps, window_s) / max(total, 1)
    needed = next((n for n in range(1, max_pods + 1)
                   if unavoidable_misses(counts, onsets, n * per_pod_rps, window_s) <= (1.0 - goal) * total), None)
    return Ceiling(seed, len(onsets), total, base_pods, share, needed)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trace", default="mmpp", choices=sorted(TRACES))
    p.add_argument("--service", default="resnet50", choices=sorted(SERVICES))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--cold-start", default="cached-image", choices=sorted(COLD_STARTS))
    args = p.parse_args(argv)
    _, _, per_pod = sized(args.service)
    strict = int(COLD_STARTS[args.cold_start].low_s)
    usual = int(strict + CONTROL_INTERVAL_S)
    print(f"{args.trace}, {args.service} ({per_pod:.0f} req/s per pod within the SLO), {args.cold_start}: the first "
          f"{strict} s of a burst (the shortest cold start), or {usual} s (plus one control period), are served by "
          f"what was held")
    print(f"| seed | bursts | requests | pods for the base load | ceiling holding them ({strict} s / {usual} s) | "
          f"pods held for {ATTAINMENT_GOAL:.0%} ({strict} s / {usual} s) |")
    print("|---|---|---|---|---|---|")
    for seed in range(args.seeds):
        trace = TRACES[args.trace](SERVICES[args.service].load_pods * per_pod, seed)
        counts = per_second(trace.arrivals, trace.duration_s)
        a, b = ceiling(counts, per_pod, strict, seed), ceiling(counts, per_pod, usual, seed)
        held = " / ".join("more than 64" if c.pods_for_goal is None else str(c.pods_for_goal) for c in (a, b))
        print(f"| {seed} | {a.bursts} | {a.requests:,} | {a.base_pods} | {100 * a.ceiling:.2f}% / "
              f"{100 * b.ceiling:.2f}% | {held} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
