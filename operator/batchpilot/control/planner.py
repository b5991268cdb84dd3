"""The replica planner: the fewest replicas whose predicted latency meets the SLO with margin.

decide(spec, observation, history, now) -> Decision is pure: the operator, the tests and a simulator call it.
Each tick it learns from the observation (compute time per batch size, unexplained overhead), predicts the
latency of every (replica count, queue delay) at the observed arrival rate, and picks the cheapest that meets
`slo.latencyMs * TARGET_FRACTION` (replica_search finds it as trying every count would, without predicting
most: ~2 ms at maxReplicas 1000). When no count can, because requests wait for batches rather than for
capacity, it says so (BatchingBound) instead of adding replicas. spec.replicas pins the count (ManualReplicas);
with spec.autoscaling.mode external an HPA or KEDA owns it and the count that runs is kept (ExternalReplicas).
While the model knows nothing yet it falls back to the reactive rule. Measurements outrank the model where they
cover the running count at the current load: a count seen slow is not returned to (seen_slow), and a count seen
within half of each margin is kept although the model asks for more (held), and a count that has served a steady
load well for five minutes tries one replica fewer when the model gives that one half of each margin (tried_fewer).

The planner only proposes (a `Proposal`: the count it wants, its reason and evidence); the shared stage in
limits.py applies bounds, the readiness wait, the cooldown, the steps, the stabilization window and the retune
pacing, the same for the reactive rule (step_rule.py).

Instances per pod (auto with spec.batching.maxInstanceCount): the model assumes instances gain nothing until it
has measured how batches in flight together slow each other (contention), so before adding a replica the planner
tries one instance more on the running pods (ProbingInstances) when that could serve the rise, learns the
contention from Triton's statistics, and from then on weighs every instance count like any other candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control import step_rule
from batchpilot.control.batch_stats import MIN_EXECUTIONS
from batchpilot.control.capacity import MIN_OVERLAP, Candidate, CapacityModel, Prediction
from batchpilot.control.limits import STEADY_BAND, cooling_down, holding_for_bursts, limit, paced
from batchpilot.control.replica_search import At, first_meeting, first_within, lowest_latency
from batchpilot.control.types import Decision, DecisionReason, History, Observation, Proposal, Tuning

TARGET_FRACTION = 0.8
"""Plan for this fraction of the SLO: the margin absorbs prediction error and arrival bursts."""
SCALE_DOWN_FRACTION = 0.76
"""Remove replicas only if the smaller count is predicted under this fraction of the SLO, tighter than
TARGET_FRACTION: a count chosen going down always satisfies the test going up, so the two never flap."""
SUMMARY_WINDOW_S = 60.0
"""Triton's latency summaries cover about this long: no calibration against them sooner after a change of
replicas or of load."""
HELD_MARGIN = 0.5
"""The share of each planning margin (latency: 1 - TARGET_FRACTION of the SLO; utilization: 1 - targetUtilization)
a running count keeps when its own measurements cover the load (held()): the margins are for a prediction's error
and for growth, and a minute of the count's own summary at a load that holds has neither."""


DELAY_STEPS_US = (0, 100, 250, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000)
"""Queue delays auto mode considers (plus its two bounds)."""
DELAY_GAIN = 0.1
"""A new queue delay must predict at least this much lower latency (or fewer replicas) to replace the current."""
LATENCY_RETUNE_S = 300.0
"""A change of batching for latency alone (the same replicas) waits this long after the last retune. Each reload
stalls every pod's requests for ~1.3 s: one per 5 minutes keeps that under 0.5% of the time, a tenth of what a p95
SLO leaves. A change that saves a replica waits only limits.RETUNE_INTERVAL_S."""
PROBE_S = 60.0
"""The longest a probe of one instance more holds the replica count while its compute times are measured."""
BACKLOG_DRAIN_S = 60.0
"""Requests already queued in Triton are planned for as extra arrivals spread over this long: after an overload
the service must clear its backlog, not only keep up with new requests (e.g. 60,000 queued -> +1,000 req/s).
In steady state the queue holds about one batch per pod, a negligible addition."""

TRIAL_S = 300.0
"""A count that has served a steady load this long, within the planning target, tries one replica fewer when the
model predicts that one within half of each margin (tried_fewer)."""
FELL_S = 1800.0
"""No trial of one replica fewer for this long after the load fell out of its steady band: a load that was higher
half an hour ago may come back (MMPP flash crowds: trials between bursts cost 0.3-2.1 points of attainment)."""

RISE_BAND = STEADY_BAND
"""A rate more than this fraction above the previous tick's is a rise: the plan projects it forward."""
TREND_STEP_S = 60.0
"""The arrival rate is marked this often (History.rate_marks) to see a rise that lasts minutes (trend)."""
TREND_MARKS = 4
"""A trend is a rise over every one of the last TREND_MARKS - 1 steps: three minutes of climbing, which a step or a
flash crowd (one jump, then flat) never shows, and a stationary load's noise rarely (TREND_FLOOR)."""
TREND_FLOOR = 0.02
"""Each step of a trend rises at least this fraction of its starting rate per minute. The compressed day's morning
rise (its minutes 44-50) climbed 85-108 req/s a minute at 2,600-3,300 req/s, about 3%; a 30 s rate of Gamma CV 8
arrivals at 3,650 req/s wanders by about 2.4% (one standard deviation: a renewal count's variance is CV^2 times its
mean): a step of two readings a minute apart spreads by 3.4%, passes 2% by chance about 28% of the time, and three
in a row about 2% (what ahead() then plans for stays within the utilization margin unless the starts are long)."""
STARTS_SEEN = 5
"""The cold starts remembered (History.starts): the longest of them is expected of the next. Starts vary (a new
node takes 3-10 minutes); planning a climb over the last one alone left a compressed day's rise short by two pods
for minutes after a 3-minute start was followed by longer ones."""
START_AHEAD_MAX_S = 600.0
"""The longest a trend is carried ahead: a new node's cold start (3-10 minutes); a pod that has not started in that
time is stuck, not slow, and the trend past it is a guess."""


def projected(spec: InferenceServiceSpec, obs: Observation, history: History, now: float) -> float:
    """The arrival rate now, not the rate window's average: on a rise, the window's mean lags the load by half the
    window, so the rise since the previous tick is carried that far forward (a 2.5x step seen 15 s into a 30 s
    window reads ~1.75x; projected, ~2.5x). Only while the rise shows in the pods' queues too (more queued than a
    batch per instance on every ready pod: a rate window that is still filling, say at start, is no rise); never
    a fall (scale-down waits for the window anyway), a change within RISE_BAND (noise), or against a previous
    rate older than the window."""
    rate = obs.arrival_rate or 0.0
    one_round = max(1, obs.ready_replicas) * max(1, spec.model.max_batch_size) * max(1, obs.instance_count)
    if history.last_rate is None or obs.window_s <= 0 or (obs.pending or 0.0) <= one_round:
        return rate
    at, before = history.last_rate
    if history.steady_since == at:
        return rate  # the rise was seen (and projected) last tick: the window has caught up with it since
    gap = now - at
    if gap <= 0 or gap > obs.window_s or rate <= before * (1 + RISE_BAND):
        return rate
    return rate + (rate - before) * (obs.window_s / 2) / gap


def marked(history: History, rate: float, now: float) -> History:
    """History with this tick's rate among the trend's marks when TREND_STEP_S has passed since the last one."""
    marks = history.rate_marks
    if marks and now - marks[-1][0] < TREND_STEP_S:
        return history
    return replace(history, rate_marks=(*marks, (now, rate))[-TREND_MARKS:])


def trend(history: History) -> float:
    """How fast the load has been climbing, requests/s per second: the slowest of the last TREND_MARKS - 1 steps
    between marks, when every one of them rose by TREND_FLOOR a minute or more; else 0 (no trend)."""
    marks = history.rate_marks
    if len(marks) < TREND_MARKS:
        return 0.0
    slopes = []
    for (t0, r0), (t1, r1) in zip(marks, marks[1:], strict=False):
        gap = t1 - t0
        if gap > 2 * TREND_STEP_S or r1 - r0 < TREND_FLOOR * r0 * gap / 60.0:
            return 0.0  # a gap in the marks (no metrics, a restart), or a step that did not climb
        slopes.append((r1 - r0) / gap)
    return min(slopes)


def started(history: History, obs: Observation, now: float) -> History:
    """History with the cold start measured: the replicas asked for at `asked` are ready after now - asked, and
    replicas starting that the loop did not time from its own scale-up (asking()), after a restart or a pod
    replaced, are timed from this tick (a scale-down while they start ends the timing without a measure)."""
    asked, starts = history.asked, history.starts
    if asked is not None and obs.ready_replicas >= min(asked[1], obs.replicas):
        if obs.replicas >= asked[1]:
            starts = (*starts, now - asked[0])[-STARTS_SEEN:]
        asked = None
    if asked is None and obs.replicas > obs.ready_replicas:
        asked = (now, obs.replicas)
    return replace(history, asked=asked, starts=starts)


def start_ahead(history: History, now: float) -> float:
    """How long a replica asked for now will take to serve, as far as seen: the longest of the last STARTS_SEEN cold
    starts measured, or the time the replicas starting now have taken so far if longer; at most START_AHEAD_MAX_S
    (0: none seen yet)."""
    waited = now - history.asked[0] if history.asked is not None else 0.0
    return min(START_AHEAD_MAX_S, max((*history.starts, waited)))


def ahead(spec: InferenceServiceSpec, history: History, rate: float, now: float) -> float:
    """The rate at which to plan: `rate`, or more where the trend carried over the cold start (start_ahead) climbs
    past what the plan's margin for growth covers. A load that has climbed for minutes climbs on while the replicas
    asked for start: planning for the load now, a 10-minute ramp to 5x outran a new node's 3-10 minute starts by 1-4
    pods and lost 4.7% of its requests. The utilization margin (1 - targetUtilization) is for a prediction's error
    and for growth; held() keeps HELD_MARGIN of it for the error, so the rest is what growth may use: the plan at
    targetUtilization for the rate returned reaches only the held utilization at the rate the trend reaches (a
    compressed day's climb over 20-60 s starts stays within it, and so does a stationary load's noise)."""
    climb = trend(history) * start_ahead(history, now)
    if climb <= 0:
        return rate
    target = spec.autoscaling.target_utilization
    return max(rate, (rate + climb) * target / held_limits(spec)[1])


def candidate(spec: InferenceServiceSpec, replicas: int, delay_us: int | None = None,
              instances: int | None = None) -> Candidate:
    delay = spec.batching.max_queue_delay_microseconds if delay_us is None else delay_us
    count = spec.batching.instance_count if instances is None else instances
    return Candidate(replicas, spec.model.max_batch_size, delay, tuple(spec.batching.preferred_batch_sizes or ()),
                     count)


def instance_choices(spec: InferenceServiceSpec) -> list[int]:
    """Instance counts the planner may pick: 1..maxInstanceCount in auto mode when it is set, else the spec's."""
    b = spec.batching
    if b.mode != "auto" or b.max_instance_count is None:
        return [b.instance_count]
    return list(range(1, b.max_instance_count + 1))


def delay_choices(spec: InferenceServiceSpec) -> list[int]:
    """Queue delays the planner may pick: the bounds and the steps between them (auto), else the spec's."""
    b = spec.batching
    if b.mode != "auto" or spec.model.max_batch_size == 0:
        return [b.max_queue_delay_microseconds]
    lo, hi = b.min_queue_delay_microseconds, b.max_queue_delay_microseconds
    return sorted({lo, hi, *(d for d in DELAY_STEPS_US if lo <= d <= hi)})


def seeded(spec: InferenceServiceSpec, model: CapacityModel) -> CapacityModel:
    """The history's model, seeded from spec.model.profile the first time."""
    profile = spec.model.profile
    if model.seed or profile is None:
        return model
    return replace(model, seed=CapacityModel.from_profile((p.batch_size, p.latency_ms) for p in profile.points).seed)


def steady(history: History, rate: float, now: float) -> History:
    """History with the steady stretch of load extended, or restarted when the rate moved out of the band (which
    forgets the counts seen slow: they were slow at another load)."""
    ref = history.steady_rate
    if ref is not None and abs(rate - ref) <= STEADY_BAND * max(ref, 1.0):
        return history
    fell_at = now if ref is not None and rate < ref else history.fell_at
    return replace(history, steady_rate=rate, steady_since=now, slow_at=None, tried=None, fell_at=fell_at)


def seen_slow(spec: InferenceServiceSpec, obs: Observation, history: History, now: float) -> History:
    """History with this observation's evidence of a count too small for the load, whatever the model predicts.

    A count counts as seen slow when its latency at the SLO percentile is over TARGET_FRACTION of the SLO after
    every one of its replicas has served for SUMMARY_WINDOW_S (Triton's summary then covers that count alone). The
    planner then keeps more than the most replicas seen slow while the load stays within STEADY_BAND (steady()):
    without this, a bursty load (Gamma CV 8) the model reads as fitting in 6 pods went 7 -> 6 -> 7 fifteen times
    an hour and lost 0.3-0.5 points of SLO attainment.
    """
    if obs.ready_replicas < obs.replicas:
        return replace(history, serving=None)
    if history.serving is None or history.serving[0] != obs.replicas:
        return replace(history, serving=(obs.replicas, now))
    served = now - history.serving[1] >= SUMMARY_WINDOW_S
    if served and obs.latency_ms is not None and obs.latency_ms > TARGET_FRACTION * spec.slo.latency_ms:
        return replace(history, slow_at=max(history.slow_at or 0, obs.replicas))
    return history


def held_limits(spec: InferenceServiceSpec) -> tuple[float, float]:
    """(latency ms, utilization) a count may reach and be kept (held) or tried (tried_fewer): HELD_MARGIN of each
    planning margin."""
    target_util = spec.autoscaling.target_utilization
    return ((TARGET_FRACTION + (1 - TARGET_FRACTION) * HELD_MARGIN) * spec.slo.latency_ms,
            target_util + (1 - target_util) * HELD_MARGIN)


def held(spec: InferenceServiceSpec, obs: Observation, history: History, model: CapacityModel, plan_: Plan,
         rate: float, now: float) -> str | None:
    """Why the running count is kept although the plan asks for more (HELD_MARGIN), or None.

    Only on evidence of this count at this load: every replica has served for SUMMARY_WINDOW_S, and the load has
    stayed within STEADY_BAND for as long (Triton's summary then covers this count at this load). Only while the
    load has not grown: no rise projected, and the rate within half the band above where the steady stretch began
    (the utilization margin is also for growth during a cold start; a compressed day's slow climb held this way
    lost 0.4 points with a new node's cold starts). And only within half of each margin: the latency at the SLO
    percentile, measured and predicted at the running count, under 90% of the SLO (TARGET_FRACTION 0.8), and the
    predicted utilization under 0.925 (targetUtilization 0.85). Without it a bursty load (Gamma CV 8) whose p95 sat
    at 164-172 ms on 6 pods (SLO 200 ms) ran 7 for the hour: 16% more GPU-hours than KEDA's rate threshold tuned
    on the trace.
    """
    limit_ms, limit_util = held_limits(spec)
    latency, serving, since, ref = obs.latency_ms, history.serving, history.steady_since, history.steady_rate
    if serving is None or serving[0] != obs.replicas or since is None or ref is None or \
            now - since < SUMMARY_WINDOW_S:
        return None
    fresh = history.tried == obs.replicas and now - serving[1] < SUMMARY_WINDOW_S
    if not fresh and (latency is None or latency > limit_ms or now - serving[1] < SUMMARY_WINDOW_S):
        return None
    if rate > (obs.arrival_rate or 0.0) or rate > ref * (1 + STEADY_BAND / 2):
        return None
    tuned = plan_.batching
    at_count = model.predict(rate, candidate(spec, obs.replicas, tuned.queue_delay_us, tuned.instance_count),
                             spec.slo.percentile)
    if at_count.latency_ms > limit_ms or at_count.utilization > limit_util:
        return None
    if fresh:
        return (f"{plan_.replicas} by the model at {TARGET_FRACTION * spec.slo.latency_ms:g} ms, but "
                f"{obs.replicas} is on trial (predicted {at_count.latency_ms:.0f} ms, utilization "
                f"{at_count.utilization:.2f}): keeping {obs.replicas} until its p{spec.slo.percentile} is measured")
    return (f"{plan_.replicas} by the model at {TARGET_FRACTION * spec.slo.latency_ms:g} ms, but "
            f"p{spec.slo.percentile} has been {latency:.0f} ms (under {limit_ms:g} ms) at {obs.replicas} replica(s) "
            f"for a minute at this load: keeping {obs.replicas}")


def tried_fewer(spec: InferenceServiceSpec, obs: Observation, history: History, model: CapacityModel, plan_: Plan,
                rate: float, now: float) -> str | None:
    """Why one replica fewer than the running count is worth a trial, or None.

    The planning margins are for a prediction's error and for growth; a count that has served a steady load for
    TRIAL_S within the planning target, with no growth, has measured both, unless the load fell out of its band
    within FELL_S (it may come back). One replica fewer is tried when the model predicts it within half of each
    margin (held_limits) and it was not seen slow at this load; held() then keeps it through its first summary
    window and afterwards on its own p95, and seen_slow() ends the trial (and any other at this load) if that p95
    exceeds the planning target.
    """
    fewer, serving, since, ref = obs.replicas - 1, history.serving, history.steady_since, history.steady_rate
    latency = obs.latency_ms
    if fewer < spec.autoscaling.min_replicas or latency is None or latency > TARGET_FRACTION * spec.slo.latency_ms:
        return None
    if serving is None or serving[0] != obs.replicas or since is None or ref is None or \
            min(now - serving[1], now - since) < TRIAL_S:
        return None
    if rate > (obs.arrival_rate or 0.0) or rate > ref * (1 + STEADY_BAND / 2) or (history.slow_at or 0) >= fewer:
        return None
    if history.fell_at is not None and now - history.fell_at < FELL_S:
        return None
    limit_ms, limit_util = held_limits(spec)
    tuned = plan_.batching
    at_fewer = model.predict(rate, candidate(spec, fewer, tuned.queue_delay_us, tuned.instance_count),
                             spec.slo.percentile)
    if at_fewer.latency_ms > limit_ms or at_fewer.utilization > limit_util:
        return None
    return (f"p{spec.slo.percentile} has been {latency:.0f} ms at {obs.replicas} replica(s) for "
            f"{TRIAL_S / 60:g} minutes at this load, and {fewer} is predicted at {at_fewer.latency_ms:.0f} ms, "
            f"utilization {at_fewer.utilization:.2f}: trying {fewer}")


def learn(spec: InferenceServiceSpec, obs: Observation, model: CapacityModel, history: History,
          now: float) -> CapacityModel:
    """The model after this observation: compute time per batch size, then the overhead.

    Triton's per-batch-size statistics, when they arrived, are learned as they are; only without them the
    mean batch size and mean compute time stand in (a mix of batch sizes blurs that pair).
    """
    measured = [m for m in obs.batch_compute if m.executions >= MIN_EXECUTIONS]
    in_flight = obs.concurrency or 0.0
    if obs.instance_count > 1 and in_flight >= MIN_OVERLAP and model.known:
        # Batches ran side by side: their times tell the contention, not the time of a batch alone.
        model = model.learn_contention(measured, in_flight)
    else:
        for m in measured:
            model = model.learn(m.batch_size, m.compute_ms)
    if obs.avg_batch_size is None or obs.compute_ms is None or not obs.arrival_rate:
        return model
    if not obs.batch_compute and obs.instance_count == 1:
        # Instance counts are learned from per-batch statistics only: the means' window may span a change.
        model = model.learn(obs.avg_batch_size, obs.compute_ms)
    # The p95 summary spans a minute: calibrate only on a healthy service whose replicas and load have not
    # changed for that long, never on an overload episode (queueing the model explains by utilization >= 1).
    unchanged = history.last_scale_at is None or now - history.last_scale_at >= SUMMARY_WINDOW_S
    settled = unchanged and history.steady_since is not None and now - history.steady_since >= SUMMARY_WINDOW_S
    fresh_ms = (obs.queue_ms or 0.0) + obs.compute_ms
    healthy = obs.latency_ms is not None and obs.latency_ms <= spec.slo.latency_ms and \
        fresh_ms <= TARGET_FRACTION * spec.slo.latency_ms
    if settled and healthy and obs.latency_ms is not None and obs.replicas == obs.ready_replicas:
        bare = replace(model, overhead_ms=0.0).predict(
            obs.arrival_rate, candidate(spec, obs.replicas, obs.queue_delay_us, obs.instance_count),
            spec.slo.percentile)
        if bare.utilization < spec.autoscaling.target_utilization:
            model = model.calibrate(obs.latency_ms, bare.latency_ms)
    return model


def fewest(spec: InferenceServiceSpec, model: CapacityModel, rate: float, latency_ms: float,
           utilization: float, delay_us: int | None = None, instances: int | None = None) -> tuple[int, Prediction]:
    """Fewest replicas within bounds predicted under latency_ms and utilization (maxReplicas if none is).

    What trying every count from minReplicas up finds, without predicting most of them (replica_search).
    """
    start = _first_within(spec, model, rate, utilization, delay_us, instances)
    return _fewest_from(spec, model, rate, latency_ms, utilization, delay_us, instances, start)


def _at(spec: InferenceServiceSpec, delay_us: int | None, instances: int | None) -> At:
    return lambda n: candidate(spec, n, delay_us, instances)


def _first_within(spec: InferenceServiceSpec, model: CapacityModel, rate: float, utilization: float,
                  delay_us: int | None, instances: int | None) -> int:
    bounds = spec.autoscaling
    return first_within(model, rate, utilization, _at(spec, delay_us, instances), bounds.min_replicas,
                        bounds.max_replicas)


def _fewest_from(spec: InferenceServiceSpec, model: CapacityModel, rate: float, latency_ms: float,
                 utilization: float, delay_us: int | None, instances: int | None,
                 start: int) -> tuple[int, Prediction]:
    """fewest(), knowing that no count below start meets it."""
    at, top, p = _at(spec, delay_us, instances), spec.autoscaling.max_replicas, spec.slo.percentile
    found = first_meeting(model, rate, latency_ms, utilization, at, start, top, p)
    return found if found is not None else (top, model.predict(rate, at(top), p))


@dataclass(frozen=True)
class Plan:
    replicas: int
    batching: Tuning
    prediction: Prediction


def plan(spec: InferenceServiceSpec, model: CapacityModel, rate: float, latency_ms: float, utilization: float,
         current_delay: int | None = None, current_instances: int | None = None,
         for_latency: bool = True) -> Plan:
    """Replicas and batching together: the fewest replicas first, then the lowest predicted latency, then the
    fewest instances.

    A delay that makes batches wait without buying capacity loses on latency, so a poor delay is shortened;
    one that saves replicas wins. The current batching stays unless another saves a replica or DELAY_GAIN of
    the latency, so pods are not reloaded for noise; with for_latency False (a retune less than LATENCY_RETUNE_S
    ago), unless another saves a replica.
    """
    options = plan_options(spec, model, rate, latency_ms, utilization)
    best = min(options, key=lambda o: (o.replicas, o.prediction.latency_ms, o.batching.instance_count,
                                       o.batching.queue_delay_us))
    running = Tuning(current_delay, current_instances or spec.batching.instance_count) \
        if current_delay is not None else None
    kept = next((o for o in options if o.batching == running), None)
    if kept is not None and kept.replicas == best.replicas and \
            (not for_latency or kept.prediction.latency_ms <= best.prediction.latency_ms * (1 + DELAY_GAIN)):
        return kept
    return best


def plan_options(spec: InferenceServiceSpec, model: CapacityModel, rate: float, latency_ms: float,
                 utilization: float) -> list[Plan]:
    """fewest() for every queue delay (outer) and instance count (inner) the planner may pick."""
    delays, top = delay_choices(spec), spec.autoscaling.max_replicas
    by_batching: dict[tuple[int, int], Plan] = {}
    for k in instance_choices(spec):
        # Utilization does not depend on the delay, and a longer delay predicts no less latency at any count
        # (only the wait for a fill grows): each delay's fewest is at least the shorter one's.
        start = _first_within(spec, model, rate, utilization, None, k)
        for d in sorted(delays):
            replicas, prediction = _fewest_from(spec, model, rate, latency_ms, utilization, d, k, start)
            by_batching[(d, k)] = Plan(replicas, Tuning(d, k), prediction)
            met = prediction.latency_ms <= latency_ms and prediction.utilization <= utilization
            start = replicas if met else top + 1
    return [by_batching[(d, k)] for d in delays for k in instance_choices(spec)]


def batching_bound(spec: InferenceServiceSpec, model: CapacityModel, rate: float, latency_ms: float,
                   utilization: float, delay_us: int, instances: int) -> tuple[int, Prediction] | None:
    """When no replica count meets latency_ms only because requests wait for batches to fill at delay_us, the
    count with the lowest predicted latency (more replicas would lengthen the wait); None when capacity is the
    limit or some count meets it.
    """
    if spec.model.max_batch_size <= 1 or spec.batching.mode == "off" or delay_us == 0:
        return None
    p, top, at = spec.slo.percentile, spec.autoscaling.max_replicas, _at(spec, delay_us, instances)
    # The counts within the utilization are those from the first one up (replica_search).
    start = _first_within(spec, model, rate, utilization, delay_us, instances)
    if first_meeting(model, rate, latency_ms, utilization, at, start, top, p) is not None:
        return None  # some count meets it
    found = lowest_latency(model, rate, at, start, top, p)
    if found is None:
        return None
    without_wait = model.predict(rate, candidate(spec, found[0], 0, instances), p)
    return found if without_wait.latency_ms <= latency_ms else None


def _ms(value: float) -> str:
    return "overload" if math.isinf(value) else f"{value:.0f} ms"


def decide(spec: InferenceServiceSpec, obs: Observation, history: History, now: float) -> Decision:
    """The replicas (and, in auto batching, the queue delay and instances) for this observation, with the reason."""
    decision = _planned(spec, obs, started(history, obs, now), now)
    if spec.autoscaling.mode == "external" and not spec.paused:
        decision = _external(spec, obs, decision)
    elif spec.replicas is not None and not spec.paused:
        decision = _manual(spec, obs, decision, now)
    return asking(obs, paced(obs, decision, now), now)


def asking(obs: Observation, decision: Decision, now: float) -> Decision:
    """The decision, with the start of the replicas it adds timed from now, when no start is being timed already
    (started() measures it once they are all ready). A replica asked for now serves after that long: timed from the
    next tick, which is the first to see it starting, every start measured one control period short."""
    history = decision.history
    if decision.replicas <= obs.replicas or history.asked is not None:
        return decision
    return replace(decision, history=replace(history, asked=(now, decision.replicas)))


def _manual(spec: InferenceServiceSpec, obs: Observation, planned: Decision, now: float) -> Decision:
    """spec.replicas pins the count (within bounds); batching is still tuned, for that count."""
    bounds = spec.autoscaling
    assert spec.replicas is not None
    to = min(bounds.max_replicas, max(bounds.min_replicas, spec.replicas))
    history = planned.history if to == obs.replicas else replace(planned.history, last_scale_at=now)
    message = (f"spec.replicas pins {to} (the loop would run {planned.replicas}: {planned.message}); remove "
               f"spec.replicas to hand replicas back to the loop")
    return _batching_at(spec, obs, replace(planned, history=history), to, DecisionReason.MANUAL_REPLICAS, message)


def _external(spec: InferenceServiceSpec, obs: Observation, planned: Decision) -> Decision:
    """autoscaling.mode external: an HPA or KEDA owns the count; keep whatever runs, tune batching for it."""
    message = (f"replicas are owned by an HPA or KEDA (autoscaling.mode external): tuning batching for the "
               f"{obs.replicas} replica(s) it runs (Batchpilot's plan: {planned.replicas}: {planned.message})")
    return _batching_at(spec, obs, planned, obs.replicas, DecisionReason.EXTERNAL_REPLICAS, message)


def _batching_at(spec: InferenceServiceSpec, obs: Observation, planned: Decision, to: int, reason: DecisionReason,
                 message: str) -> Decision:
    """The planned decision at a count fixed elsewhere: the batching with the lowest predicted latency there."""
    batching, predicted = planned.batching, planned.predicted_latency_ms
    if batching is not None and obs.arrival_rate and to > 0:
        model, rate = planned.history.model, obs.arrival_rate
        options = [(model.predict(rate, candidate(spec, to, d, k), spec.slo.percentile).latency_ms, k, d)
                   for d in delay_choices(spec) for k in instance_choices(spec)]
        predicted, instances, delay = min(options)
        batching = Tuning(delay, instances)
    return replace(planned, replicas=to, reason=reason, message=message, predicted_latency_ms=predicted,
                   batching=batching)


def _planned(spec: InferenceServiceSpec, obs: Observation, history: History, now: float) -> Decision:
    """The planner's proposal through the shared limits; the reactive rule's while the model knows nothing yet."""
    model = seeded(spec, history.model)
    if spec.paused or obs.latency_ms is None or obs.arrival_rate is None or not (
            model.known or obs.avg_batch_size):
        # Paused, blind, or nothing learned yet: the reactive rule's holds and bounds apply.
        return step_rule.decide(spec, obs, replace(history, model=model), now)
    return limit(spec, obs, _burst_floor(spec, obs, _propose(spec, obs, history, model, now), now), now)


def _burst_floor(spec: InferenceServiceSpec, obs: Observation, proposal: Proposal, now: float) -> Proposal:
    """The proposal with, while the burst memory holds, the count planned for the held bursts' highest rate: the
    hold keeps what the bursts' load needs, not what their backlog (drained over BACKLOG_DRAIN_S) and the projection
    of their rise asked for on top (16-19 pods on MMPP where this plan for the bursts' 9,100 req/s is 15)."""
    history = proposal.history
    if history.burst_rate is None or not holding_for_bursts(spec, history, now) or \
            obs.ready_replicas < obs.replicas:
        # While replicas are starting the running count is held whole: removing the starting ones first (as the
        # Deployment does) leaves the next burst fewer chances of a pod that starts soon. So is it after a restart
        # (the bursts' rate is not in status) until the next miss.
        return proposal
    peak = max(history.burst_rate, obs.arrival_rate or 0.0)
    kept = plan(spec, history.model, peak, spec.slo.latency_ms * SCALE_DOWN_FRACTION,
                spec.autoscaling.target_utilization)
    return replace(proposal, burst_replicas=kept.replicas)


@dataclass(frozen=True)
class _Seen:
    """One tick's evidence: the plan at the arrival rate (plus backlog), and what it says in words."""

    plan: Plan
    text: str
    breach: bool
    """The fresh mean latency (queue + compute over the rate window) is above the SLO."""
    auto: bool
    """Batching mode auto: decisions carry the plan's queue delay and instances."""

    def proposal(self, replicas: int, reason: DecisionReason, history: History, message: str | None = None,
                 urgent: bool = False, waits_for_ready: bool = False) -> Proposal:
        return Proposal(replicas, reason, self.text, message or self.text, history, urgent=urgent,
                        waits_for_ready=waits_for_ready, predicted_latency_ms=self.plan.prediction.latency_ms,
                        batching=self.plan.batching if self.auto else None)


def _seen(spec: InferenceServiceSpec, obs: Observation, model: CapacityModel, rate: float, history: History,
          now: float) -> _Seen:
    """The plan at `rate` (the projected arrival rate) plus the backlog, with its evidence in words."""
    slo = spec.slo.latency_ms
    # Pods the cluster cannot place are capacity already asked for: a backlog that grows while they wait would
    # otherwise ask for more pods that cannot be placed either (at 200 services on a pool 1.3x their mean
    # demand, the asks grew to 1.6x the pool). Plan for the arrival rate alone until they are placed.
    backlog = 0.0 if obs.unschedulable else (obs.pending or 0.0) / BACKLOG_DRAIN_S
    # A retune for latency alone is paced while the latency meets the planning target, not while it misses it, nor
    # after a probe (its batching was a measurement, not a choice) until the next retune.
    retuned, at_risk, probed = history.last_retune_at, (obs.latency_ms or 0.0) > slo * TARGET_FRACTION, \
        history.probe_ended_at
    free = at_risk or history.probe_since is not None or retuned is None or now - retuned >= LATENCY_RETUNE_S or \
        (probed is not None and probed > retuned)
    best = plan(spec, model, rate + backlog, slo * TARGET_FRACTION, spec.autoscaling.target_utilization,
                obs.queue_delay_us, obs.instance_count, free)
    fresh_ms = (obs.queue_ms or 0.0) + (obs.compute_ms or 0.0)
    per_pod = f", {best.batching.instance_count} instance(s) per pod" if len(instance_choices(spec)) > 1 else ""
    seen_rate = obs.arrival_rate or 0.0
    climb, start = trend(history), start_ahead(history, now)
    lasting = f", {60 * climb:.0f} req/s a minute or more for {TREND_MARKS - 1} minutes over a {start:.0f} s cold start" \
        if climb > 0 and start > 0 else ""
    rising = f" (rising: {rate:.1f} req/s projected{lasting})" if rate > seen_rate else ""
    text = (f"{seen_rate:.1f} req/s{rising}, p{spec.slo.percentile} {obs.latency_ms or 0.0:.0f} ms (mean {fresh_ms:.0f} ms) vs "
            f"SLO {slo:g} ms; predicted {_ms(best.prediction.latency_ms)} at {best.replicas} replica(s), queue delay "
            f"{best.batching.queue_delay_us} us{per_pod}")
    if obs.unschedulable and obs.pending:
        text = (f"{text}; {obs.unschedulable} pod(s) unschedulable: the {obs.pending:.0f} queued request(s) are "
                f"not planned for until they are placed")
    return _Seen(best, text, fresh_ms > slo, spec.batching.mode == "auto")


def _bound(spec: InferenceServiceSpec, seen: _Seen, planned: int, predicted: Prediction) -> _Seen:
    """The evidence when no count meets the SLO only because requests wait for batches: say what to change."""
    bounds = spec.autoscaling
    knob = "minQueueDelayMicroseconds" if spec.batching.mode == "auto" else "maxQueueDelayMicroseconds"
    text = (f"{seen.text}; batching-bound: no count in {bounds.min_replicas}..{bounds.max_replicas} meets the SLO "
            f"while requests wait up to {seen.plan.batching.queue_delay_us} us for a batch; {planned} replica(s) give "
            f"the lowest predicted latency ({_ms(predicted.latency_ms)}): lower spec.batching.{knob}"
            f"{' or use mode auto' if spec.batching.mode == 'fixed' else ''}")
    return replace(seen, plan=replace(seen.plan, prediction=predicted), text=text)


def _probing(obs: Observation, seen: _Seen, count: int, message: str, history: History) -> Proposal:
    """Hold the replicas while the pods run `count` instances at the delay they run now (auto mode only)."""
    kept = obs.queue_delay_us if obs.queue_delay_us is not None else seen.plan.batching.queue_delay_us
    return replace(seen.proposal(obs.replicas, DecisionReason.PROBING_INSTANCES, history, f"{seen.text}; {message}"),
                   batching=Tuning(kept, count))


def _propose(spec: InferenceServiceSpec, obs: Observation, history: History, model: CapacityModel,
             now: float) -> Proposal:
    """What the planner would run now: the plan at the arrival rate, or a probe, a hold or fewer replicas."""
    bounds, current = spec.autoscaling, obs.replicas
    rate = projected(spec, obs, history, now)
    history = replace(steady(history, obs.arrival_rate or 0.0, now), last_rate=(now, obs.arrival_rate or 0.0))
    history = marked(history, obs.arrival_rate or 0.0, now)
    rate = ahead(spec, history, rate, now)
    history = seen_slow(spec, obs, history, now)
    model = learn(spec, obs, model, history, now)
    history = replace(history, model=model)
    seen = _seen(spec, obs, model, rate, history, now)
    if current < bounds.min_replicas or current > bounds.max_replicas:
        return seen.proposal(current, DecisionReason.WITHIN_SLO, history)  # the limits bring it within bounds
    if history.probe_since is not None:
        probe = history.probed[-1]
        if now - history.probe_since < PROBE_S and not model.measured_contention and not seen.breach:
            return _probing(obs, seen, probe, f"measuring {probe} instance(s) per pod for "
                            f"{now - history.probe_since:.0f}s of at most {PROBE_S:.0f}s before adding a replica",
                            history)
        history = replace(history, probe_since=None, probe_ended_at=now)
    return _replicas(spec, obs, history, model, seen, rate, now)


def _trial(spec: InferenceServiceSpec, obs: Observation, history: History, model: CapacityModel, seen: _Seen,
           projected_rate: float, now: float) -> Proposal | None:
    """The proposal of one replica fewer on trial (tried_fewer), or None."""
    why = tried_fewer(spec, obs, history, model, seen.plan, projected_rate, now)
    if why is None:
        return None
    trial = seen.proposal(obs.replicas - 1, DecisionReason.SCALE_DOWN, replace(history, tried=obs.replicas - 1))
    return replace(trial, evidence=f"{seen.text}; {why}", message=f"{seen.text}; {why}")


def _replicas(spec: InferenceServiceSpec, obs: Observation, history: History, model: CapacityModel, seen: _Seen,
              projected_rate: float, now: float) -> Proposal:
    """The count the plan (or a batching bound, or a breach the model cannot explain) asks for."""
    bounds, current, slo, planned = spec.autoscaling, obs.replicas, spec.slo.latency_ms, seen.plan.replicas
    rate, target_util, breach = obs.arrival_rate or 0.0, bounds.target_utilization, seen.breach
    bound = batching_bound(spec, model, rate, slo * TARGET_FRACTION, target_util,
                           seen.plan.batching.queue_delay_us, seen.plan.batching.instance_count)
    if bound is not None:
        # More replicas would only make batches wait longer: run the best count and say what to change.
        planned, predicted = bound
        seen = _bound(spec, seen, planned, predicted)
    unexplained = bound is None and breach and planned <= current
    if unexplained and (history.last_scale_at is None or now - history.last_scale_at >= obs.window_s):
        planned = min(bounds.max_replicas, current + 1)  # the model under-predicts a breach seen since the change
    if planned > current and bound is None and not breach and \
            (why := held(spec, obs, history, model, seen.plan, projected_rate, now)) is not None:
        return seen.proposal(current, DecisionReason.WITHIN_SLO, history, f"{seen.text}; {why}")
    if planned > current:
        # Starting replicas are in `current` already: a plan from the arrival rate that needs more than them goes
        # ahead (a GPU pod starts in 20 s to 10 min; waiting for each batch of pods before the next one turns
        # one step of load into a staircase). Only the extra replica for a breach the model cannot explain
        # waits for them (limits.py), since the starting replicas may be what the breach lacks.
        more = obs.instance_count + 1
        if not breach and bound is None and more in instance_choices(spec) and planned * obs.instance_count <= \
                current * more and not model.measured_contention and more not in history.probed and \
                not cooling_down(spec, history, now):
            # The model assumes instances gain nothing until it has seen them side by side: look before buying;
            # not for a rise beyond what one instance more could serve at best, (k + 1) / k of the pods' capacity
            # (a step's 3 -> 8 pods, which a probe held back a tick).
            probing = replace(history, probed=(*history.probed, more), probe_since=now)
            return _probing(obs, seen, more, f"trying {more} instance(s) per pod before adding a replica", probing)
        return seen.proposal(planned, DecisionReason.PANIC if breach else DecisionReason.SCALE_UP, history,
                             urgent=breach, waits_for_ready=unexplained)
    if bound is None and current == bounds.max_replicas and breach:
        return seen.proposal(current, DecisionReason.AT_MAX_REPLICAS, history, f"{seen.text}; already at maxReplicas")
    message = None
    if bound is not None:
        down_to = planned
    else:
        # The way-up utilization (a gap of 0.1 below it held a pod too many on Gamma CV 4; README "The scale-down
        # band"): the window's highest proposal (limits.py) and seen_slow() keep the way down from flapping instead.
        # While the load climbs for minutes (trend), at the rate it climbs to: a count sized for now would be
        # removed from the replicas still starting for the climb (8 -> 6 -> 7 pods on a ramp with a new node).
        down_rate = projected_rate if trend(history) > 0 else rate
        down_to = plan(spec, model, down_rate, slo * SCALE_DOWN_FRACTION, target_util).replicas
        if history.slow_at is not None and down_to <= history.slow_at and down_to < current:
            message = (f"{seen.text}; {down_to} would do by the model, but p{spec.slo.percentile} was over "
                       f"{TARGET_FRACTION * slo:g} ms at {history.slow_at} replica(s) at this load: keeping more")
            down_to = history.slow_at + 1
        elif down_to >= current and not breach and \
                (trial := _trial(spec, obs, history, model, seen, projected_rate, now)) is not None:
            return trial
    if down_to < current and (bound is not None or not breach):
        return seen.proposal(down_to, DecisionReason.SCALE_DOWN, history)
    return seen.proposal(current, DecisionReason.BATCHING_BOUND if bound is not None else DecisionReason.WITHIN_SLO,
                         history, message)
