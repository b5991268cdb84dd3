"""An offline oracle: replicas sized from the future of the trace, ahead by the worst cold start.

No upstream autoscaler: the lower bound of GPU cost for a replica policy that never misses capacity. It reads
the trace's request rate per 10 s bin and, at every step, runs the pods needed (sizing.replicas_for at the
measured per-pod capacity) for the peak rate over [now, now + cold_start.high_s + one step]: a pod asked for
now is Ready, even at the slowest cold start, before the load it is for arrives, and pods leave as soon as
no load within that horizon needs them. It pays its cold starts in billed GPU time like everyone else; what
it does not pay is reaction lag or forecasting error. Batching is the same static batching as the peers'.
"""

from __future__ import annotations

import numpy as np

from batchpilot.sim.policies.sizing import replicas_for
from batchpilot.sim.types import Action, Batching, ColdStart, FloatArray, Trace, View

RATE_BIN_S = 10.0
"""Resolution of the future the oracle knows (s): per-10 s rates keep Poisson noise out of the peaks."""
PERIOD_S = 10.0
"""How often it decides (s): one rate bin."""


def needed_replicas(starts: FloatArray, rates: FloatArray, at: float, horizon_s: float, capacity: float,
                    min_replicas: int, max_replicas: int) -> int:
    """Pods for the peak rate of the bins overlapping [at, at + horizon_s], within min/max replicas.

    e.g. bins of 100, 900 and 300 req/s, the horizon reaching the second one, pods of 400 req/s: 3.
    """
    inside = (starts <= at + horizon_s) & (starts + RATE_BIN_S > at)
    peak = float(np.max(rates[inside])) if np.any(inside) else 0.0
    return max(min_replicas, min(max_replicas, replicas_for(peak, capacity)))


class OraclePolicy:
    """Knows the trace; scales ahead of it by the cold start's upper bound plus one step."""

    def __init__(self, trace: Trace, capacity: float, cold_start: ColdStart, batching: Batching,
                 min_replicas: int, max_replicas: int, setting: str = "") -> None:
        self.name = "oracle"
        self.setting = setting or f"ahead {cold_start.high_s + PERIOD_S:g} s"
        self.period_s = PERIOD_S
        self._starts, self._rates = trace.rate(RATE_BIN_S)
        self._horizon_s = cold_start.high_s + PERIOD_S
        self._capacity = capacity
        self._batching = batching
        self._min = min_replicas
        self._max = max_replicas

    def _needed(self, at: float) -> int:
        return needed_replicas(self._starts, self._rates, at, self._horizon_s, self._capacity, self._min,
                               self._max)

    def initial(self) -> Action:
        return Action(replicas=self._needed(0.0), batching=self._batching, reason="Oracle")

    def step(self, view: View) -> Action:
        return Action(replicas=self._needed(view.at), reason="Oracle")
