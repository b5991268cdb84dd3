"""The election loop (leadership.py) step by step on an in-memory Lease with resourceVersions and a test clock:
one leader at a time, a takeover after the lease expires, the leader stopping at its deadline when the API
server cannot be reached, and readiness."""

from __future__ import annotations

from batchpilot.adapters.lease import LeaseConflict, ReadLease
from batchpilot.election import LeaseRecord, Move, Timing
from batchpilot.leadership import Leadership

T = Timing()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class MemoryLease:
    """A Lease as the API server keeps it: a write must carry the resourceVersion it read, or it is a 409."""

    def __init__(self) -> None:
        self.stored: ReadLease | None = None
        self.version = 0
        self.reachable = True

    def read(self) -> ReadLease | None:
        if not self.reachable:
            raise ConnectionError("the API server does not answer")
        return self.stored

    def write(self, record: LeaseRecord, resource_version: str | None) -> None:
        if not self.reachable:
            raise ConnectionError("the API server does not answer")
        current = self.stored.resource_version if self.stored else None
        if resource_version != current:
            raise LeaseConflict("written by another replica")
        self.version += 1
        self.stored = ReadLease(record, str(self.version))


def test_one_leader_then_a_takeover_once_the_leader_stops_renewing() -> None:
    store, clock = MemoryLease(), Clock()
    a, b = Leadership(store, "a", T, clock), Leadership(store, "b", T, clock)
    assert (a.step(), b.step()) == (Move.ACQUIRE, Move.STANDBY)
    for _ in range(10):  # 20 s of renewals: a leads throughout, b stands by and stays ready
        clock.now += T.retry_period_s
        assert (a.step(), b.step()) == (Move.RENEW, Move.STANDBY)
        assert a.leading() and not b.leading() and b.ready()
    killed = clock.now  # a stops renewing without releasing (SIGKILL)
    while b.step() is not Move.ACQUIRE:
        clock.now += T.retry_period_s
    assert b.leading() and T.lease_duration_s <= clock.now - killed <= T.lease_duration_s + T.retry_period_s
    assert store.stored is not None and (store.stored.record.holder, store.stored.record.transitions) == ("b", 1)
    assert not a.leading()  # a's own deadline passed long before


def test_a_candidate_that_loses_the_race_stands_by() -> None:
    store, clock = MemoryLease(), Clock()
    a, b = Leadership(store, "a", T, clock), Leadership(store, "b", T, clock)
    stale = store.read()  # both read "absent"; a writes first
    assert a.step() is Move.ACQUIRE and stale is None
    b_read = b.lease.read
    b.lease.read = lambda: None  # type: ignore[method-assign]  # b still believes the Lease is absent
    assert b.step() is Move.STANDBY and not b.leading()
    b.lease.read = b_read  # type: ignore[method-assign]
    assert store.stored is not None and store.stored.record.holder == "a"


def test_an_unreachable_api_server_ends_leadership_at_the_renew_deadline() -> None:
    store, clock = MemoryLease(), Clock()
    a = Leadership(store, "a", T, clock)
    a.step()
    store.reachable = False
    clock.now = 9.9
    assert a.step() is Move.RENEW and a.leading() and a.ready()
    clock.now = 10.0
    assert not a.leading()  # by the clock, even before the loop's next step
    assert a.step() is Move.LOST and a.ready()  # it read the Lease 10 s ago: a standby that could take over
    clock.now = 15.0
    assert a.step() is Move.STANDBY and not a.ready()  # no read for a lease duration: not ready
    store.reachable = True
    clock.now = 16.0
    assert a.step() is Move.ACQUIRE and a.leading()  # nobody else took it: a leads again, a new term
    assert store.stored is not None and store.stored.record.transitions == 1
