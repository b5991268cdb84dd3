"""Peak provisioning: a fixed replica count sized for the trace's busiest minute, as many teams run GPUs.

No upstream autoscaler: this is a Deployment with `replicas: N` and no HPA. N is what the capacity planning of
sizing.py gives for the peak 1-minute request rate of the trace (Trace.rate(60)), at the best static batching
a Model Analyzer-style search finds; it never changes, so it pays no cold start and carries no lag.
"""

from __future__ import annotations

from batchpilot.sim.policies.sizing import replicas_for
from batchpilot.sim.types import Action, Batching, Trace, View

PEAK_BIN_S = 60.0
"""Rate bin of the peak (s): capacity plans are made on per-minute peaks (dashboards' usual resolution)."""
PERIOD_S = 60.0
"""How often the simulator asks it (s): the answer never changes, so rarely."""


def peak_replicas(trace: Trace, capacity: float, min_replicas: int, max_replicas: int) -> int:
    """Pods for the trace's peak 1-minute rate, within min/max replicas.

    e.g. a peak minute of 1500 req/s on pods of 400 req/s: ceil(3.75) = 4.
    """
    _, rates = trace.rate(PEAK_BIN_S)
    peak = float(rates.max()) if rates.size else 0.0
    return max(min_replicas, min(max_replicas, replicas_for(peak, capacity)))


class StaticPolicy:
    """A constant replica count at a constant batching."""

    def __init__(self, replicas: int, batching: Batching, setting: str = "") -> None:
        self.name = "static"
        self.setting = setting or f"peak 1-min ({replicas})"
        self.period_s = PERIOD_S
        self._replicas = replicas
        self._batching = batching

    def initial(self) -> Action:
        return Action(replicas=self._replicas, batching=self._batching, reason="Static")

    def step(self, view: View) -> Action:
        return Action(replicas=self._replicas, reason="Static")
