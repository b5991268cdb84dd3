"""The control loop at rest with N services: is each service's period held, and what does it cost the API server?

Each tick writes `status.observed`; the bench's watch (tracker.py) stamps when each service's `observed.at`
changes. Over a hold window the gaps between a service's consecutive ticks, less the control interval, are the
loop's lateness; a service with no tick in the window is starved. API requests per second come from
kube-apiserver's own `apiserver_request_total` (every client; WATCH and CONNECT left out, a watch is one
long request), read before and after the window, beside the same rate with no service at all.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from batchpilot_sandbox.cluster.kubectl import kubectl

REQUESTS = re.compile(r'^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$', re.M)
LONG_RUNNING = ("WATCH", "CONNECT")


def api_requests(kubeconfig: Path) -> float:
    """kube-apiserver's request count so far, long-running verbs left out."""
    total = 0.0
    for labels, value in REQUESTS.findall(kubectl(kubeconfig, "get", "--raw", "/metrics")):
        verb = re.search(r'verb="([A-Z]+)"', labels)
        if verb is None or verb.group(1) not in LONG_RUNNING:
            total += float(value)
    return total


def api_rate(kubeconfig: Path, seconds: float) -> float:
    """Requests per second kube-apiserver serves over `seconds` from now."""
    before, start = api_requests(kubeconfig), time.monotonic()
    time.sleep(seconds)
    return (api_requests(kubeconfig) - before) / (time.monotonic() - start)


@dataclass(frozen=True)
class Steady:
    hold_s: float
    services: int
    ticks: int
    """Ticks seen (status.observed changes) in the window, all services."""
    expected_ticks: float
    """services x hold / control interval: what a loop that holds its period would do."""
    starved: int
    """Services without a single tick in the window."""
    lateness_p50_s: float | None
    lateness_p95_s: float | None
    lateness_max_s: float | None
    api_requests_per_s: float
    api_requests_per_s_idle: float
    """The same rate before any service existed (kube-controller-manager and the operator's own watches)."""
    operator_cores: float


def lateness(ticks: Mapping[object, list[float]], start: float, end: float, interval_s: float) -> list[float]:
    """Gap minus interval between consecutive ticks of each service inside [start, end]."""
    late: list[float] = []
    for stamps in ticks.values():
        inside = [t for t in stamps if start <= t <= end]
        late += [b - a - interval_s for a, b in zip(inside, inside[1:], strict=False)]
    return late


def nearest_rank(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(len(ordered) * p / 100) - 1)], 3)


def hold(ticks: Callable[[], Mapping[object, list[float]]], kubeconfig: Path, services: int, interval_s: float,
         hold_s: float, idle_rate: float, cpu_s: Callable[[], float], say: Callable[[str], None]) -> Steady:
    """Watch the loop for hold_s; ticks() gives each service's tick receipt times (monotonic)."""
    say(f"steady state: watching {services} services' ticks for {hold_s:.0f}s")
    start, cpu_before = time.monotonic(), cpu_s()
    rate = api_rate(kubeconfig, hold_s)
    end = time.monotonic()
    seen = ticks()
    late = lateness(seen, start, end, interval_s)
    count = sum(1 for stamps in seen.values() for t in stamps if start <= t <= end)
    starved = services - sum(1 for stamps in seen.values() if any(start <= t <= end for t in stamps))
    return Steady(hold_s=round(end - start, 1), services=services, ticks=count,
                  expected_ticks=round(services * (end - start) / interval_s, 1), starved=starved,
                  lateness_p50_s=nearest_rank(late, 50), lateness_p95_s=nearest_rank(late, 95),
                  lateness_max_s=round(max(late), 3) if late else None, api_requests_per_s=round(rate, 1),
                  api_requests_per_s_idle=round(idle_rate, 1),
                  operator_cores=round((cpu_s() - cpu_before) / (end - start), 2))
