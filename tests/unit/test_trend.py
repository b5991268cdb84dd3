"""A load that has climbed for minutes is planned for where it will be once the replicas asked for have started
(planner.trend, planner.start_ahead): hand-computed cases of each piece, then decide() on a ramp."""

from __future__ import annotations

from dataclasses import replace

import pytest

import factories
from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.planner import (
    START_AHEAD_MAX_S,
    STARTS_SEEN,
    TREND_MARKS,
    TREND_STEP_S,
    ahead,
    decide,
    marked,
    start_ahead,
    started,
    trend,
)
from batchpilot.control.types import History
from factories import NOW, observation, service_spec


def spec(hi: int = 20) -> InferenceServiceSpec:
    return service_spec(model={"maxBatchSize": 4, "profile": factories.profile()}, slo_ms=150,
                        autoscaling={"minReplicas": 1, "maxReplicas": hi,
                                     "scaleDown": {"stabilizationSeconds": 60}})


def marks(*rates: float, step: float = TREND_STEP_S) -> History:
    """History whose trend marks read `rates`, `step` seconds apart, the last at NOW."""
    n = len(rates)
    return History(rate_marks=tuple((NOW - (n - 1 - i) * step, r) for i, r in enumerate(rates)))


def test_a_mark_is_added_once_a_step_has_passed_and_only_the_last_ones_are_kept() -> None:
    history = History()
    for i in range(TREND_MARKS + 2):
        history = marked(history, 100.0 + i, NOW + i * TREND_STEP_S)
        history = marked(history, 999.0, NOW + i * TREND_STEP_S + 15)  # within the step: not marked
    assert history.rate_marks == tuple((NOW + i * TREND_STEP_S, 100.0 + i) for i in range(2, TREND_MARKS + 2))


@pytest.mark.parametrize(("rates", "step", "expected"), [
    # a ramp: every step rises; the slowest one, per second (30 req/s a minute = 0.5 req/s per second)
    ((1000.0, 1040.0, 1070.0, 1110.0), TREND_STEP_S, 0.5),
    ((1000.0, 1040.0, 1070.0), TREND_STEP_S, 0.0),  # not three minutes of marks yet
    ((1000.0, 1000.0, 2500.0, 2500.0), TREND_STEP_S, 0.0),  # a step, or a flash crowd: one jump, then flat
    ((1000.0, 1700.0, 2500.0, 2500.0), TREND_STEP_S, 0.0),  # a jump the rate window read over two marks
    ((1000.0, 1030.0, 1045.0, 1080.0), TREND_STEP_S, 0.0),  # 1.5% a minute on one step: under TREND_FLOOR
    ((1000.0, 980.0, 1040.0, 1080.0), TREND_STEP_S, 0.0),  # a fall among the steps
    ((1000.0, 1100.0, 1200.0, 1300.0), 2.5 * TREND_STEP_S, 0.0),  # a gap in the marks (no metrics, a restart)
])
def test_a_trend_is_a_climb_over_every_step_of_the_last_marks(rates: tuple[float, ...], step: float,
                                                              expected: float) -> None:
    assert trend(marks(*rates, step=step)) == pytest.approx(expected)


def test_the_cold_start_is_timed_from_the_first_tick_that_sees_replicas_starting() -> None:
    history = started(History(), observation(2, 100.0, ready=2), NOW)
    assert (history.asked, history.starts, start_ahead(history, NOW)) == (None, (), 0.0)
    history = started(history, observation(4, 100.0, ready=2), NOW)
    assert history.asked == (NOW, 4)
    history = started(history, observation(5, 100.0, ready=3), NOW + 60)  # more asked while the first start
    assert history.asked == (NOW, 4) and start_ahead(history, NOW + 60) == 60.0
    history = started(history, observation(5, 100.0, ready=4), NOW + 200)  # the 4 asked for are ready
    assert (history.starts, history.asked) == ((200.0,), (NOW + 200, 5))  # the 5th is timed from now
    assert start_ahead(history, NOW + 260) == 200.0  # the longest start measured outranks 60 s of waiting
    assert start_ahead(history, NOW + 500) == 300.0  # waiting longer than it did: the wait so far
    assert start_ahead(history, NOW + 5000) == START_AHEAD_MAX_S


def test_a_scale_up_is_timed_from_the_decision_that_asked_for_it() -> None:
    """The tick after a scale-up is the first to see its replicas starting: timed from there, every start was one
    control period short of how long a replica asked for now takes to serve."""
    s = spec()
    seen = observation(3, 190.0, ready=3, latency_ms=400.0, queue_ms=300.0)  # a breach: more replicas
    up = decide(s, seen, History(), NOW)
    assert up.replicas > 3 and up.history.asked == (NOW, up.replicas), up.message
    starting = observation(up.replicas, 190.0, ready=3, latency_ms=400.0, queue_ms=300.0)
    assert decide(s, starting, up.history, NOW + 15).history.asked == (NOW, up.replicas)
    ready = observation(up.replicas, 190.0, ready=up.replicas, latency_ms=100.0, queue_ms=5.0)
    assert decide(s, ready, up.history, NOW + 45).history.starts == (45.0,)
    kept = decide(s, observation(3, 100.0, ready=3, latency_ms=100.0, queue_ms=5.0), History(), NOW)
    assert kept.replicas <= 3 and kept.history.asked is None, kept.message


def test_the_longest_of_the_last_starts_is_expected_of_the_next() -> None:
    history, now = History(), NOW
    for took in (400.0, 200.0, 180.0, 190.0, 170.0, 160.0):  # a new node's 3-10 minutes
        history = started(history, observation(3, 100.0, ready=2), now)
        now += took
        history = started(history, observation(3, 100.0, ready=3), now)
    assert len(history.starts) == STARTS_SEEN and history.starts[0] == 200.0  # 400 s was six starts ago
    assert start_ahead(history, now) == 200.0


def test_a_scale_down_while_replicas_start_ends_the_timing_without_a_measure() -> None:
    history = started(History(starts=(90.0,)), observation(6, 100.0, ready=3), NOW)
    history = started(history, observation(3, 100.0, ready=3), NOW + 30)
    assert (history.asked, history.starts) == (None, (90.0,))


def test_the_trend_is_carried_over_the_cold_start_past_what_the_margin_for_growth_covers() -> None:
    s = spec()  # targetUtilization 0.85: the plan at it holds growth up to the held utilization, 0.925
    history = replace(marks(1000.0, 1060.0, 1120.0, 1180.0), starts=(300.0,))
    assert ahead(s, history, 1200.0, NOW) == pytest.approx((1200.0 + 1.0 * 300.0) * 0.85 / 0.925)
    # 60 s of the same climb is 5% growth, within the 8.8% the margin covers: the rate as it is
    assert ahead(s, replace(history, starts=(60.0,)), 1200.0, NOW) == 1200.0
    assert ahead(s, replace(history, starts=()), 1200.0, NOW) == 1200.0  # no start seen yet: nothing ahead
    assert ahead(s, replace(history, rate_marks=history.rate_marks[1:]), 1200.0, NOW) == 1200.0  # no trend


def test_a_climbing_load_asks_for_the_replicas_it_will_need_once_they_have_started() -> None:
    """A ramp with a new node's cold starts: planning for the load now, each pod asked for came minutes after it was
    needed (ramp + spike, new node: 95.3% of requests within the SLO)."""
    s = spec()
    climbing = replace(marks(100.0, 130.0, 160.0, 190.0), starts=(300.0,), last_rate=(NOW - 15, 190.0),
                       steady_rate=190.0, steady_since=NOW - 15)
    seen = observation(3, 190.0, ready=3, latency_ms=100.0, queue_ms=5.0)
    now_only = decide(s, seen, replace(climbing, rate_marks=climbing.rate_marks[1:]), NOW + 1)
    later = decide(s, seen, climbing, NOW + 1)
    assert later.replicas > now_only.replicas, (now_only.message, later.message)
    assert "30 req/s a minute or more for 3 minutes over a 300 s cold start" in later.message


def test_no_replicas_are_removed_under_what_the_climb_needs_once_they_have_started() -> None:
    """On the way up the planner sized the way down at the rate now (8 -> 6 -> 7 pods while they started)."""
    s = spec()
    climbing = replace(marks(100.0, 130.0, 160.0, 190.0), starts=(300.0,), last_rate=(NOW - 15, 190.0),
                       steady_rate=190.0, steady_since=NOW - 15, calm_since=NOW - 120)
    seen = observation(6, 190.0, ready=6, latency_ms=40.0, queue_ms=2.0)
    flat = decide(s, seen, replace(climbing, rate_marks=climbing.rate_marks[1:]), NOW + 1)
    up = decide(s, seen, climbing, NOW + 1)
    assert flat.replicas < up.replicas <= 6, (flat.message, up.message)
