"""The shared limiting stage: policies propose, this stage decides what may happen now. Pure.

Both policies (planner.py, step_rule.py) return a `Proposal`; `limit()` applies the same rules to either, in order:
1. bounds: a count outside minReplicas..maxReplicas is brought in at once (BelowMinReplicas, AboveMaxReplicas);
2. going up: more replicas for a breach the policy cannot explain wait for the replicas still starting
   (WaitingForReplicas); a scale-up waits scaleUp.cooldownSeconds after the last change unless it is urgent
   (ScaleUpCooldown). One rule for both policies: an SLO breach (and the metrics-outage fallback) goes ahead
   within the cooldown, which paces planned scale-ups only; then at most scaleUp.maxStep at once;
3. going down: never within one rate window after a tick without metrics (Stabilizing: rate() reads low until
   its window is whole again), and only once fewer replicas have been proposed for
   scaleDown.stabilizationSeconds without a break (Stabilizing), then to the most any of those proposals asked
   for, at most scaleDown.maxStepPercent at once;
4. any other outcome ends a calm stretch.
`paced()` is the last stage: at most one change of the pods' batching per RETUNE_INTERVAL_S.
"""

from __future__ import annotations

from dataclasses import replace

from batchpilot.api.spec import InferenceServiceSpec
from batchpilot.control.types import Decision, DecisionReason, History, Observation, Proposal, Tuning

RETUNE_INTERVAL_S = 30.0
"""At most one change of the pods' batching this often: each reloads the model on every pod (~1.4 s during which
its requests wait), and the statistics that judge it start from zero."""


def limit(spec: InferenceServiceSpec, obs: Observation, proposal: Proposal, now: float) -> Decision:
    """The proposal as far as the bounds, the readiness wait, the cooldown, the steps and the window allow."""
    bounds, current, history = spec.autoscaling, obs.replicas, proposal.history
    if obs.arrival_rate is None:
        history = replace(history, blind_at=now)
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
    return _decided(proposal, to, proposal.reason, f"{evidence}: {current} -> {to}",
                    replace(_calm_ended(history), last_scale_at=now))


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
    calm_since = history.calm_since if history.calm_since is not None else now
    peak = proposal.replicas if history.calm_peak is None else max(history.calm_peak, proposal.replicas)
    if now - calm_since < down.stabilization_seconds:
        return _decided(proposal, current, DecisionReason.STABILIZING,
                        f"{evidence}; {peak} would do, for {now - calm_since:.0f}s of "
                        f"{down.stabilization_seconds}s", replace(history, calm_since=calm_since, calm_peak=peak))
    # The most any proposal of the window asked for: one low reading at its end does not set the count.
    to = max(peak, current - max(1, current * down.max_step_percent // 100), spec.autoscaling.min_replicas)
    return _decided(proposal, to, proposal.reason, f"{evidence}: {current} -> {to} after {now - calm_since:.0f}s",
                    replace(_calm_ended(history), last_scale_at=now))


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
