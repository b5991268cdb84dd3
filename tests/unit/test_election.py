"""The leader-election state machine (election.py), table-driven: what one replica does given the Lease it read,
what it knew before and the time, with client-go's default timing (15 s lease, 10 s renew deadline, 2 s retry)."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from batchpilot.election import (
    ElectionConfigError,
    Elector,
    LeaseRecord,
    Move,
    Timing,
    confirmed,
    decide,
    failed,
)

T = Timing()
NOW = 1000.0
STAMP = "2026-11-24T20:00:00.000000Z"
ME, OTHER = "op-a", "op-b"


def lease(holder: str = OTHER, transitions: int = 3, renew: str = "2026-11-24T19:59:58.000000Z") -> LeaseRecord:
    return LeaseRecord(holder, 15, "2026-11-24T19:00:00.000000Z", renew, transitions)


def standby(seen: LeaseRecord | None = None, seen_at: float | None = None) -> Elector:
    return Elector(ME, observed=seen, observed_at=seen_at)


def leader(renewed_at: float, seen: LeaseRecord | None = None) -> Elector:
    held = seen or lease(ME)
    return Elector(ME, observed=held, observed_at=renewed_at, renewed_at=renewed_at)


class Case(NamedTuple):
    label: str
    elector: Elector
    read: LeaseRecord | None
    want_move: Move
    want_write: LeaseRecord | None
    want_leading_after: bool
    """Whether the replica may act right after the step, before any write is confirmed."""


CASES = [
    Case("absent lease: create it naming me, no transition yet", standby(), None, Move.ACQUIRE,
         LeaseRecord(ME, 15, STAMP, STAMP, 0), False),
    Case("free lease (released): take it, transitions + 1", standby(), lease(holder=""), Move.ACQUIRE,
         LeaseRecord(ME, 15, STAMP, STAMP, 4), False),
    Case("held by another, first seen now: stand by", standby(), lease(), Move.STANDBY, None, False),
    Case("held by another, unchanged for 14.9 s: stand by", standby(lease(), NOW - 14.9), lease(), Move.STANDBY,
         None, False),
    Case("held by another, unchanged for a lease duration: expired, take it over", standby(lease(), NOW - 15),
         lease(), Move.ACQUIRE, LeaseRecord(ME, 15, STAMP, STAMP, 4), False),
    Case("held by another and renewed since last seen: the clock restarts", standby(lease(), NOW - 30),
         lease(renew="2026-11-24T20:00:01.000000Z"), Move.STANDBY, None, False),
    Case("I hold it: renew, keeping acquireTime and transitions", leader(NOW - 2), lease(ME), Move.RENEW,
         LeaseRecord(ME, 15, "2026-11-24T19:00:00.000000Z", STAMP, 3), True),
    Case("I hold it, renewed 9.9 s ago: still leading, renew", leader(NOW - 9.9), lease(ME), Move.RENEW,
         LeaseRecord(ME, 15, "2026-11-24T19:00:00.000000Z", STAMP, 3), True),
    Case("renew deadline passed: lost, stop acting before writing", leader(NOW - 10), lease(ME), Move.LOST, None,
         False),
    Case("I led, but the lease names another: lost at once", leader(NOW - 2), lease(OTHER, transitions=4),
         Move.LOST, None, False),
    Case("named me from an earlier run of me: acquire anew, transitions + 1", standby(), lease(ME), Move.ACQUIRE,
         LeaseRecord(ME, 15, STAMP, STAMP, 4), False),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.label) for c in CASES])
def test_one_step(case: Case) -> None:
    step = decide(case.elector, case.read, NOW, T, STAMP)
    assert (step.move, step.write, step.elector.leading(NOW, T)) == (
        case.want_move, case.want_write, case.want_leading_after)
    assert step.elector.observed == case.read


def test_a_confirmed_write_leads_until_the_renew_deadline_from_when_the_step_began() -> None:
    step = decide(standby(), None, NOW, T, STAMP)
    assert step.write is not None
    led = confirmed(step.elector, step.write, NOW)
    assert led.leading(NOW + 9.99, T) and not led.leading(NOW + 10, T)
    assert led.leader_until(T) == NOW + 10 and led.observed == step.write


@pytest.mark.parametrize(("label", "elector", "at", "want_move", "want_leading"), [
    pytest.param("candidate", standby(lease(), NOW - 20), NOW, Move.STANDBY, False, id="a candidate stays one"),
    pytest.param("leader", leader(NOW - 5), NOW, Move.RENEW, True, id="a leader retries until its deadline"),
    pytest.param("leader", leader(NOW - 10), NOW, Move.LOST, False, id="a leader past its deadline is lost"),
])
def test_a_failed_read_or_write(label: str, elector: Elector, at: float, want_move: Move,
                                want_leading: bool) -> None:
    step = failed(elector, at, T)
    assert (step.move, step.elector.leading(at, T)) == (want_move, want_leading), label


def test_a_deposed_leader_stops_before_a_standby_may_take_over() -> None:
    """Both replicas with the default timing: A renews at 0 and then cannot reach the API server; B saw that
    renewal at 0.5 s. A must stop acting strictly before B may acquire, whatever the step times."""
    a = confirmed(Elector("a"), lease("a"), 0.0)
    b = standby(lease("a"), 0.5)
    stops = next(t / 10 for t in range(0, 300) if not a.leading(t / 10, T))
    takes = next(t / 10 for t in range(0, 300) if decide(b, lease("a"), t / 10, T, STAMP).move is Move.ACQUIRE)
    assert stops == 10.0 and takes == 15.5 and takes - stops >= T.lease_duration_s - T.renew_deadline_s


def test_transitions_count_each_change_of_hands() -> None:
    """A takes the absent lease, B takes it over after it expired, A takes it back: 0, 1, 2."""
    first = decide(Elector("a"), None, 0.0, T, STAMP)
    assert first.write is not None and first.write.transitions == 0
    b = decide(Elector("b"), first.write, 1.0, T, STAMP)
    assert b.move is Move.STANDBY
    second = decide(b.elector, first.write, 16.0, T, STAMP)
    assert second.write is not None and (second.write.holder, second.write.transitions) == ("b", 1)
    a_again = decide(Elector("a"), second.write, 17.0, T, STAMP)
    third = decide(a_again.elector, second.write, 32.0, T, STAMP)
    assert third.write is not None and (third.write.holder, third.write.transitions) == ("a", 2)


@pytest.mark.parametrize(("lease_s", "renew_s", "retry_s", "names"), [
    pytest.param(10, 10, 2, "BATCHPILOT_LEASE_DURATION_SECONDS", id="lease not above the deadline"),
    pytest.param(15, 2.4, 2, "BATCHPILOT_RETRY_PERIOD_SECONDS", id="deadline not above 1.2 retries"),
])
def test_bad_timing_is_refused_naming_the_settings(lease_s: float, renew_s: float, retry_s: float,
                                                   names: str) -> None:
    with pytest.raises(ElectionConfigError, match=names):
        Timing(lease_s, renew_s, retry_s)
