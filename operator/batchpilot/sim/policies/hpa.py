"""The Kubernetes HorizontalPodAutoscaler (autoscaling/v2), as a peer and as the engine under KEDA.

Follows kubernetes/kubernetes (read 2026-11-24):
- `pkg/controller/podautoscaler/replica_calculator.go`: `calcPlainMetricReplicas` (Pods metrics: usage ratio
  over pods with metrics, tolerance, unready pods), `GetExternalPerPodMetricReplicas` (External AverageValue:
  ceil(sum / target), tolerance against status replicas), `GetExternalMetricReplicas` +
  `getUsageRatioReplicaCount` (External Value: ceil(ready x value / target)).
- `pkg/controller/podautoscaler/horizontal.go`: a sync every 15 s (`--horizontal-pod-autoscaler-sync-period`);
  `stabilizeRecommendation` (the highest recommendation of the last 300 s,
  `--horizontal-pod-autoscaler-downscale-stabilization`); `convertDesiredReplicasWithRules` +
  `calculateScaleUpLimit` (min/max replicas; at most max(2 x current, 4) per sync); a metric that cannot be
  computed leaves the scale alone; `recordInitialRecommendation` seeds the window with the replicas found at
  the first sync. Those are the rules of an HPA without `spec.behavior`, which is what
  NVIDIA's Triton autoscaling chart and KEDA (without `advanced.horizontalPodAutoscalerConfig`) create.
  With `behavior` set, `pkg/apis/autoscaling/v2/defaults.go` fills the documented default policies (scale up
  by max(+4 pods, +100%) per 15 s, scale down stabilized over 300 s) and `stabilizeRecommendationWithBehaviors`
  keeps the current count between the window's bounds; `HpaRules.behavior` selects that variant.
- Defaults of the two HPA peers: NVIDIA's tutorial metric `triton:queue_compute:ratio` as a Pods metric with
  `averageValue: 1000m` (triton-inference-server/tutorials, Deployment/Kubernetes/
  TensorRT-LLM_Autoscaling_and_Load_Balancing/chart/templates/horizontal-pod-autoscaler.yaml); GPU utilization
  (DCGM_FI_DEV_GPU_UTIL through prometheus-adapter) has no documented default target anywhere upstream, so it
  gets 80%, Kubernetes' default CPU target (`autoscaling.DefaultCPUUtilization`, used by `kubectl autoscale`).

Unready pods, as modelled: the pods listed are the spec's (`View.replicas`); those not Ready are treated as
Pending pods (`groupPods` ignores them): left out of the average, and on a scale-up counted as using 0, so a
scale-up while pods start only goes past the pods already asked for (the source's "rebalance" of ignored
pods). Per-pod metrics are the service-wide values of the View (the pods of one Deployment are balanced).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

from batchpilot.sim.policies.sizing import Settings
from batchpilot.sim.types import Action, View

SYNC_PERIOD_S = 15.0
"""--horizontal-pod-autoscaler-sync-period default (s)."""
TOLERANCE = 0.1
"""--horizontal-pod-autoscaler-tolerance default: no change while metric/target is within 1 +- 0.1."""
DOWNSCALE_STABILIZATION_S = 300.0
"""--horizontal-pod-autoscaler-downscale-stabilization default (s): highest recommendation of that window."""
SCALE_UP_LIMIT_FACTOR = 2
"""horizontal.go scaleUpLimitFactor: at most double per sync (no `behavior`), or +100% per 15 s (policies)."""
SCALE_UP_LIMIT_MINIMUM = 4
"""horizontal.go scaleUpLimitMinimum: at least 4 pods allowed per sync (no `behavior`), or +4 pods (policies)."""

QUEUE_COMPUTE_SETTINGS = Settings(1.0, (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0))
"""averageValue of triton:queue_compute:ratio: NVIDIA's 1000m, swept over queue time from 1/4 to 3x compute."""
GPU_SETTINGS = Settings(0.8, (0.5, 0.6, 0.7, 0.8, 0.9, 0.95))
"""averageValue of GPU utilization (0..1): 80% (no GPU default exists; Kubernetes' CPU default), swept."""


class Target(enum.Enum):
    """How the HPA turns one metric into replicas (the metric source and target type of its spec)."""

    POD_AVERAGE = "Pods AverageValue"
    """A per-pod metric averaged over pods with metrics: ceil(ready x average / target)."""
    EXTERNAL_AVERAGE = "External AverageValue"
    """One service-wide value split over pods (KEDA's default): ceil(value / target)."""
    EXTERNAL_VALUE = "External Value"
    """One service-wide value compared as is (KEDA metricType Value): ceil(ready x value / target)."""


@dataclass(frozen=True)
class HpaRules:
    """The HPA's spec and controller flags that shape its decisions."""

    min_replicas: int
    """spec.minReplicas."""
    max_replicas: int
    """spec.maxReplicas."""
    tolerance: float = TOLERANCE
    """Relative band around the target with no change."""
    downscale_window_s: float = DOWNSCALE_STABILIZATION_S
    """Scale-down stabilization window (s)."""
    behavior: bool = False
    """True: spec.behavior is set (default policies); False: the legacy rules of an HPA without it."""


@dataclass(frozen=True)
class HpaState:
    """What the controller remembers between syncs."""

    recommendations: tuple[tuple[float, int], ...] = ()
    """(time, recommendation before limits) of the syncs inside the stabilization window, oldest first."""


def pods_average_replicas(average: float, target: float, current: int, ready: int, tolerance: float) -> int:
    """Pods metric: replicas for a per-pod `average` over the `ready` pods, with `current` pods asked for.

    e.g. average 1.5, target 1.0, 4 of 4 ready: ceil(4 x 1.5) = 6. With 4 ready of 8 the 4 starting pods count
    as 0 on a scale-up: 6 / 8 = 0.75 < 1, the direction flips, so the HPA keeps 8.
    """
    ratio = average / target
    unready = max(current - ready, 0)
    if unready == 0 or ratio <= 1.0:
        if abs(1.0 - ratio) <= tolerance:
            return current
        return math.ceil(ratio * ready)
    rebalanced = average * ready / (target * (ready + unready))
    if abs(1.0 - rebalanced) <= tolerance or rebalanced < 1.0:
        return current  # within tolerance, or the starting pods would already cover it
    return math.ceil(rebalanced * (ready + unready))


def external_average_replicas(total: float, target: float, current: int, tolerance: float) -> int:
    """External AverageValue: ceil(total / target), unless total / (target x current) is within tolerance.

    e.g. 1000 req/s at 300 per pod with 3 pods: 1000 / 900 = 1.11 > 1.1, so ceil(3.33) = 4.
    """
    if current > 0 and abs(1.0 - total / (target * current)) <= tolerance:
        return current
    return math.ceil(total / target)


def external_value_replicas(value: float, target: float, current: int, ready: int, tolerance: float) -> int:
    """External Value: ceil(ready x value / target), unless value / target is within tolerance.

    e.g. p95 of 150 ms against 100 ms with 4 ready: ceil(4 x 1.5) = 6.
    """
    ratio = value / target
    if current == 0:
        return math.ceil(ratio)
    if abs(1.0 - ratio) <= tolerance:
        return current
    return math.ceil(ratio * ready)


def recommend(target: Target, value: float, threshold: float, current: int, ready: int,
              tolerance: float) -> int:
    """The metric's recommendation, before stabilization and limits."""
    if target is Target.POD_AVERAGE:
        return pods_average_replicas(value, threshold, current, ready, tolerance)
    if target is Target.EXTERNAL_AVERAGE:
        return external_average_replicas(value, threshold, current, tolerance)
    return external_value_replicas(value, threshold, current, ready, tolerance)


def stabilize(recommendation: int, current: int, at: float, state: HpaState,
              rules: HpaRules) -> tuple[int, HpaState]:
    """The recommendation after the scale-down stabilization window, and the window with this one added.

    Without `behavior`: the highest recommendation of the window (this one included), which may exceed the
    current count. With it: the current count held between this recommendation (up) and that highest (down).
    """
    kept = tuple((t, r) for t, r in state.recommendations if t >= at - rules.downscale_window_s)
    highest = max([recommendation, *(r for _, r in kept)])
    if rules.behavior:
        stabilized = recommendation if recommendation > current else min(current, highest)
    else:
        stabilized = highest
    return stabilized, HpaState(kept + ((at, recommendation),))


def limit(desired: int, current: int, rules: HpaRules) -> tuple[int, str]:
    """`desired` within min/max replicas and the scale-up rate, with the reason of the limit that applied."""
    if rules.behavior:  # default policies: +4 pods or +100% per 15 s, the larger
        up_limit = max(current + SCALE_UP_LIMIT_MINIMUM, current * SCALE_UP_LIMIT_FACTOR)
    else:  # calculateScaleUpLimit: max(2 x current, 4)
        up_limit = max(current * SCALE_UP_LIMIT_FACTOR, SCALE_UP_LIMIT_MINIMUM)
    ceiling = min(rules.max_replicas, up_limit)
    if desired < rules.min_replicas:
        return rules.min_replicas, "TooFewReplicas"
    if desired > ceiling:
        return ceiling, "TooManyReplicas" if ceiling == rules.max_replicas else "ScaleUpLimit"
    return desired, "DesiredWithinRange"


def hpa_decide(target: Target, value: float | None, threshold: float, at: float, current: int, ready: int,
               state: HpaState, rules: HpaRules) -> tuple[int, HpaState, str]:
    """One HPA sync: (replicas, next state, reason). A missing metric changes nothing.

    The first sync remembers the current scale as a recommendation (`recordInitialRecommendation`, called by
    `reconcileAutoscaler` before any metric is read): a new HPA does not scale below the replicas it found for
    one stabilization window, whatever its first readings say.
    """
    if not state.recommendations:
        state = HpaState(((at, current),))
    if current > rules.max_replicas:
        return rules.max_replicas, state, "AboveMaxReplicas"
    if current < rules.min_replicas:
        return rules.min_replicas, state, "BelowMinReplicas"
    if value is None or (target is Target.POD_AVERAGE and ready == 0):
        return current, state, "FailedGetMetric"  # "did not receive metrics for any ready pods"
    recommendation = recommend(target, value, threshold, current, ready, rules.tolerance)
    stabilized, state = stabilize(recommendation, current, at, state, rules)
    replicas, reason = limit(stabilized, current, rules)
    if reason == "DesiredWithinRange" and stabilized != recommendation:
        reason = "ScaleDownStabilized"
    return replicas, state, reason


class HpaPolicy:
    """One HPA on one metric of the View; the rule is `hpa_decide`, this only carries its window."""

    def __init__(self, name: str, setting: str, metric: Callable[[View], float | None], target: Target,
                 threshold: float, rules: HpaRules, initial: Action) -> None:
        self.name = name
        self.setting = setting
        self.period_s = SYNC_PERIOD_S
        self._metric = metric
        self._target = target
        self._threshold = threshold
        self._rules = rules
        self._initial = initial
        self._state = HpaState()

    def initial(self) -> Action:
        return self._initial

    def step(self, view: View) -> Action:
        replicas, self._state, reason = hpa_decide(
            self._target, self._metric(view), self._threshold, view.at, view.replicas, view.ready_replicas,
            self._state, self._rules)
        return Action(replicas=replicas, reason=reason)


def queue_compute_ratio(view: View) -> float | None:
    """NVIDIA's tutorial metric: queue time over compute time."""
    return view.queue_compute_ratio


def gpu_utilization(view: View) -> float | None:
    """DCGM GPU utilization of the ready pods, 0..1."""
    return view.gpu_utilization
