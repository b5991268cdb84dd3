"""Leader election on a coordination.k8s.io Lease, as a pure state machine: given what the Lease holds, what this
replica last saw and when (its own clock), it says what to do: acquire, renew, stand by, or stop leading.

It follows client-go's `tools/leaderelection/leaderelection.go` (read on 2026-11-24, kubernetes/client-go):
- Timestamps in the Lease are never compared with the local clock (other replicas' clocks may differ): a
  candidate only notes *when it saw the record change*, and takes over once it has seen no change for a whole
  lease duration (tryAcquireOrRenew's `observedTime + LeaseDuration`).
- Taking over increments leaseTransitions; renewing keeps acquireTime and the count.
- The leader retries its renewal every retry period and gives up once a renew deadline has passed without one;
  the deadline is shorter than the lease duration (NewLeaderElector refuses otherwise), so a deposed leader stops
  acting before any candidate may acquire. Worked numbers with the defaults: the leader's last successful write
  is at t; it stops acting by t + 10 s; a candidate saw that write at t' >= t, and may acquire from t' + 15 s on:
  at least 5 s of margin in which no replica acts.
- Two stricter choices than client-go: a leader that reads the Lease held by someone else stops at once
  (client-go retries until its deadline), and leading is a deadline the handlers check against the clock (so a
  renewal loop stuck in a slow API call cannot leave a stale "I lead" behind).

The API calls (read, create, replace with optimistic concurrency) are in adapters/lease.py; the loop that runs
this machine every retry period is leadership.py.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

JITTER_FACTOR = 1.2
"""A candidate retries after retry_period x U(1, 1.2) (client-go's JitterFactor), so candidates spread out."""


class ElectionConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Timing:
    """client-go's defaults for core clients (LeaderElectionConfig): 15 s, 10 s, 2 s."""

    lease_duration_s: float = 15.0
    """How long a candidate waits, without seeing the Lease change, before it takes the Lease over."""
    renew_deadline_s: float = 10.0
    """How long the leader keeps acting without a successful renewal before it stops."""
    retry_period_s: float = 2.0
    """Period of the renewal (leader) and of the acquisition attempts (candidates)."""

    def __post_init__(self) -> None:
        if not self.lease_duration_s > self.renew_deadline_s:
            raise ElectionConfigError(
                f"lease duration {self.lease_duration_s}s must exceed the renew deadline {self.renew_deadline_s}s "
                "(BATCHPILOT_LEASE_DURATION_SECONDS > BATCHPILOT_RENEW_DEADLINE_SECONDS): otherwise a deposed "
                "leader may still act when another replica takes over")
        if not self.renew_deadline_s > JITTER_FACTOR * self.retry_period_s > 0:
            raise ElectionConfigError(
                f"renew deadline {self.renew_deadline_s}s must exceed {JITTER_FACTOR} x the retry period "
                f"{self.retry_period_s}s (> 0) (BATCHPILOT_RENEW_DEADLINE_SECONDS, BATCHPILOT_RETRY_PERIOD_SECONDS): "
                "the leader must get at least one retry in before it gives up")


@dataclass(frozen=True)
class LeaseRecord:
    """The election fields of a Lease's spec (coordination.k8s.io/v1)."""

    holder: str
    """spec.holderIdentity; empty when nobody holds it (released)."""
    lease_duration_s: int
    """spec.leaseDurationSeconds as the holder wrote it (informational: candidates use their own Timing)."""
    acquire_time: str
    """spec.acquireTime (RFC 3339 with microseconds), when the holder took it."""
    renew_time: str
    """spec.renewTime (RFC 3339 with microseconds), the holder's last renewal by its clock (never compared)."""
    transitions: int
    """spec.leaseTransitions: how many times the Lease changed hands."""


class Move(enum.StrEnum):
    ACQUIRE = "acquire"
    """Write the Lease naming me: create it, or take over a free or expired one (transitions + 1)."""
    RENEW = "renew"
    """Write the Lease I hold with a fresh renewTime."""
    STANDBY = "standby"
    """Another replica holds the Lease and it has not expired: watch, do not act."""
    LOST = "lost"
    """I led, and the renew deadline passed or another replica holds the Lease: stop acting now."""


@dataclass(frozen=True)
class Elector:
    """What one replica knows of the election. Times are its own clock (monotonic seconds)."""

    identity: str
    """This replica's name in spec.holderIdentity (the pod's name, else host and process id)."""
    observed: LeaseRecord | None = None
    """The Lease's record as last read or written, None before the first read (or when absent)."""
    observed_at: float | None = None
    """When `observed` last changed (the record differed from the one before), by this replica's clock."""
    renewed_at: float | None = None
    """When this replica's last successful acquire or renew started; None while it does not lead."""

    def leading(self, now: float, timing: Timing) -> bool:
        return self.renewed_at is not None and now - self.renewed_at < timing.renew_deadline_s

    def leader_until(self, timing: Timing) -> float | None:
        """The time by this replica's clock until which it may act, None when it does not lead."""
        return None if self.renewed_at is None else self.renewed_at + timing.renew_deadline_s


@dataclass(frozen=True)
class Step:
    move: Move
    elector: Elector
    """The state after this step (the write, if any, not yet confirmed: see confirmed() and failed())."""
    write: LeaseRecord | None = None
    """The record to write for ACQUIRE (create when the Lease is absent) and RENEW; None otherwise."""


def _observe(elector: Elector, lease: LeaseRecord | None, now: float) -> Elector:
    if lease == elector.observed and elector.observed_at is not None:
        return elector
    return replace(elector, observed=lease, observed_at=now)


def decide(elector: Elector, lease: LeaseRecord | None, now: float, timing: Timing, stamp: str) -> Step:
    """One attempt at the Lease as just read (None: it does not exist). `stamp` is the wall-clock time to write
    into acquireTime/renewTime."""
    if elector.renewed_at is not None and not elector.leading(now, timing):
        return Step(Move.LOST, replace(_observe(elector, lease, now), renewed_at=None))
    seen = _observe(elector, lease, now)
    me = elector.identity
    if lease is None:
        return Step(Move.ACQUIRE, seen, LeaseRecord(me, round(timing.lease_duration_s), stamp, stamp, 0))
    if lease.holder == me:
        renewed = replace(lease, lease_duration_s=round(timing.lease_duration_s), renew_time=stamp)
        if elector.renewed_at is None:  # held under my name by an earlier run of me: take it back as new
            renewed = replace(renewed, acquire_time=stamp, transitions=lease.transitions + 1)
            return Step(Move.ACQUIRE, seen, renewed)
        return Step(Move.RENEW, seen, renewed)
    if elector.renewed_at is not None:  # I led, yet the Lease names another: it took over, stop at once
        return Step(Move.LOST, replace(seen, renewed_at=None))
    assert seen.observed_at is not None
    if lease.holder and now - seen.observed_at < timing.lease_duration_s:
        return Step(Move.STANDBY, seen)
    return Step(Move.ACQUIRE, seen,
                LeaseRecord(me, round(timing.lease_duration_s), stamp, stamp, lease.transitions + 1))


def confirmed(elector: Elector, written: LeaseRecord, started: float) -> Elector:
    """The write of decide()'s record succeeded; `started` is when that step began (before the write was sent),
    so the deadline counts from no later than the moment the API server stored it."""
    return replace(elector, observed=written, observed_at=started, renewed_at=started)


def failed(elector: Elector, now: float, timing: Timing) -> Step:
    """The Lease could not be read or written (an API error, or a 409: another replica wrote it first). A leader
    keeps acting until its renew deadline, retrying meanwhile; a candidate stays a candidate."""
    if elector.renewed_at is None:
        return Step(Move.STANDBY, elector)
    if elector.leading(now, timing):
        return Step(Move.RENEW, elector)
    return Step(Move.LOST, replace(elector, renewed_at=None))
