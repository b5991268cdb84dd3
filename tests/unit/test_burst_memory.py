"""The shared limiting stage's burst memory (limits.py `remembered`, `holding_for_bursts`): after replicas removed
were needed back while the SLO was missed, none is removed for scaleDown.burstMemorySeconds. Driven through
the reactive rule (step_rule.decide), which passes every proposal through the same stage as the planner."""

from __future__ import annotations

from dataclasses import replace

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.limits import limit
from batchpilot.control.planner import decide as planner_decide
from batchpilot.control.step_rule import decide
from batchpilot.control.types import Decision, DecisionReason, History, Proposal, Tuning
from factories import NOW, observation, profile, service_spec

STABILIZATION_S = 60
SLO_MS = 100.0
CALM_MS, BREACH_MS = 10.0, 150.0
BASE_RATE, BURST_RATE = 10.0, 30.0


def spec(memory_s: int | None = None) -> InferenceServiceSpec:
    down: dict[str, int] = {"stabilizationSeconds": STABILIZATION_S}
    if memory_s is not None:
        down["burstMemorySeconds"] = memory_s
    return service_spec(slo_ms=SLO_MS, autoscaling={"minReplicas": 1, "maxReplicas": 4, "scaleDown": down})


def tick(spec_: InferenceServiceSpec, replicas: int, latency: float, history: History, at: float,
         ready: int | None = None, rate: float = BASE_RATE) -> Decision:
    return decide(spec_, observation(replicas, rate, ready=ready, latency_ms=latency), history, at)


def after_a_burst(spec_: InferenceServiceSpec) -> History:
    """2 replicas breach under a burst -> 3 (the rate of that scale-up is remembered), then the load falls back."""
    up = tick(spec_, 2, BREACH_MS, History(), NOW - 300, rate=BURST_RATE)
    assert (up.replicas, up.history.up_rate) == (3, BURST_RATE), up.message
    return up.history


def burst_after_a_scale_down(spec_: InferenceServiceSpec) -> tuple[Decision, float]:
    """After a burst, 3 replicas calm at the base load -> 2 after the stabilization window; the next burst breaches
    the SLO -> 3, and the SLO is still missed while the third starts. Returns the decision at that miss and its
    time."""
    calm = tick(spec_, 3, CALM_MS, after_a_burst(spec_), NOW)
    down = tick(spec_, 3, CALM_MS, calm.history, NOW + STABILIZATION_S)
    assert (down.replicas, down.reason) == (2, "ScaleDown"), down.message
    assert down.history.removed_at == NOW + STABILIZATION_S
    at = NOW + STABILIZATION_S + 120
    up = tick(spec_, 2, BREACH_MS, down.history, at, rate=BURST_RATE)
    assert up.replicas == 3, up.message
    starting = tick(spec_, 3, BREACH_MS, up.history, at + 15, ready=2, rate=BURST_RATE)
    assert starting.replicas == 3, starting.message
    return starting, at + 15


def test_replicas_needed_back_while_the_slo_was_missed_are_held_for_the_memory() -> None:
    spec_ = spec()
    missed, at = burst_after_a_scale_down(spec_)
    assert missed.history.missed_at == at
    # The burst is over: calm for far longer than the stabilization window, and nothing is removed.
    held = missed
    for t in range(30, 1800, 30):
        held = tick(spec_, 3, CALM_MS, held.history, at + t)
        assert (held.replicas, held.reason) == (3, "HoldingForBursts"), held.message
    assert "scaleDown.burstMemorySeconds, 1800s" in held.message and held.history.calm_since is None
    # A whole memory without a miss: the stabilization window starts, then the scale-down.
    free = tick(spec_, 3, CALM_MS, held.history, at + 1800)
    assert (free.replicas, free.reason) == (3, "Stabilizing"), free.message
    down = tick(spec_, 3, CALM_MS, free.history, at + 1800 + STABILIZATION_S)
    assert (down.replicas, down.reason) == (2, "ScaleDown"), down.message


def test_a_load_that_falls_and_stays_down_scales_down_as_before() -> None:
    """No miss after the scale-down: the next one follows its own stabilization window."""
    spec_, history, at, replicas = spec(), after_a_burst(spec()), NOW, 4
    while replicas > 1:
        first = tick(spec_, replicas, CALM_MS, history, at)
        done = tick(spec_, replicas, CALM_MS, first.history, at + STABILIZATION_S)
        assert (done.replicas, done.reason) == (replicas - 1, "ScaleDown"), done.message
        history, at, replicas = done.history, at + STABILIZATION_S + 15, done.replicas
    assert history.missed_at is None


def test_a_miss_without_a_scale_down_before_it_holds_nothing() -> None:
    """The first burst (nothing was removed before it) says nothing about gaps between bursts."""
    spec_ = spec()
    up = tick(spec_, 2, BREACH_MS, History(), NOW, rate=BURST_RATE)
    starting = tick(spec_, 3, BREACH_MS, up.history, NOW + 15, ready=2, rate=BURST_RATE)
    assert starting.history.missed_at is None
    calm = tick(spec_, 3, CALM_MS, starting.history, NOW + 60)
    down = tick(spec_, 3, CALM_MS, calm.history, NOW + 60 + STABILIZATION_S)
    assert (down.replicas, down.reason) == (2, "ScaleDown"), down.message


def test_a_miss_older_than_the_memory_after_its_scale_down_holds_nothing() -> None:
    spec_ = spec(memory_s=300)
    calm = tick(spec_, 3, CALM_MS, after_a_burst(spec_), NOW)
    down = tick(spec_, 3, CALM_MS, calm.history, NOW + STABILIZATION_S)
    late = NOW + STABILIZATION_S + 300
    up = tick(spec_, 2, BREACH_MS, down.history, late, rate=BURST_RATE)
    starting = tick(spec_, 3, BREACH_MS, up.history, late + 15, ready=2, rate=BURST_RATE)
    assert starting.history.missed_at is None


def test_zero_memory_never_holds() -> None:
    spec_ = spec(memory_s=0)
    missed, at = burst_after_a_scale_down(spec_)
    assert missed.history.missed_at is None
    calm = tick(spec_, 3, CALM_MS, missed.history, at + 30)
    down = tick(spec_, 3, CALM_MS, calm.history, at + 30 + STABILIZATION_S)
    assert (down.replicas, down.reason) == (2, "ScaleDown"), down.message


def test_a_later_miss_restarts_the_memory_and_a_higher_count_is_held_too() -> None:
    """The next burst needs more: the scale-up goes ahead through the hold, its miss restarts the memory, and the
    higher count is then held from that miss."""
    spec_ = spec()
    missed, at = burst_after_a_scale_down(spec_)
    held = tick(spec_, 3, CALM_MS, missed.history, at + 1500)
    assert held.reason == "HoldingForBursts", held.message
    up = tick(spec_, 3, BREACH_MS, held.history, at + 1515, rate=BURST_RATE)
    assert (up.replicas, up.reason) == (4, "ScaleUp"), up.message
    again = tick(spec_, 4, BREACH_MS, up.history, at + 1530, ready=3, rate=BURST_RATE)
    assert again.history.missed_at == at + 1530
    later = tick(spec_, 4, CALM_MS, again.history, at + 1530 + 1799)
    assert (later.replicas, later.reason) == (4, "HoldingForBursts"), later.message


def test_requests_failing_beyond_the_percentile_are_a_miss_and_fewer_are_not() -> None:
    """With rejectLateRequests the latency of what is served stays under the SLO while late requests fail: more
    than 5% of arrivals failing (p95) is a miss; 1% is within what the percentile leaves out."""
    spec_ = spec()
    calm = tick(spec_, 3, CALM_MS, after_a_burst(spec_), NOW)
    down = tick(spec_, 3, CALM_MS, calm.history, NOW + STABILIZATION_S)
    at = NOW + STABILIZATION_S + 60

    def starting(failure_rate: float) -> Decision:
        obs = observation(3, 100.0, ready=2, latency_ms=CALM_MS, failure_rate=failure_rate)
        return decide(spec_, obs, down.history, at)

    assert starting(failure_rate=6.0).history.missed_at == at
    assert starting(failure_rate=1.0).history.missed_at is None
    assert starting(failure_rate=5.0).history.missed_at is None  # exactly the 5% the percentile allows


def test_replicas_removed_at_an_unchanged_load_are_not_remembered() -> None:
    """Replicas a backlog asked for, removed once it drained at the load of the scale-up, were not the load's: a
    spike after them is no burst coming back, and nothing is held (a ramp's backlog, then a 20 s spike)."""
    spec_ = spec()
    up = tick(spec_, 2, BREACH_MS, History(), NOW - 300, rate=BASE_RATE)
    calm = tick(spec_, 3, CALM_MS, up.history, NOW)
    down = tick(spec_, 3, CALM_MS, calm.history, NOW + STABILIZATION_S)
    assert (down.replicas, down.history.removed_at) == (2, None), down.message
    spike = tick(spec_, 2, BREACH_MS, down.history, NOW + 600, rate=BURST_RATE)
    starting = tick(spec_, 3, BREACH_MS, spike.history, NOW + 615, ready=2, rate=BURST_RATE)
    assert starting.history.missed_at is None


def test_the_bursts_highest_rate_is_remembered_while_holding_and_forgotten_after() -> None:
    spec_ = spec()
    missed, at = burst_after_a_scale_down(spec_)
    assert missed.history.burst_rate == BURST_RATE
    calm = tick(spec_, 3, CALM_MS, missed.history, at + 30)
    assert calm.history.burst_rate == BURST_RATE  # the highest, not the rate now
    higher = tick(spec_, 3, CALM_MS, calm.history, at + 60, rate=BURST_RATE * 2)
    assert higher.history.burst_rate == BURST_RATE * 2
    assert higher.history.burst_returned_at == at + 60  # back after falling: the memory counts from here
    free = tick(spec_, 3, CALM_MS, higher.history, at + 60 + 1800)
    assert free.history.burst_rate is None


def held_through(spec_: InferenceServiceSpec, decision: Decision, start: float, end: float,
                 rates: dict[float, float] | None = None) -> Decision:
    """Ticks every 30 s from start to end (exclusive) at 3 calm replicas, at the base rate unless rates says
    otherwise from a time on; each must hold."""
    rates = rates or {}
    for at in range(int(start), int(end), 30):
        rate = next((r for since, r in sorted(rates.items(), reverse=True) if at >= since), BASE_RATE)
        decision = tick(spec_, 3, CALM_MS, decision.history, at, rate=rate)
        assert (decision.replicas, decision.reason) == (3, "HoldingForBursts"), (at, decision.message)
    return decision


def test_a_burst_that_comes_back_while_held_renews_the_hold() -> None:
    """Served by the capacity held, a burst misses nothing: held only from its last miss, the hold ran out between
    bursts that still came (MMPP, the burst after it failed as the first had). The rate back at the bursts' (within
    STEADY_BAND of their highest) after falling under it renews the hold as a miss does."""
    spec_ = spec()
    missed, at = burst_after_a_scale_down(spec_)
    back = at + 900
    # The burst ends (base rate), another comes back at 0.8 of the first's rate, served, and ends.
    held = held_through(spec_, missed, at + 30, back + 120, {back: BURST_RATE * 0.8, back + 60: BASE_RATE})
    assert held.history.burst_returned_at == back and held.history.missed_at == at
    assert "or the bursts' rate back, last" in held.message
    held = held_through(spec_, held, back + 120, back + 1800)  # past the miss's memory: held from the burst back
    free = tick(spec_, 3, CALM_MS, held.history, back + 1800)
    assert (free.replicas, free.reason) == (3, "Stabilizing"), free.message
    assert (free.history.burst_returned_at, free.history.burst_rate) == (None, None)


def test_a_miss_holds_at_least_for_the_rate_the_removed_replicas_were_added_for() -> None:
    """A short burst's tail, read at the miss, is under its peak: the hold keeps what the load the removed replicas
    had been added for needs (the highest rate from their scale-up to the fall), not only the rates seen from the
    miss on."""
    spec_, peak = spec(), BURST_RATE * 1.2
    # rate() still climbed at the scale-up: the burst's peak is read a tick after it.
    climbed = tick(spec_, 3, CALM_MS, after_a_burst(spec_), NOW - 270, rate=peak)
    assert (climbed.replicas, climbed.history.up_rate, climbed.history.rise_peak) == (3, BURST_RATE, peak)
    down = tick(spec_, 3, CALM_MS, climbed.history, NOW)  # calm since the climbed tick: the window is over
    assert (down.replicas, down.history.removed_rate) == (2, peak), down.message
    at = NOW + STABILIZATION_S + 120
    tail = BURST_RATE * 0.6
    up = tick(spec_, 2, BREACH_MS, down.history, at, rate=tail)
    assert up.history.rise_peak == tail  # a scale-up starts the next rise's peak
    missed = tick(spec_, 3, BREACH_MS, up.history, at + 15, ready=2, rate=tail)
    assert (missed.history.missed_at, missed.history.burst_rate) == (at + 15, peak)


def test_a_load_that_stays_at_the_bursts_rate_or_comes_back_under_it_does_not_renew_the_hold() -> None:
    """Only a burst coming back is evidence that bursts recur: neither a load that stays at the bursts' rate from the
    miss on (a rise that holds), nor one that comes back under STEADY_BAND of it."""
    spec_ = spec()
    missed, at = burst_after_a_scale_down(spec_)
    stayed = held_through(spec_, missed, at + 30, at + 600, {at + 30: BURST_RATE})
    low = held_through(spec_, stayed, at + 600, at + 1800, {at + 600: BASE_RATE, at + 900: BURST_RATE * 0.79})
    assert low.history.burst_returned_at is None
    free = tick(spec_, 3, CALM_MS, low.history, at + 1800)
    assert free.reason == "Stabilizing", free.message


def holding_proposal(replicas: int, burst_replicas: int | None) -> Proposal:
    history = History(up_rate=BURST_RATE, removed_at=NOW - 600, missed_at=NOW - 300, burst_rate=BURST_RATE)
    return Proposal(replicas, DecisionReason.SCALE_DOWN, "calm", "calm", history, burst_replicas=burst_replicas)


def test_the_hold_goes_down_to_the_count_the_bursts_rate_needs_and_no_lower() -> None:
    """A policy that knows the count for the bursts' highest rate (the planner: Proposal.burst_replicas) holds that
    many, not the count their backlog asked for on top; one that does not (None) holds the running count."""
    spec_, calm = spec(), observation(4, BASE_RATE, latency_ms=CALM_MS)
    first = limit(spec_, calm, holding_proposal(1, burst_replicas=3), NOW)
    assert (first.replicas, first.reason) == (4, "Stabilizing"), first.message
    down = limit(spec_, calm, replace(holding_proposal(1, burst_replicas=3), history=first.history),
                 NOW + STABILIZATION_S)
    assert (down.replicas, down.reason) == (3, "ScaleDown"), down.message
    assert "no fewer than 3, the count for the bursts' 30.0 req/s" in down.message
    for enough in (4, 5, None):
        held = limit(spec_, calm, holding_proposal(1, burst_replicas=enough), NOW)
        assert (held.replicas, held.reason) == (4, "HoldingForBursts"), held.message
    # A proposal above the floor is the proposal: the floor only stops the way down.
    above = limit(spec_, calm, replace(holding_proposal(3, burst_replicas=2), history=first.history),
                  NOW + STABILIZATION_S)
    assert above.replicas == 3, above.message


def test_a_held_count_keeps_the_pods_batching() -> None:
    """The plan's batching is for the fewer replicas it would run: while the count is held, the pods keep theirs (on
    the H200 MMPP with maxInstanceCount 4, the held pods changed instance counts every few minutes)."""
    spec_, calm = spec(), observation(4, BASE_RATE, latency_ms=CALM_MS)
    wanted = replace(holding_proposal(1, burst_replicas=None), batching=Tuning(0, 2))
    held = limit(spec_, calm, wanted, NOW)
    assert (held.replicas, held.reason, held.batching) == (4, "HoldingForBursts", None), held.message
    first = limit(spec_, calm, replace(wanted, burst_replicas=3), NOW)
    down = limit(spec_, calm, replace(wanted, burst_replicas=3, history=first.history), NOW + STABILIZATION_S)
    assert (down.replicas, down.batching) == (3, Tuning(0, 2))  # going down to the floor, the plan's batching goes


def planner_spec() -> InferenceServiceSpec:
    return service_spec(model={"maxBatchSize": 4, "profile": profile()}, slo_ms=150, autoscaling={
        "minReplicas": 1, "maxReplicas": 8, "scaleDown": {"stabilizationSeconds": STABILIZATION_S}})


def test_the_planner_holds_what_it_plans_for_the_bursts_rate_once_every_replica_is_ready() -> None:
    """The planner's floor is its own plan at the bursts' highest rate on the way down (300 req/s: 5 of the
    profile's pods, where 60 req/s needs 1); while replicas are still starting the running count is held whole
    (the Deployment would remove the starting ones, and with them the next burst's chances of a pod that starts
    soon)."""
    spec_ = planner_spec()
    history = History(up_rate=300.0, removed_at=NOW - 600, missed_at=NOW - 300, burst_rate=300.0)
    calm = observation(7, 60.0, latency_ms=50.0, queue_ms=1.0)
    first = planner_decide(spec_, calm, history, NOW)
    assert (first.replicas, first.reason) == (7, "Stabilizing"), first.message
    down = planner_decide(spec_, calm, first.history, NOW + STABILIZATION_S)
    assert (down.replicas, down.reason) == (5, "ScaleDown"), down.message
    starting = observation(7, 60.0, ready=6, latency_ms=50.0, queue_ms=1.0)
    for at in (NOW, NOW + STABILIZATION_S):
        held = planner_decide(spec_, starting, history, at)
        assert (held.replicas, held.reason) == (7, "HoldingForBursts"), held.message


def test_a_hold_resumed_after_a_restart_keeps_the_running_count_until_the_next_miss() -> None:
    """status keeps when the SLO was missed, not the bursts' rate: a resumed hold keeps what runs rather than plan
    for the low rate now."""
    spec_ = planner_spec()
    resumed = History(removed_at=NOW - 600, missed_at=NOW - 300)
    calm = observation(7, 60.0, latency_ms=50.0, queue_ms=1.0)
    for at in (NOW, NOW + STABILIZATION_S, NOW + 2 * STABILIZATION_S):
        held = planner_decide(spec_, calm, resumed, at)
        assert (held.replicas, held.reason) == (7, "HoldingForBursts"), held.message
        assert held.history.burst_rate is None
        resumed = held.history
