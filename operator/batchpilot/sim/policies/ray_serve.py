"""Ray Serve's default autoscaling policy (replica queue length), as the simulator's peer.

Follows ray-project/ray (read 2026-11-24):
- `python/ray/serve/autoscaling_policy.py`: `_core_replica_queue_length_policy` wants
  running x total ongoing / (target_ongoing_requests x running) = total / target replicas;
  `_apply_scaling_factors` moves from the running count by upscaling/downscaling_factor of the difference
  (ceil); `_apply_bounds` clips to min/max replicas; `_apply_delay_logic` counts consecutive decisions in one
  direction against the current target and acts only past upscale_delay_s / downscale_delay_s worth of them
  (a decision the other way, or none, resets the count); `_get_cold_start_scale_up_replicas` holds the target
  while no replica runs.
- `python/ray/serve/config.py` `AutoscalingConfig` defaults: target_ongoing_requests 2
  (DEFAULT_TARGET_ONGOING_REQUESTS), metrics_interval_s 10, look_back_period_s 30, upscale_delay_s 30,
  downscale_delay_s 600, upscaling/downscaling factor unset (1).

Ray's controller loops every 0.1 s but new metrics arrive every 10 s, so this peer decides every 10 s and the
delays count 10 s decisions: 30 s up = the 4th consecutive "more", 600 s down = the 61st consecutive "fewer".
Ongoing requests per replica are View.ongoing_per_replica (queued or executing), averaged over the views of
the look-back; with none in it (no metrics pushed) there is no decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from batchpilot.sim.policies.sizing import Settings
from batchpilot.sim.types import Action, View

DECISION_PERIOD_S = 10.0
"""metrics_interval_s: replicas push metrics every 10 s; deciding faster sees nothing new."""
LOOK_BACK_S = 30.0
"""look_back_period_s: ongoing requests are averaged over this window."""
UPSCALE_DELAY_S = 30.0
"""upscale_delay_s."""
DOWNSCALE_DELAY_S = 600.0
"""downscale_delay_s."""
SCALING_FACTOR = 1.0
"""upscaling_factor / downscaling_factor unset: the whole difference at once."""
TARGET_ONGOING = 2.0
"""target_ongoing_requests default."""
SETTINGS = Settings(TARGET_ONGOING, (2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0))
"""target_ongoing_requests: the default 2 (sized for LLM replicas), swept by factors of 2 up to where a
batching GPU replica works (capacity x latency in flight, e.g. 8000 req/s x 10 ms = 80)."""


@dataclass(frozen=True)
class RayState:
    """What the Serve controller carries for one deployment."""

    samples: tuple[tuple[float, float], ...] = ()
    """(time, total ongoing requests of the running replicas) inside the look-back, oldest first."""
    decision_counter: int = 0
    """Consecutive decisions to scale: > 0 up, < 0 down."""


def scaled(desired: float, running: int, factor: float = SCALING_FACTOR) -> int:
    """`_apply_scaling_factors`: ceil(running + factor x (desired - running)), never stuck on a scale-down."""
    result = math.ceil(running + factor * (desired - running))
    if math.ceil(desired) < running and result == running:
        result -= 1
    return result


def delayed(desired: int, current: int, counter: int) -> tuple[int, int]:
    """`_apply_delay_logic` at one decision per DECISION_PERIOD_S: (replicas, next counter)."""
    if desired > current:
        counter = max(counter, 0) + 1
        if counter > int(UPSCALE_DELAY_S / DECISION_PERIOD_S):
            return desired, 0
        return current, counter
    if desired < current:
        counter = min(counter, 0) - 1
        if counter < -int(DOWNSCALE_DELAY_S / DECISION_PERIOD_S):
            return max(1, desired), 0
        return current, counter
    return current, 0


def ray_decide(at: float, total: float | None, running: int, current: int, state: RayState, target: float,
               min_replicas: int, max_replicas: int) -> tuple[int, RayState, str]:
    """One decision: (target replicas, next state, reason); `current` is the deployment's target now.

    e.g. 3 running, 40 ongoing in all over the look-back, target 2: wants 20, acted on at the 4th such decision.
    """
    kept = tuple((t, c) for t, c in state.samples if t > at - LOOK_BACK_S)
    if total is not None:
        kept += ((at, total),)
    if running == 0:
        return current, RayState(kept, state.decision_counter), "ColdStart"
    if not kept:
        return current, RayState(kept, state.decision_counter), "NoMetrics"
    average = sum(c for _, c in kept) / len(kept)
    wanted = scaled(average / target, running)
    wanted = max(min_replicas, min(max_replicas, wanted))
    replicas, counter = delayed(wanted, current, state.decision_counter)
    if replicas != current:
        reason = "ScaleUp" if replicas > current else "ScaleDown"
    elif counter:
        reason = "UpscaleDelay" if counter > 0 else "DownscaleDelay"
    else:
        reason = "Steady"
    return replicas, RayState(kept, counter), reason


class RayServePolicy:
    """Ray Serve's default policy for one deployment; the rule is `ray_decide`, this carries its state."""

    def __init__(self, setting: str, target: float, min_replicas: int, max_replicas: int,
                 initial: Action) -> None:
        self.name = "ray-serve"
        self.setting = setting
        self.period_s = DECISION_PERIOD_S
        self._target = target
        self._min = min_replicas
        self._max = max_replicas
        self._initial = initial
        self._state = RayState()

    def initial(self) -> Action:
        return self._initial

    def step(self, view: View) -> Action:
        ongoing = view.ongoing_per_replica
        total = None if ongoing is None else ongoing * view.ready_replicas
        replicas, self._state, reason = ray_decide(view.at, total, view.ready_replicas, view.replicas,
                                                   self._state, self._target, self._min, self._max)
        return Action(replicas=replicas, reason=reason)
