"""The shared limiting stage: policies propose, this stage decides what may happen now. Pure.

Both policies (planner.py, step_rule.py) return a `Proposal`; `limit()` applies the same rules to either, in order:
1. bounds: a count outside minReplicas..maxReplicas is brought in at once (BelowMinReplicas, AboveMaxReplicas);
2. going up: more replicas for a breach the policy cannot explain wait for the replicas still starting
   (WaitingForReplicas); a scale-up waits scaleUp.cooldownSeconds after the last change unless it is urgent
   (ScaleUpCooldown). One rule for both policies: an SLO breach (and the metrics-outage fallback) goes ahead
   within the cooldown, which paces planned scale-ups only; then at most scaleUp.maxStep at once;
3. going down: never within one rate window after a tick without metrics (Stabilizing: rate() reads low until
   its window is whole again); within scaleDown.burstMemorySeconds after the SLO was missed while replicas
   were starting less than that long after a scale-down that followed the load down (HoldingForBursts: the load
   came back faster than a pod starts), or after the bursts' rate came back while that held, never below the count
   the policy plans for the bursts' highest arrival rate (Proposal.burst_replicas; the running count when it has
   none), and a count held whole keeps the pods' batching; and only once fewer replicas have been
   proposed for scaleDown.stabilizationSeconds without a break (Stabilizing), then to the most any of those
   proposals asked for, at most scaleDown.maxStepPercent at once;
4. any other outcome ends a calm stretch.
`paced()` is the last stage: at most one change of the pods' batching per RETUNE_INTERVAL_S.
"""

from __future__ import annotations

from dataclasses import replace

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.types import Decision, DecisionReason, History, Observation, Proposal, Tuning

STEADY_BAND = 0.2
"""Arrival rates within this fraction of each other count as the same load (the planner's steady band; a scale-down
follows the load down, for the burst memory, only with the rate this far under the rate of the last scale-up)."""

RETUNE_INTERVAL_S = 30.0
"""At most one change of the pods' batching this often: each reloads the model on every pod (~1.4 s during which
its requests wait), and the statistics that judge it start from zero."""


def limit(spec: InferenceServiceSpec, obs: Observation, proposal: Proposal, now: float) -> Decision:
    """The proposal as far as the bounds, the readiness wait, the cooldown, the steps and the window allow."""
    bounds, current, history = spec.autoscaling, obs.replicas, proposal.history
    if obs.arrival_rate is None:
        history = replace(history, blind_at=now)
    elif history.rise_peak is not None:
        history = replace(history, rise_peak=max(history.rise_peak, obs.arrival_rate))
    history = remembered(spec, obs, history, now)
    proposal = replace(proposal, history=history)
    if current < bounds.min_replicas or current > bounds.max_replicas:
        to = min(bounds.max_replicas, max(bounds.min_replicas, current))
        reason = DecisionReason.BELOW_MIN_REPLICAS if current < bounds.min_replicas \
            else DecisionReason.ABOVE_MAX_REPLICAS
        return _decided(proposal, to, reason, f"bring {current} into {bounds.min_replicas}..{bounds.max_replicas}",
                        replace(_calm_ended(history), last_scale_at=now))
    if proposal.replicas > current:
        return _up(spec, obs, proposal, now)
    if proposal.replicas < current:
        return _down(spec, obs, proposal, now)
    return _decided(proposal, current, proposal.reason, proposal.message, _calm_ended(history))


def remembered(spec: InferenceServiceSpec, obs: Observation, history: History, now: float) -> History:
    """The burst memory carried forward: whether the SLO is missed now while replicas are starting within
    scaleDown.burstMemorySeconds of a scale-down that followed the load down (what was removed came back too late).

    Why: a flash crowd shorter than a pod's cold start is over before the pods it asks for serve (an MMPP's minute
    bursts against 1-3 minute image pulls); each burst then fails its requests above the capacity held, and the
    pods it started bill their cold start for nothing. Only capacity held through the gaps serves it, and only a
    miss after the load fell and replicas went with it tells that gaps are shorter than the memory. A load that
    falls and stays down (a day's evening, a spike that ends) never asks for the removed replicas back, and keeps
    scaling down as before; replicas removed at an unchanged load (the extra ones a backlog asked for, drained)
    were not the load's, and a rise after them is no burst coming back.

    While it holds, the bursts the capacity held serves miss nothing: a burst that comes back (the rate up to within
    STEADY_BAND of the bursts' highest after falling under it) renews the hold as a miss would. Held only from its
    last miss, a hold ran out between bursts that still came and the next one failed as the first had (MMPP, one
    seed in three: 1.9 points).

    The hold keeps at least what the load the removed replicas were added for needs (removed_rate: the highest rate
    from their scale-up to the scale-down), not only the rates seen from the miss on: a short burst's tail, read by
    a 30 s rate() at the miss, is under its peak (MMPP: a hold of 8 pods where the bursts need 15, and the next
    burst failed)."""
    memory = spec.autoscaling.scale_down.burst_memory_seconds
    missed = (memory > 0 and history.removed_at is not None and now - history.removed_at < memory
              and obs.ready_replicas < obs.replicas and missing_slo(spec, obs))
    history = replace(history, missed_at=now, burst_ebbed=False) if missed else history
    if not holding_for_bursts(spec, history, now):
        return replace(history, burst_rate=None, burst_returned_at=None, burst_ebbed=False)
    if not missed and history.burst_rate is None:
        return history  # a hold resumed from status after a restart: the bursts' rate is unknown until the next miss
    rate = obs.arrival_rate if obs.arrival_rate is not None else 0.0
    if missed:
        rate = max(rate, history.removed_rate or 0.0)
    elif history.burst_rate is not None:
        at_bursts = rate >= history.burst_rate * (1 - STEADY_BAND)
        if at_bursts and history.burst_ebbed:
            history = replace(history, burst_returned_at=now, burst_ebbed=False)
        elif not at_bursts:
            history = replace(history, burst_ebbed=True)
    return replace(history, burst_rate=max(history.burst_rate or 0.0, rate))


def missing_slo(spec: InferenceServiceSpec, obs: Observation) -> bool:
    """The SLO missed now: latency over it at its percentile, or more requests failing than the percentile leaves
    out (over 5% of arrivals for p95): with rejectLateRequests a late request fails rather than count in the
    latency, so the latency alone stays under the SLO however many are lost."""
    over = obs.latency_ms is not None and obs.latency_ms > spec.slo.latency_ms
    failing = (obs.failure_rate or 0.0) > (obs.arrival_rate or 0.0) * (100 - spec.slo.percentile) / 100
    return over or failing


def holding_for_bursts(spec: InferenceServiceSpec, history: History, now: float) -> bool:
    """Whether scale-down waits: a miss (remembered), or a burst back while that held, less than
    scaleDown.burstMemorySeconds ago."""
    last = max((at for at in (history.missed_at, history.burst_returned_at) if at is not None), default=None)
    return last is not None and now - last < spec.autoscaling.scale_down.burst_memory_seconds


def cooling_down(spec: InferenceServiceSpec, history: History, now: float) -> bool:
    """Whether a planned (not urgent) scale-up would wait for scaleUp.cooldownSeconds now."""
    return history.last_scale_at is not None and now - history.last_scale_at < spec.autoscaling.scale_up.cooldown_seconds


def _up(spec: InferenceServiceSpec, obs: Observation, proposal: Proposal, now: float) -> Decision:
    current, history, evidence = obs.replicas, proposal.history, proposal.evidence
    if proposal.waits_for_ready and obs.ready_replicas < current:
        return _decided(proposal, current, DecisionReason.WAITING_FOR_REPLICAS,
                        f"{evidence}; {current - obs.ready_replicas} replica(s) still starting",
                        _calm_ended(history))
    if not proposal.urgent and cooling_down(spec, history, now):
        since = now - history.last_scale_at if history.last_scale_at is not None else 0.0
        return _decided(proposal, current, DecisionReason.SCALE_UP_COOLDOWN,
                        f"{evidence}; last change {since:.0f}s ago", _calm_ended(history))
    to = min(proposal.replicas, spec.autoscaling.max_replicas)
    if spec.autoscaling.scale_up.max_step is not None:
        to = min(to, current + spec.autoscaling.scale_up.max_step)
    up_rate = obs.arrival_rate if obs.arrival_rate is not None else history.up_rate
    return _decided(proposal, to, proposal.reason, f"{evidence}: {current} -> {to}",
                    replace(_calm_ended(history), last_scale_at=now, up_rate=up_rate, rise_peak=up_rate))


def _down(spec: InferenceServiceSpec, obs: Observation, proposal: Proposal, now: float) -> Decision:
    current, history, evidence = obs.replicas, proposal.history, proposal.evidence
    down = spec.autoscaling.scale_down
    if history.blind_at is not None and now - history.blind_at < obs.window_s:
        # After an outage rate() covers only the samples since it ended (an empty TSDB after a restart read ~40%
        # and ~70% of the load on its first two windows, tests/e2e/test_metrics_outage.py): wait until it covers
        # a whole window, and start the stabilization window only then.
        return _decided(proposal, current, DecisionReason.STABILIZING,
                        f"{evidence}; metrics returned {now - history.blind_at:.0f}s ago: no scale-down until the "
                        f"{obs.window_s:g}s rate window is whole again", _calm_ended(history))
    if holding_for_bursts(spec, history, now):
        floor = current if proposal.burst_replicas is None else proposal.burst_replicas
        held = (f"the SLO was missed {now - (history.missed_at or now):.0f}s ago while replicas removed as the load "
                f"fell were starting again (scaleDown.burstMemorySeconds, {down.burst_memory_seconds}s, after such "
                f"a miss{_returned(history, now)})")
        if floor >= current:
            # The pods' batching stays too: the plan's is for fewer replicas than are held.
            return _decided(replace(proposal, batching=None), current, DecisionReason.HOLDING_FOR_BURSTS,
                            f"{evidence}; held: {held}", _calm_ended(history))
        if proposal.replicas < floor:
            proposal = replace(proposal, replicas=floor, evidence=(
                f"{evidence}; no fewer than {floor}, the count for the bursts' {history.burst_rate or 0.0:.1f} "
                f"req/s: {held}"))
            evidence = proposal.evidence
    calm_since = history.calm_since if history.calm_since is not None else now
    peak = proposal.replicas if history.calm_peak is None else max(history.calm_peak, proposal.replicas)
    if now - calm_since < down.stabilization_seconds:
        return _decided(proposal, current, DecisionReason.STABILIZING,
                        f"{evidence}; {peak} would do, for {now - calm_since:.0f}s of "
                        f"{down.stabilization_seconds}s", replace(history, calm_since=calm_since, calm_peak=peak))
    # The most any proposal of the window asked for: one low reading at its end does not set the count.
    to = max(peak, current - max(1, current * down.max_step_percent // 100), spec.autoscaling.min_replicas)
    fell = (obs.arrival_rate is not None and history.up_rate is not None
            and obs.arrival_rate < history.up_rate * (1 - STEADY_BAND))
    return _decided(proposal, to, proposal.reason, f"{evidence}: {current} -> {to} after {now - calm_since:.0f}s",
                    replace(_calm_ended(history), last_scale_at=now, removed_at=now if fell else history.removed_at,
                            removed_rate=history.rise_peak if fell else history.removed_rate))


def _returned(history: History, now: float) -> str:
    if history.burst_returned_at is None or history.burst_returned_at <= (history.missed_at or 0.0):
        return ""
    return f" or the bursts' rate back, last {now - history.burst_returned_at:.0f}s ago"


def _calm_ended(history: History) -> History:
    return replace(history, calm_since=None, calm_peak=None)


def _decided(proposal: Proposal, replicas: int, reason: DecisionReason, message: str, history: History) -> Decision:
    return Decision(replicas, reason, message, history, predicted_latency_ms=proposal.predicted_latency_ms,
                    batching=proposal.batching)


def paced(obs: Observation, decision: Decision, now: float) -> Decision:
    """The decision with a pass over the pods' batching held back until RETUNE_INTERVAL_S after the last one.

    Also while the pods' batching is unknown (no pass has succeeded yet): a pass that fails, say because one pod's
    Triton refuses the reload, has already reloaded the pods before it and loads them back; retried every tick,
    that stalled the healthy pods' requests each time (tests/e2e/test_faults.py)."""
    wanted = decision.batching
    if wanted is None:
        return decision  # batching left alone
    running = Tuning(obs.queue_delay_us, obs.instance_count) if obs.queue_delay_us is not None else None
    if wanted == running:
        return decision
    last = decision.history.last_retune_at
    if last is not None and now - last < RETUNE_INTERVAL_S:
        held = (f"{decision.message}; retune to queue delay {wanted.queue_delay_us} us, {wanted.instance_count} "
                f"instance(s) held: the last was {now - last:.0f}s ago (at most one per {RETUNE_INTERVAL_S:.0f}s)")
        return replace(decision, message=held, batching=running)
    return replace(decision, history=replace(decision.history, last_retune_at=now))
