"""The walking skeleton's replica rule, table-driven: inputs -> replicas and reason."""

from __future__ import annotations

import pytest

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.step_rule import CALM_FRACTION, decide
from batchpilot.control.types import History, Observation
from factories import NOW, observation, service_spec

SCALE_UP_COOLDOWN_S = 10  # spec.autoscaling.scaleUp.cooldownSeconds default


def spec(paused: bool = False, lo: int = 1, hi: int = 4, window: int = 60) -> InferenceServiceSpec:
    return service_spec(slo_ms=100, paused=paused, autoscaling={
        "minReplicas": lo, "maxReplicas": hi, "scaleDown": {"stabilizationSeconds": window}})


def obs(replicas: int, latency: float | None, ready: int | None = None) -> Observation:
    return observation(replicas, 10.0, ready=ready, latency_ms=latency)


CASES = [
    # name, spec, observation, history, expected replicas, expected reason
    ("breach adds one", spec(), obs(2, 150), History(), 3, "ScaleUp"),
    ("breach at max holds", spec(hi=2), obs(2, 150), History(), 2, "AtMaxReplicas"),
    ("breach while a replica starts holds", spec(), obs(2, 150, ready=1), History(), 2, "WaitingForReplicas"),
    # One rule with the planner (limits.py): the cooldown paces planned scale-ups, never a breach; replicas still
    # starting hold the reactive rule's next one instead (the case above).
    ("a breach inside the cooldown adds one", spec(), obs(2, 150),
     History(last_scale_at=NOW - SCALE_UP_COOLDOWN_S / 2), 3, "ScaleUp"),
    ("breach after cooldown adds", spec(), obs(2, 150), History(last_scale_at=NOW - SCALE_UP_COOLDOWN_S), 3,
     "ScaleUp"),
    ("within SLO holds", spec(), obs(2, 80), History(), 2, "WithinSLO"),
    ("calm starts the window", spec(), obs(2, 10), History(), 2, "Stabilizing"),
    ("calm for the window removes one", spec(window=60), obs(3, 10), History(calm_since=NOW - 60), 2,
     "ScaleDown"),
    ("calm at min holds", spec(lo=2), obs(2, 10), History(calm_since=NOW - 600), 2, "WithinSLO"),
    ("no metrics never scales down", spec(), obs(3, None), History(calm_since=NOW - 600), 3,
     "MetricsUnavailable"),
    ("paused freezes", spec(paused=True), obs(2, 500), History(), 2, "Paused"),
    ("below min is raised", spec(lo=2), obs(1, None), History(), 2, "BelowMinReplicas"),
    ("above max is lowered", spec(hi=3), obs(5, 10), History(), 3, "AboveMaxReplicas"),
]


@pytest.mark.parametrize(("spec_", "observation", "history", "replicas", "reason"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(spec_: InferenceServiceSpec, observation: Observation, history: History, replicas: int,
              reason: str) -> None:
    decision = decide(spec_, observation, history, NOW)
    assert (decision.replicas, decision.reason) == (replicas, reason), decision.message


def test_a_blip_above_calm_restarts_the_window() -> None:
    calm = decide(spec(), obs(3, 10), History(), NOW)
    blip = decide(spec(), obs(3, CALM_FRACTION * 100 + 1), calm.history, NOW + 30)
    after = decide(spec(), obs(3, 10), blip.history, NOW + 61)
    assert after.reason == "Stabilizing" and after.replicas == 3


def test_scaling_starts_the_cooldown_and_clears_calm() -> None:
    up = decide(spec(), obs(2, 150), History(calm_since=NOW - 5), NOW)
    assert up.history == History(calm_since=None, last_scale_at=NOW, up_rate=10.0, rise_peak=10.0)  # its rate
    again = decide(spec(), obs(3, 150, ready=2), up.history, NOW + 1)
    assert (again.replicas, again.reason) == (3, "WaitingForReplicas")


def test_the_message_names_the_percentile_and_the_slo() -> None:
    assert "p95 150.0 ms vs SLO 100 ms" in decide(spec(), obs(2, 150), History(), NOW).message


def test_no_scale_down_until_the_rate_window_is_whole_after_metrics_return() -> None:
    """A tick without metrics, then calm readings: rate() covers only the samples since the outage ended and reads
    low (an empty TSDB read ~40% and ~70% of the load in the sandbox), so no scale-down, and no stabilization
    window counted, until one rate window has passed since the last blind tick."""
    window, stabilization = 30.0, 60
    blind = decide(spec(window=stabilization), observation(3, None, window_s=window), History(), NOW)
    assert blind.history.blind_at == NOW and blind.replicas == 3
    refilling = decide(spec(window=stabilization), observation(3, 10.0, latency_ms=10, window_s=window),
                       blind.history, NOW + window - 1)
    assert (refilling.replicas, refilling.reason) == (3, "Stabilizing"), refilling.message
    assert "rate window is whole again" in refilling.message and refilling.history.calm_since is None
    # Calm counts from the first whole window, and the scale-down follows the stabilization window after it.
    whole = decide(spec(window=stabilization), observation(3, 10.0, latency_ms=10, window_s=window),
                   refilling.history, NOW + window)
    assert (whole.replicas, whole.reason, whole.history.calm_since) == (3, "Stabilizing", NOW + window)
    later = decide(spec(window=stabilization), observation(3, 10.0, latency_ms=10, window_s=window), whole.history,
                   NOW + window + stabilization)
    assert (later.replicas, later.reason) == (2, "ScaleDown"), later.message
    # A scale-up is never held back: a low reading only makes one less likely.
    breach = decide(spec(window=stabilization), observation(2, 10.0, latency_ms=150, window_s=window),
                    blind.history, NOW + 1)
    assert (breach.replicas, breach.reason) == (3, "ScaleUp")
