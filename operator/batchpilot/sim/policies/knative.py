"""The Knative Pod Autoscaler (KPA) on concurrency, as the simulator's peer.

Follows knative/serving (read 2026-11-24):
- `pkg/autoscaler/scaling/autoscaler.go` (`Scale`): ready pods counted as at least 1; desired stable / panic
  pods = ceil(window-averaged total concurrency / target per pod), each kept within
  [floor(ready / max-scale-down-rate), ceil(ready x max-scale-up-rate)]; panic starts when panic pods / ready
  >= panic threshold, is extended at every tick still over it, and ends once a stable window has passed since
  the last such tick; in panic the larger of stable and panic pods is taken and never decreased
  (`maxPanicPods`); a new autoscaler over more than one ready pod starts in panic; no data, no decision.
- `config/core/configmaps/autoscaler.yaml` defaults: container-concurrency-target-default 100 x
  container-concurrency-target-percentage 70% = 70 requests in flight per pod (Triton runs with
  containerConcurrency 0, so the default applies); stable-window 60 s; panic-window-percentage 10% (6 s);
  panic-threshold-percentage 200%; max-scale-up-rate 1000; max-scale-down-rate 2 (applied per decision, as
  the source does: at most halve the ready pods each tick); scale-down-delay 0 s (no delay window);
  tick-interval 2 s.

The concurrency the queue-proxies report is View.ongoing_per_replica x ready pods, one sample per 2 s view;
this policy averages the samples over its own windows (Knative's collector uses per-second buckets of the
same signal). Scale to zero and the activator are not modelled: min-scale is the shared minReplicas >= 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from batchpilot.sim.policies.sizing import Settings
from batchpilot.sim.types import Action, View

TICK_INTERVAL_S = 2.0
"""tick-interval: how often the KPA decides (s)."""
STABLE_WINDOW_S = 60.0
"""stable-window (s)."""
PANIC_WINDOW_S = STABLE_WINDOW_S * 0.10
"""panic-window-percentage 10% of the stable window (s)."""
PANIC_THRESHOLD = 2.0
"""panic-threshold-percentage 200%: panic when the panic window wants twice the ready pods."""
MAX_SCALE_UP_RATE = 1000.0
"""max-scale-up-rate: at most 1000 x the ready pods per decision."""
MAX_SCALE_DOWN_RATE = 2.0
"""max-scale-down-rate: at least half the ready pods kept per decision."""
TARGET_PER_POD = 100.0 * 0.70
"""container-concurrency-target-default 100 x container-concurrency-target-percentage 70%."""
SETTINGS = Settings(TARGET_PER_POD, (17.5, 35.0, 70.0, 140.0, 280.0, 560.0))
"""Target concurrency per pod: the default 70, swept by factors of 2 (a batching GPU pod at capacity holds
capacity x latency in flight, e.g. 8000 req/s x 20 ms = 160, well past the default)."""


@dataclass(frozen=True)
class KpaState:
    """What one KPA decider carries between ticks."""

    samples: tuple[tuple[float, float], ...] = ()
    """(time, total concurrency over the 2 s before it) inside the stable window, oldest first."""
    panic_time: float | None = None
    """Last tick over the panic threshold while panicking; None: not panicking."""
    max_panic_pods: int = 0
    """The highest count decided during this panic (a panic never scales down)."""


def start_state(at: float, ready: int) -> KpaState:
    """A new decider: in panic over its current pods when more than one is ready (autoscaler.go `New`)."""
    return KpaState(panic_time=at, max_panic_pods=ready) if ready > 1 else KpaState()


def record(state: KpaState, at: float, total: float | None) -> KpaState:
    """The state with this tick's sample added (none when no data) and samples past the stable window dropped."""
    kept = tuple((t, c) for t, c in state.samples if t > at - STABLE_WINDOW_S)
    if total is not None:
        kept += ((at, total),)
    return KpaState(kept, state.panic_time, state.max_panic_pods)


def window_average(samples: tuple[tuple[float, float], ...], at: float, window_s: float) -> float | None:
    """Mean of the samples in (at - window_s, at]; None when there are none."""
    inside = [c for t, c in samples if t > at - window_s]
    return sum(inside) / len(inside) if inside else None


def kpa_decide(at: float, ready: int, current: int, state: KpaState, target: float) -> tuple[int, KpaState, str]:
    """One tick of `Scale` on recorded samples: (desired pods before min/max scale, next state, reason).

    Without samples the scale result is invalid and the revision keeps its `current` scale.

    e.g. ready 4, stable 280, panic 700, target 70: stable wants 4, panic 10 >= 2 x 4, so panic: 10.
    """
    stable = window_average(state.samples, at, STABLE_WINDOW_S)
    panic = window_average(state.samples, at, PANIC_WINDOW_S)
    if stable is None or panic is None:
        return current, state, "NoData"
    pods = max(1.0, float(ready))
    up_bound = math.ceil(MAX_SCALE_UP_RATE * pods)
    down_bound = math.floor(pods / MAX_SCALE_DOWN_RATE)
    stable_pods = math.ceil(stable / target)
    panic_pods = math.ceil(panic / target)
    desired_stable = int(min(max(stable_pods, down_bound), up_bound))
    desired_panic = int(min(max(panic_pods, down_bound), up_bound))
    over = panic_pods / pods >= PANIC_THRESHOLD
    panic_time, max_panic = state.panic_time, state.max_panic_pods
    if over:
        panic_time = at
    elif panic_time is not None and panic_time + STABLE_WINDOW_S < at:
        panic_time, max_panic = None, 0
    if panic_time is None:
        return desired_stable, KpaState(state.samples, None, 0), "Stable"
    max_panic = max(max_panic, desired_stable, desired_panic)
    return max_panic, KpaState(state.samples, panic_time, max_panic), "Panic"


def bounded(pods: int, min_scale: int, max_scale: int) -> int:
    """The PodAutoscaler's min-scale / max-scale applied to the decider's answer."""
    return max(min_scale, min(max_scale, pods))


class KnativePolicy:
    """The KPA of one revision; the rule is `kpa_decide`, this only carries its windows."""

    def __init__(self, setting: str, target: float, min_replicas: int, max_replicas: int,
                 initial: Action) -> None:
        self.name = "knative"
        self.setting = setting
        self.period_s = TICK_INTERVAL_S
        self._target = target
        self._min = min_replicas
        self._max = max_replicas
        self._initial = initial
        self._state = start_state(0.0, initial.replicas)

    def initial(self) -> Action:
        return self._initial

    def step(self, view: View) -> Action:
        total = None if view.ongoing_per_replica is None else view.ongoing_per_replica * view.ready_replicas
        self._state = record(self._state, view.at, total)
        pods, self._state, reason = kpa_decide(view.at, view.ready_replicas, view.replicas, self._state,
                                               self._target)
        return Action(replicas=bounded(pods, self._min, self._max), reason=reason)
